"""Train several independent models of one architecture at once, or one after another.

Concurrent mode stacks the K models' parameters once, [K, ...] per parameter, and runs one
forward/backward for all of them per step with torch.func.vmap (convolutions become grouped
convolutions, linear layers batched matmuls). Consecutive runs whose optimizer settings are
alike (optimizer, rate, momentum, decay, schedule) form a block that one torch.optim optimizer
from digits.training.make_optimizer steps in one call, over Parameters that alias the block's
rows of the stacked tensors: the same fused kernel and arithmetic as each run's own optimizer,
elementwise. Each run keeps its own data order (one generator per model, the same permutations
`train` would draw), so a concurrent run computes what K sequential `train` calls compute, up to
float rounding; the models receive their weights after every epoch.

Per step of the full optimizer study's two kinds of group (`python bench/launches.py`:
torch.profiler on the CPU, Model2 at batch 32), the step made, before -> after blocks and
stacking once: 18 runs in 6 blocks (studies (a) and the tuned runs), 2,747 -> 1,083 aten calls,
582 -> 202 launches; 24 runs in 24 blocks (the rate grid: each run its own rate), 3,520 -> 3,096
calls, 757 -> 655 launches. Before, every step stacked the parameters (8 stacks forward, 8 x K
gradient copies backward) and stepped K optimizers. Most of the grid's remaining launches are
RMSprop's and Adadelta's steps, which torch runs one tensor at a time on the CPU and as foreach
kernels (a few per optimizer) on CUDA.

On CUDA those launches cost host time at every step (on an H200 the GAN's eager step took 20.6 ms
of which 1.7 ms were GPU work), so a group whose runs follow no schedule captures its step once
as a CUDA graph (digits.graphs) and replays it: per step the host then copies the batch's rows
into the graph's input and launches the graph, two launches instead of 202 or 655. Its
optimizers are built capturable and its autocast runs without the weight cache, as capture
asks; the epoch's short last batch (another shape) runs eagerly between replays. The six
optimizers' arithmetic is the same either way; `tests/test_graphs.py` checks on a GPU that a
captured group trains like an eager one.

Why both modes (measured with Model2, batch 32, torch 2.14, 2 CPU cores shared with other jobs,
load average ~7.5, so absolute numbers are low and noisy; the ratios held across repeats):
- CPU: a grouped conv2 forward+backward for 4 models took 168 ms against 91 ms for four separate
  convolutions (1.8x slower); `bench/bench_training.py --threads 1` trained 4 models at
  225 img/s concurrently against 333 img/s one after another (0.67x, median of 3; runs
  212-228 vs 308-350). The CPU is already busy at batch 32, so "auto" trains one model after
  another there.
- CUDA: one batch of 32 through this network is a few microseconds of arithmetic but ~50
  kernel launches, so a GPU idles between launches; stacking K models multiplies the work per
  launch by K. "auto" trains concurrently there. No GPU was available when this was written:
  run `python bench/bench_training.py --device cuda` to check that choice on the hardware.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from digits.graphs import GraphedStep
from digits.training import (EpochLog, History, TrainSpec, autocast, make_optimizer,
                             make_scheduler, to_input, train)

MODES = ("auto", "sequential", "concurrent")


def resolve_mode(mode: str, device: torch.device) -> str:
    """'auto' -> 'concurrent' on CUDA, 'sequential' elsewhere (see the measurements above)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; choose from {MODES}")
    if mode == "auto":
        return "concurrent" if device.type == "cuda" else "sequential"
    return mode


