"""A training step replayed as a CUDA graph: warm up, capture once, replay; eager elsewhere.

A training step of these small networks is a few microseconds of arithmetic per kernel but a few
microseconds of host time per operator call, so on a GPU the host sets the pace. Captured as a
graph, one replay launches every kernel of the step: on an H200 (torch 2.11) the GAN's step of
five full-width runs took 20.6 ms eagerly and 1.8-2.0 ms replayed. The GAN (digits.gan) and the
groups of models trained together (digits.parallel) run their steps through `GraphedStep`.

What a step must do to be captured (torch.cuda.graph's rules): read nothing back to the host;
take its inputs from the tensors passed in (the graph replays on static copies of them); write
only into tensors made before it (parameters, optimizer state, running sums) or allocate anew
each time; build capturable optimizers (`capturable=True` where torch has the flag, so step
counts stay on the device); run autocast without its weight cache (`cache_enabled=False`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

GRAPH_WARMUP = 3  # eager steps before capture (torch's CUDA-graph example warms up with 3)
# Why captures failed in this process. After one failure every later step runs eagerly: torch
# ends a failed capture before its allocator leaves the capture's memory pool (CUDAGraph.cpp),
# which can leave the allocator in a state no later capture should build on.
FAILED_CAPTURES: list[str] = []


class GraphedStep:
    """Runs `step(*inputs)` eagerly or, when `enabled` on CUDA, as a CUDA graph: GRAPH_WARMUP eager
    steps on a side stream, one capture, then replays. If capturing fails, steps go on eagerly
    and `on_fallback` is called once; `graphed` says which runs now."""

    def __init__(self, step: Callable[..., None], device: torch.device, *, enabled: bool,
                 name: str, on_fallback: Callable[[], None] | None = None):
        self.step, self.name, self.on_fallback = step, name, on_fallback
        self.graphed = enabled and device.type == "cuda" and not FAILED_CAPTURES
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: tuple[torch.Tensor, ...] | None = None
        self.warm_steps = 0
        self.side = torch.cuda.Stream(device) if self.graphed else None

    def __call__(self, *inputs: torch.Tensor) -> None:
        """One step on `inputs`: the same shapes every call once captured (else see `eager`)."""
        if self.graph is not None and self.static is not None:
            for static, value in zip(self.static, inputs):
                static.copy_(value)
            self.graph.replay()
        elif self.graphed and self.warm_steps < GRAPH_WARMUP:
            # Warm-up steps run eagerly on a side stream, as torch.cuda.graph asks: they create
            # the optimizers' state and the libraries' workspaces before capture.
            assert self.side is not None
            current = torch.cuda.current_stream()
            self.side.wait_stream(current)
            with torch.cuda.stream(self.side):
                self.eager(*inputs)
            current.wait_stream(self.side)
            self.warm_steps += 1
        elif self.graphed:
            self.graph, self.static = capture(self.step, inputs, self.name)
            if self.graph is None:  # capture failed: the rest of training runs eagerly
                self.graphed = False
                if self.on_fallback is not None:
                    self.on_fallback()
                self.eager(*inputs)
            else:
                self.graph.replay()  # capturing ran nothing: this batch is trained here
        else:
            self.eager(*inputs)

    def eager(self, *inputs: torch.Tensor) -> None:
        """One step run eagerly, whatever the shapes (a graph's step before capture, or a batch
        of another size than the captured one); the graph, if any, stays valid."""
        if self.side is None:  # never graphed: nothing to silence
            self.step(*inputs)
            return
        with warnings.catch_warnings():
            # Capturable optimizers warn once each when stepped outside a capture, as the
            # warm-up and the odd-sized batches do by design.
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            self.step(*inputs)


def capture(step: Callable[..., None], inputs: Sequence[torch.Tensor], name: str
            ) -> tuple[torch.cuda.CUDAGraph | None, tuple[torch.Tensor, ...] | None]:
    """Record `step` on static copies of `inputs` as a CUDA graph; (None, None) if that fails.

    Capturing runs nothing: the caller replays the graph for these inputs too. A failure is
    printed and training continues eagerly, so a torch version without some capturable kernel
    costs speed, not the build.
    """
    static = tuple(value.clone() for value in inputs)
    graph = torch.cuda.CUDAGraph()
    torch.cuda.synchronize()
    stream = torch.cuda.current_stream()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            with torch.cuda.graph(graph):
                step(*static)
    except Exception as error:  # noqa: BLE001 - any capture failure falls back to eager
        # torch.cuda.graph's exit ends the capture before it restores the stream, so a failed
        # end leaves its capture stream current: put ours back.
        torch.cuda.set_stream(stream)
        FAILED_CAPTURES.append(f"{name}: {error!r}")
        print(f"{name}: CUDA graph capture failed ({error!r}); training eagerly, and every "
              "later step in this process", flush=True)
        torch.cuda.synchronize()
        return None, None
    return graph, static
