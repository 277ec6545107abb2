"""digits.training: loss goes down, counts are exact, seeds reproduce, hooks and schedules work,
the per-epoch bookkeeping is right and a step reads nothing back from the device."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from digits import training
from digits.augment import RandomAffine
from digits.models import BestCNN
from digits.training import (EpochLog, TrainSpec, evaluate, make_optimizer, make_scheduler,
                             predict_logits, to_input, train)


def toy_task(n: int = 200, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Uint8 images whose label is the row band (of 4) holding a bright 7x28 stripe, plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        images[i, 7 * label:7 * label + 7] = 255
    return images, labels


def tiny_mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))


def test_training_reduces_loss() -> None:
    images, labels = toy_task()
    torch.manual_seed(0)
    model = tiny_mlp()
    history = train(model, images, labels, TrainSpec(epochs=4, batch_size=16),
                    generator=torch.Generator().manual_seed(0), eval_sets={"train": (images, labels)})
    assert history.train_loss[-1] < 0.5 * history.train_loss[0]
    assert history.eval_acc["train"][-1] > 0.95
    assert history.epochs == [1, 2, 3, 4]
    assert history.steps == 4 * 13  # ceil(200 / 16) batches per epoch, the last one short
    assert history.images_per_second > 0


class LookupModel(nn.Module):
    """Returns a fixed logit row per example, chosen by the example's first pixel (its index)."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.register_buffer("table", logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = torch.round(x[:, 0, 0, 0] * 255).long()
        return self.table[index]


def test_evaluate_counts_are_exact() -> None:
    n = 101  # not a multiple of the batch size: a rounded denominator would show
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(n, 10, generator=g)
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    images[:, 0, 0] = torch.arange(n, dtype=torch.uint8)
    labels = logits.argmax(1).clone()
    wrong = torch.tensor([3, 50, 99])
    labels[wrong] = (labels[wrong] + 1) % 10
    result = evaluate(LookupModel(logits), images, labels, batch_size=32)
    assert (result.correct, result.total) == (n - 3, n)
    assert result.accuracy == (n - 3) / n
    assert result.loss == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    out = predict_logits(LookupModel(logits), images, batch_size=7)
    assert torch.equal(out, logits)


def test_predict_logits_uses_eval_mode_and_restores_it() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.9), nn.Linear(784, 10))
    images = torch.randint(0, 255, (10, 28, 28), dtype=torch.uint8)
    model.train()
    a = predict_logits(model, images)
    b = predict_logits(model, images)
    assert torch.equal(a, b)  # dropout off: deterministic
    assert model.training


def test_predict_logits_takes_any_input_transform_and_precision(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "cpu_bf16", lambda: True)  # autocast would be bf16
    torch.manual_seed(0)
    layer = nn.Linear(16, 10)
    features = torch.randn(50, 16)
    with torch.no_grad():
        expected = layer(features)
    # One batch: a float32 matmul's last bits can depend on the number of rows.
    plain = predict_logits(layer, features, batch_size=64, inputs=nn.Identity(), amp=False)
    assert torch.equal(plain, expected)
    mixed = predict_logits(layer, features, batch_size=64, inputs=nn.Identity())
    assert mixed.dtype == torch.float32 and not torch.equal(mixed, expected)  # bf16 rounding
    result = evaluate(layer, features, expected.argmax(1), inputs=nn.Identity(), amp=False)
    assert (result.correct, result.total, result.accuracy) == (50, 50, 1.0)


def test_epoch_log_fills_histories_from_device_sums() -> None:
    log = EpochLog(2, n=5, device=torch.device("cpu"))
    labels = torch.tensor([[0, 1, 2], [0, 1, 2]])
    hit = torch.eye(3).expand(2, 3, 3)  # logits whose argmax is each label
    miss = hit.roll(1, dims=2)
    with log.epoch(1):
        log.step(torch.tensor([1.0, 2.0]), torch.stack([hit[0], miss[1]]), labels)
        log.step(torch.tensor([4.0, 0.5]), hit[:, :2], labels[:, :2])
    with log.epoch(2):
        log.step(torch.tensor([0.0, 1.0]), hit, labels)
    first, second = log.finish()
    assert first.epochs == second.epochs == [1, 2]
    # Means weighted by batch size over the n = 5 examples: (1 * 3 + 4 * 2) / 5, ...
    assert first.train_loss == pytest.approx([11 / 5, 0.0])
    assert second.train_loss == pytest.approx([7 / 5, 3 / 5])
    assert first.train_acc == [1.0, 3 / 5] and second.train_acc == [2 / 5, 3 / 5]
    assert first.steps == second.steps == 3
    assert first.seconds == second.seconds > 0
    assert first.images_per_second == pytest.approx(8 / first.seconds)


