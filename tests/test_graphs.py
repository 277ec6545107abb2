"""digits.graphs: the warm-up, capture, replay and fallback of a graphed step, without a GPU.

torch.cuda's stream and graph calls are replaced by stand-ins that keep the contract the runner
relies on: capturing records the step without running it, a replay runs it on the static
inputs captured. A real capture is checked where there is a GPU (the last test).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import pytest
import torch

from digits import graphs, parallel
from digits.graphs import GRAPH_WARMUP, GraphedStep
from digits.parallel import train_many
from test_parallel import SPECS, TinyCNN, toy_data


class FakeStream:
    def wait_stream(self, other: Any) -> None:
        pass


class FakeGraph:
    """Records the step called inside `fake_graph` and runs it again at each replay."""

    def __init__(self) -> None:
        self.step: Any = None
        self.inputs: tuple = ()
        self.replays = 0

    def replay(self) -> None:
        self.replays += 1
        self.step(*self.inputs)  # outside the capture: the step trains


class Recorder:
    """A step that records what it trained on; under capture it only registers itself."""

    def __init__(self, fail_capture: bool = False) -> None:
        self.seen: list[list[int]] = []
        self.fail_capture = fail_capture

    def __call__(self, x: torch.Tensor) -> None:
        if FAKE["capturing"] is not None:
            if self.fail_capture:
                raise RuntimeError("operation not permitted when stream is capturing")
            graph = FAKE["capturing"]
            graph.step, graph.inputs = self, (x,)
            return
        self.seen.append(x.tolist())


FAKE: dict[str, Any] = {"capturing": None}


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch.cuda's stream and graph API as stand-ins (see the module doc), and no failed
    capture before the test."""
    monkeypatch.setattr(graphs, "FAILED_CAPTURES", [])
    STREAMS.clear()

    @contextmanager
    def graph(g: FakeGraph) -> Any:
        FAKE["capturing"] = g
        try:
            yield
        finally:
            FAKE["capturing"] = None

    @contextmanager
    def stream(s: FakeStream) -> Any:
        yield

    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: FakeStream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: FakeStream())
    monkeypatch.setattr(torch.cuda, "stream", stream)
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    monkeypatch.setattr(torch.cuda, "graph", graph)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "set_stream", lambda stream: STREAMS.append(stream))


STREAMS: list[Any] = []  # the streams a failed capture set back as current


CUDA = torch.device("cuda")


def test_warms_up_then_captures_once_and_replays_on_new_inputs(fake_cuda: None) -> None:
    step = Recorder()
    runner = GraphedStep(step, CUDA, enabled=True, name="test")
    batches = [torch.tensor([i, i + 1]) for i in range(0, 12, 2)]
    for x in batches[:GRAPH_WARMUP]:
        runner(x)
    assert runner.graph is None and runner.warm_steps == GRAPH_WARMUP
    for x in batches[GRAPH_WARMUP:]:
        runner(x)
    # Every batch trained exactly once, in order: the capture call's batch by its replay.
    assert step.seen == [x.tolist() for x in batches]
    assert runner.graphed and runner.graph is not None
    assert runner.graph.replays == len(batches) - GRAPH_WARMUP
    # An odd-sized batch runs eagerly and leaves the graph in place for the next ones.
    runner.eager(torch.tensor([99]))
    runner(torch.tensor([7, 8]))
    assert step.seen[-2:] == [[99], [7, 8]] and runner.graph.replays == 4


def test_a_failed_capture_trains_on_eagerly_and_says_so(fake_cuda: None,
                                                         capsys: pytest.CaptureFixture) -> None:
    step, fallbacks = Recorder(fail_capture=True), []
    runner = GraphedStep(step, CUDA, enabled=True, name="group 1-3/3",
                         on_fallback=lambda: fallbacks.append(1))
    batches = [torch.tensor([i]) for i in range(GRAPH_WARMUP + 3)]
    for x in batches:
        runner(x)
    assert step.seen == [x.tolist() for x in batches]
    assert not runner.graphed and runner.graph is None and fallbacks == [1]
    assert "group 1-3/3: CUDA graph capture failed" in capsys.readouterr().out
    assert STREAMS and isinstance(STREAMS[-1], FakeStream)  # the stream put back
    # A later step of this process starts eager and never tries to capture.
    later = Recorder()
    runner = GraphedStep(later, CUDA, enabled=True, name="group 4-6/6")
    for i in range(GRAPH_WARMUP + 2):
        runner(torch.tensor([i]))
    assert not runner.graphed and runner.graph is None
    assert len(later.seen) == GRAPH_WARMUP + 2 and graphs.FAILED_CAPTURES


