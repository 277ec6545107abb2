"""digits.training: loss goes down, counts are exact, seeds reproduce, hooks and schedules work."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from digits import training
from digits.augment import RandomAffine
from digits.models import BestCNN
from digits.training import (TrainSpec, evaluate, make_optimizer, make_scheduler,
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