def reads_per_epoch(steps: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """Reads of tensor values (.item(), `if tensor`, .tolist(), .cpu(), .numpy()) in one epoch
    of `train`: the profiler sees the first two, and counting wrappers the last three, which
    copy nothing from a CPU tensor."""
    calls = []
    for name in ("tolist", "cpu", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self: torch.Tensor, *args: object, _original=original, **kwargs: object):
            calls.append(1)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    images, labels = toy_task(16 * steps)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train(tiny_mlp(), images, labels, TrainSpec(epochs=1, batch_size=16),
              generator=torch.Generator().manual_seed(0))
    monkeypatch.undo()
    return len(calls) + sum(e.name == "aten::_local_scalar_dense" for e in prof.events())


def test_a_step_reads_nothing_back_from_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    # On a GPU each read waits for every queued step; per-epoch reads cancel in the difference.
    assert reads_per_epoch(6, monkeypatch) == reads_per_epoch(3, monkeypatch) > 0


def test_a_given_optimizer_and_input_transform_replace_the_defaults() -> None:
    torch.manual_seed(0)
    layer = nn.Linear(16, 4)
    before = [p.clone() for p in layer.parameters()]
    features, labels = torch.randn(40, 16), torch.arange(40) % 4
    spec = TrainSpec(epochs=1, batch_size=8, lr=0.5)  # spec's SGD at 0.5 would move the weights
    frozen = torch.optim.SGD(layer.parameters(), lr=0.0)
    history = train(layer, features, labels, spec, generator=torch.Generator().manual_seed(0),
                    optimizer=frozen, inputs=nn.Identity(), amp=False,
                    eval_sets={"train": (features, labels)})
    assert all(torch.equal(a, b) for a, b in zip(before, layer.parameters()))
    # Unchanged weights, no dropout: the running train loss is the evaluated loss.
    assert history.train_loss[0] == pytest.approx(history.eval_loss["train"][0], rel=1e-6)


def test_train_mode_false_trains_with_dropout_off() -> None:
    images, labels = toy_task(64)
    losses = {}
    for train_mode in (True, False):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Dropout(0.9), nn.Linear(784, 10))
        history = train(model, images, labels, TrainSpec(epochs=1, batch_size=16, lr=0.0),
                        generator=torch.Generator().manual_seed(0),
                        eval_sets={"train": (images, labels)}, train_mode=train_mode)
        assert model.training is train_mode
        losses[train_mode] = (history.train_loss[0], history.eval_loss["train"][0])
    assert losses[False][0] == pytest.approx(losses[False][1], rel=1e-5)
    assert losses[True][0] != pytest.approx(losses[True][1], rel=1e-2)  # dropout was on


def train_small(seed: int, data_seed: int = 0) -> dict[str, torch.Tensor]:
    images, labels = toy_task(64, seed=data_seed)
    torch.manual_seed(seed)  # initial weights and dropout
    model = BestCNN(width=4, hidden=8)
    spec = TrainSpec(epochs=2, batch_size=16, lr=0.05, momentum=0.9, nesterov=True,
                     weight_decay=5e-4, schedule="onecycle")
    train(model, images, labels, spec, generator=torch.Generator().manual_seed(seed),
          augment=RandomAffine())
    return model.state_dict()


def test_seeded_runs_are_reproducible_on_the_cpu() -> None:
    a, b, c = train_small(3), train_small(3), train_small(4)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


class Recorder:
    def __init__(self) -> None:
        self.backward: list[tuple[int, float, bool]] = []
        self.steps: list[int] = []
        self.epochs: list[int] = []

    def after_backward(self, step: int, epoch: float, model: nn.Module) -> None:
        grad = next(model.parameters()).grad
        self.backward.append((step, epoch, grad is not None))

    def after_step(self, step: int, epoch: float, model: nn.Module) -> None:
        self.steps.append(step)

    def on_epoch_end(self, epoch: int, model: nn.Module, history) -> None:
        self.epochs.append(epoch)


def test_callbacks_are_called_in_order() -> None:
    images, labels = toy_task(40)
    recorder = Recorder()
    train(tiny_mlp(), images, labels, TrainSpec(epochs=2, batch_size=16),
          generator=torch.Generator().manual_seed(0), callbacks=[recorder, object()])
    assert [s for s, _, _ in recorder.backward] == list(range(1, 7))
    assert all(has_grad for _, _, has_grad in recorder.backward)
    assert recorder.backward[-1][1] == pytest.approx(2.0)  # fractional epoch reached
    assert recorder.steps == list(range(1, 7))
    assert recorder.epochs == [1, 2]


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adam", "adamw", "adagrad", "adadelta"])
def test_onecycle_works_with_every_optimizer(name: str) -> None:
    spec = TrainSpec(optimizer=name, lr=0.1, schedule="onecycle")
    optimizer = make_optimizer(spec, tiny_mlp().parameters())
    scheduler = make_scheduler(spec, optimizer, total_steps=10)
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    if name == "rmsprop":  # cycling momentum would have switched RMSprop's momentum on
        assert optimizer.param_groups[0]["momentum"] == 0


def test_to_input_scales_to_unit_range() -> None:
    x = to_input(torch.tensor([[[0, 255]]], dtype=torch.uint8))
    assert x.shape == (1, 1, 1, 2) and x.dtype == torch.float32
    assert x.flatten().tolist() == [0.0, 1.0]


def test_cpu_precision_follows_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    layer = torch.nn.Linear(4, 2)
    for native, dtype in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(training, "cpu_bf16", lambda native=native: native)
        assert training.bf16(cpu) is native
        with training.autocast(cpu):
            assert layer(torch.ones(1, 4)).dtype == dtype