def test_off_the_gpu_or_disabled_every_step_is_eager(fake_cuda: None) -> None:
    for device, enabled in ((torch.device("cpu"), True), (CUDA, False)):
        step = Recorder()
        runner = GraphedStep(step, device, enabled=enabled, name="test")
        for i in range(GRAPH_WARMUP + 2):
            runner(torch.tensor([i]))
        assert not runner.graphed and runner.graph is None
        assert step.seen == [[i] for i in range(GRAPH_WARMUP + 2)]


def test_a_group_trained_through_a_graph_computes_what_eager_steps_compute(
        fake_cuda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """digits.parallel's loop with its runner graphed: full batches replay on static copies of
    their rows, the short last batch of an epoch runs eagerly, and the result is unchanged."""

    def run() -> tuple[list[torch.nn.Module], list]:
        images, labels = toy_data(120)  # batches of 16: 7 full ones and a short one of 8
        models = []
        for seed in range(3):
            torch.manual_seed(seed)
            models.append(TinyCNN())
        generators = [torch.Generator().manual_seed(100 + i) for i in range(3)]
        histories = train_many(models, images, labels, SPECS[2:5], generators=generators,
                               mode="concurrent")
        return models, histories

    eager_models, eager_histories = run()
    runners: list[GraphedStep] = []

    def graphed_runner(step: Any, device: torch.device, *, enabled: bool, name: str
                       ) -> GraphedStep:
        # Under the stand-in capture the step only registers; a replay runs the real step.
        def as_fake(index: torch.Tensor) -> None:
            if FAKE["capturing"] is not None:
                FAKE["capturing"].step, FAKE["capturing"].inputs = as_fake, (index,)
                return
            step(index)

        runners.append(GraphedStep(as_fake, CUDA, enabled=True, name=name))
        return runners[-1]

    monkeypatch.setattr(parallel, "GraphedStep", graphed_runner)
    graph_models, graph_histories = run()
    (runner,) = runners
    assert runner.graph is not None
    # 2 epochs x 7 full batches, less the warm-up ones, were replays; the short ones eager.
    assert runner.graph.replays == 2 * 7 - GRAPH_WARMUP
    for a, b in zip(eager_models, graph_models):
        for p, q in zip(a.parameters(), b.parameters()):
            assert torch.equal(p, q)
    for a, b in zip(eager_histories, graph_histories):
        assert a.train_loss == b.train_loss and a.train_acc == b.train_acc
        assert a.steps == b.steps == 16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_a_real_capture_trains_like_eager_steps_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a GPU: a group of the study's six optimizers through a real CUDA graph ends where
    the same group trained eagerly ends (bf16 autocast, so to its rounding)."""
    original, runners = parallel.GraphedStep, []

    def runner(step: Any, device: torch.device, *, enabled: bool, name: str) -> GraphedStep:
        runners.append(original(step, device, enabled=enabled, name=name))
        return runners[-1]

    monkeypatch.setattr(parallel, "GraphedStep", runner)

    def run(graph: bool) -> tuple[list[torch.nn.Module], list]:
        images, labels = (t.cuda() for t in toy_data(120))
        models = []
        for seed in range(len(SPECS)):
            torch.manual_seed(seed)
            models.append(TinyCNN().cuda())
        generators = [torch.Generator().manual_seed(100 + i) for i in range(len(SPECS))]
        histories = train_many(models, images, labels, SPECS, generators=generators,
                               mode="concurrent", cuda_graph=graph)
        return models, histories

    (eager, eager_curves), (graphed, graph_curves) = run(graph=False), run(graph=True)
    assert runners[0].graph is None and runners[1].graph is not None  # it did capture
    for a, b in zip(eager, graphed):
        for p, q in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(p, q, rtol=2e-2, atol=2e-3)
    # The epoch sums the graph accumulated on the device: the same curves.
    for a, b in zip(eager_curves, graph_curves):
        assert a.steps == b.steps == 16
        assert a.train_loss == pytest.approx(b.train_loss, rel=2e-2)
        assert a.train_acc == pytest.approx(b.train_acc, abs=2 / 120 + 1e-9)