def train_many(
    models: Sequence[nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    specs: Sequence[TrainSpec],
    *,
    generators: Sequence[torch.Generator],
    eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    mode: str = "auto",
    group_size: int = 24,
    progress: Callable[..., Any] | None = None,
    desc: str = "train",
    cuda_graph: bool = True,
) -> list[History]:
    """Train each model in place with its own spec and generator; return their histories.

    Concurrent mode trains up to `group_size` models per group; all specs in a group must share
    epochs and batch size (they see the same training set), optimizers and learning rates may
    differ; `cuda_graph=False` keeps its steps eager on CUDA. Sequential mode is exactly
    `digits.training.train` called once per model.
    """
    if not (len(models) == len(specs) == len(generators)):
        raise ValueError(f"{len(models)} models, {len(specs)} specs and {len(generators)} "
                         "generators: need one of each per model")
    if resolve_mode(mode, images.device) == "sequential":
        return [train(m, images, labels, s, generator=g, eval_sets=eval_sets,
                      progress=progress, desc=f"{desc} {i + 1}/{len(models)}")
                for i, (m, s, g) in enumerate(zip(models, specs, generators))]
    histories: list[History] = []
    for start in range(0, len(models), max(group_size, 1)):
        stop = start + max(group_size, 1)
        histories += train_concurrently(
            models[start:stop], images, labels, specs[start:stop],
            generators=generators[start:stop],
            eval_sets=eval_sets, progress=progress,
            desc=f"{desc} {start + 1}-{min(stop, len(models))}/{len(models)}",
            cuda_graph=cuda_graph)
    return histories


def _check_group(models: Sequence[nn.Module], specs: Sequence[TrainSpec]) -> None:
    """Same architecture (type and parameter shapes), same epochs and batch size."""
    first = models[0]
    shapes = [(n, p.shape) for n, p in first.named_parameters()]
    for model in models[1:]:
        if type(model) is not type(first) or [(n, p.shape) for n, p in
                                               model.named_parameters()] != shapes:
            raise ValueError("concurrent training needs models of one architecture; got "
                             f"{type(first).__name__} and {type(model).__name__}")
    if len({(s.epochs, s.batch_size) for s in specs}) != 1:
        raise ValueError("concurrent training needs one epochs and batch_size for the group; "
                         f"got {sorted({(s.epochs, s.batch_size) for s in specs})}")


@dataclass
class _Block:
    """Consecutive runs of a group that share every optimizer setting, stepped as one.

    `aliases` are Parameters over rows `rows` of the stacked leaves (same storage, no copy),
    so one torch.optim optimizer updates the block's runs with one call per step, with the
    same kernel and arithmetic as each run's own optimizer in `train`.
    """

    rows: slice
    aliases: list[tuple[str, nn.Parameter]]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None


def _optimizer_settings(spec: TrainSpec) -> tuple:
    """What an optimizer and its schedule read from a spec: runs alike here share one."""
    return (spec.optimizer, spec.lr, spec.momentum, spec.nesterov, spec.weight_decay,
            spec.schedule)


def _blocks(stacked: dict[str, torch.Tensor], specs: Sequence[TrainSpec],
            total_steps: int, *, capturable: bool = False) -> list[_Block]:
    """One optimizer per run of consecutive specs with the same optimizer settings
    (`capturable` ones where a CUDA graph will capture their steps)."""
    blocks, start = [], 0
    for _, alike in itertools.groupby(specs, key=_optimizer_settings):
        rows = slice(start, start + len(list(alike)))
        aliases = [(name, nn.Parameter(leaf.detach()[rows])) for name, leaf in stacked.items()]
        optimizer = make_optimizer(specs[start], [alias for _, alias in aliases],
                                   capturable=capturable)
        blocks.append(_Block(rows, aliases, optimizer,
                             make_scheduler(specs[start], optimizer, total_steps)))
        start = rows.stop
    return blocks


@torch.no_grad()
def _write_back(models: Sequence[nn.Module], stacked: dict[str, torch.Tensor],
                buffers: dict[str, torch.Tensor]) -> None:
    """Copy each run's row of the stacked parameters and buffers into its own model."""
    for i, model in enumerate(models):
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            tensor.copy_(stacked[name][i] if name in stacked else buffers[name][i])


def train_concurrently(
    models: Sequence[nn.Module],
    images: torch.Tensor,
    labels: torch.Tensor,
    specs: Sequence[TrainSpec],
    *,
    generators: Sequence[torch.Generator],
    eval_sets: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    progress: Callable[..., Any] | None = None,
    desc: str = "train",
    cuda_graph: bool = True,
) -> list[History]:
    """One vmapped forward/backward for all models per step; one optimizer per block of alike
    runs; per-model curves. The models hold their trained weights after each epoch.

    On CUDA, with `cuda_graph` and no run following a schedule (a schedule sets rates from the
    host every step), the step of a full batch is captured once as a CUDA graph and replayed
    (digits.graphs); the epoch's last, shorter batch runs eagerly.
    """
    _check_group(models, specs)
    device = images.device
    k, n = len(models), images.shape[0]
    epochs, batch_size = specs[0].epochs, specs[0].batch_size
    for model in models:
        model.to(device)
    graphed = cuda_graph and device.type == "cuda" and all(
        s.schedule == "constant" for s in specs)
    step = _GroupStep(models, images, labels, specs, graphed=graphed)
    runner = GraphedStep(step, device, enabled=graphed, name=desc)
    bar = progress(total=epochs * step.steps_per_epoch, desc=desc) if progress else None
    for epoch in range(1, epochs + 1):
        # The permutation each model's `train` call would draw: same generator, same order.
        order = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(device)
        with step.log.epoch(epoch):
            for first in range(0, n, batch_size):
                index = order[:, first:first + batch_size]  # [K, b]
                if index.shape[1] == batch_size:
                    runner(index)
                else:  # the epoch's short last batch: another shape than the graph's
                    runner.eager(index)
                step.log.count(index.shape[1])
                if bar is not None:
                    bar.update(1)
        _write_back(models, step.stacked, step.buffers)
        step.log.evaluate(models, eval_sets, [s.eval_batch_size for s in specs])
        if bar is not None:
            mean = sum(h.train_loss[-1] for h in step.log.histories) / k
            bar.set_postfix(loss=f"{mean:.4f}")
    if bar is not None:
        bar.close()
    # Wall time is shared by the group; images/s is per model (x K for the group's total).
    return step.log.finish()


class _GroupStep:
    """One training step of a group on the batch rows `index` [K, b] of the images: the batch
    gathered on the device, one vmapped forward/backward, every block's optimizer step, the
    epoch's sums. It reads nothing back, so a CUDA graph can capture it (digits.graphs)."""

    def __init__(self, models: Sequence[nn.Module], images: torch.Tensor, labels: torch.Tensor,
                 specs: Sequence[TrainSpec], *, graphed: bool):
        self.images, self.labels, self.specs = images, labels, specs
        # The weight cache of autocast keeps casts across a capture's end: off in a graph.
        self.autocast_cache = not graphed
        # A parameter-free copy gives the layers; each step feeds it the stacked tensors.
        skeleton = copy.deepcopy(models[0]).to("meta")
        # Stacked once: the leaves the step differentiates, [K, ...] per parameter.
        self.stacked = {name: torch.stack([dict(m.named_parameters())[name].detach()
                                           for m in models]).requires_grad_()
                        for name, _ in models[0].named_parameters()}
        self.buffers = {name: torch.stack([dict(m.named_buffers())[name] for m in models])
                        for name, _ in models[0].named_buffers()}
        self.steps_per_epoch = -(-images.shape[0] // specs[0].batch_size)
        self.blocks = _blocks(self.stacked, specs, specs[0].epochs * self.steps_per_epoch,
                              capturable=graphed)
        self.log = EpochLog(len(models), images.shape[0], images.device)

        def forward(params: dict, buffers: dict, x: torch.Tensor) -> torch.Tensor:
            return functional_call(skeleton, (params, buffers), (x,))

        self.batched = vmap(forward)

    def __call__(self, index: torch.Tensor) -> None:
        """Train every model on its batch `index[i]` of the images."""
        k, b = index.shape
        device = self.images.device
        x = to_input(self.images[index].flatten(0, 1)).reshape(k, b, 1, *self.images.shape[1:])
        y = self.labels[index]
        with autocast(device, cache=self.autocast_cache):
            logits = self.batched(self.stacked, self.buffers, x).float()  # [K, b, 10]
        losses = _losses(logits, y, self.specs)
        for leaf in self.stacked.values():
            leaf.grad = None
        # The models are independent, so d(sum)/d(theta_i) = d(loss_i)/d(theta_i).
        losses.sum().backward()
        _step(self.blocks, self.stacked)
        self.log.accumulate(losses, logits, y)


def _step(blocks: Sequence[_Block], stacked: dict[str, torch.Tensor]) -> None:
    """Step every block's optimizer on its rows of the stacked gradients (views, no copy)."""
    for block in blocks:
        for name, alias in block.aliases:
            alias.grad = stacked[name].grad[block.rows]
        block.optimizer.step()
        if block.scheduler is not None:
            block.scheduler.step()


def _losses(logits: torch.Tensor, labels: torch.Tensor,
            specs: Sequence[TrainSpec]) -> torch.Tensor:
    """Each model's mean cross-entropy [K] of logits [K, b, C] against labels [K, b]."""
    smoothing = {s.label_smoothing for s in specs}
    if len(smoothing) == 1:  # one call for the group
        losses = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), reduction="none",
                                 label_smoothing=smoothing.pop())
        return losses.view(labels.shape).mean(1)
    return torch.stack([F.cross_entropy(logits[i], labels[i],
                                        label_smoothing=spec.label_smoothing)
                        for i, spec in enumerate(specs)])
