"""digits.parallel: concurrent training computes what sequential training computes."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from digits.models import Standardize
from digits.parallel import _blocks, resolve_mode, train_many
from digits import training
from digits.training import TrainSpec


class TinyCNN(nn.Module):
    """Conv + linear + a buffer: the layer kinds Model2 has, at a size that trains in ms."""

    def __init__(self) -> None:
        super().__init__()
        self.standardize = Standardize(0.13, 0.31)
        self.conv = nn.Conv2d(1, 4, 3, stride=2)
        self.fc = nn.Linear(4 * 13 * 13, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(F.relu(self.conv(self.standardize(x))), 1))


def toy_data(n: int = 120) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels = which quarter of the rows holds a bright stripe, over noise."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        images[i, 7 * label:7 * label + 7] = 255
    return images, labels


# Every optimizer the study uses; the two SGD runs share their settings, so a concurrent group
# steps them as one block (one optimizer over both rows).
SPECS = [TrainSpec(epochs=2, batch_size=16, optimizer="sgd", lr=0.05),
         TrainSpec(epochs=2, batch_size=16, optimizer="sgd", lr=0.05),
         TrainSpec(epochs=2, batch_size=16, optimizer="adam", lr=3e-3),
         TrainSpec(epochs=2, batch_size=16, optimizer="adadelta", lr=1.0),
         TrainSpec(epochs=2, batch_size=16, optimizer="adamw", lr=1e-3, weight_decay=0.01),
         TrainSpec(epochs=2, batch_size=16, optimizer="rmsprop", lr=1e-3),
         TrainSpec(epochs=2, batch_size=16, optimizer="adagrad", lr=0.01)]


def run(mode: str, group_size: int = 8) -> tuple[list[nn.Module], list]:
    images, labels = toy_data()
    models = []
    for seed in range(len(SPECS)):
        torch.manual_seed(seed)
        models.append(TinyCNN())
    generators = [torch.Generator().manual_seed(100 + i) for i in range(len(SPECS))]
    histories = train_many(models, images, labels, SPECS, generators=generators,
                           eval_sets={"val": (images[:40], labels[:40])}, mode=mode,
                           group_size=group_size)
    return models, histories


def test_concurrent_matches_sequential(monkeypatch: pytest.MonkeyPatch) -> None:
    # In float32: bf16 autocast (on CPUs with native bf16) rounds differently when the same
    # sums are batched differently, which is not what this test is about.
    monkeypatch.setattr(training, "cpu_bf16", lambda: False)
    seq_models, seq_hist = run("sequential")
    con_models, con_hist = run("concurrent", group_size=3)  # groups of 3, 3 and 1
    for a, b in zip(seq_models, con_models):
        for (name, p), q in zip(a.named_parameters(), b.parameters()):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5, msg=name)
    for a, b in zip(seq_hist, con_hist):
        assert a.epochs == b.epochs == [1, 2]
        # The same bookkeeping (digits.training.EpochLog): 8 steps of 16 (the last 8) an epoch.
        assert a.steps == b.steps == 16
        assert len(b.eval_loss["val"]) == 2 and b.seconds > 0
        assert b.images_per_second == pytest.approx(2 * 120 / b.seconds)
        assert a.train_loss == pytest.approx(b.train_loss, rel=1e-4)
        assert a.train_acc == pytest.approx(b.train_acc, abs=1 / 120 + 1e-9)
        assert a.eval_acc["val"] == pytest.approx(b.eval_acc["val"], abs=1 / 40 + 1e-9)
    # It did learn something, so the comparison is not between untrained models.
    assert all(h.train_loss[-1] < h.train_loss[0] for h in seq_hist)


def test_seeds_reproduce_on_the_cpu() -> None:
    for mode in ("sequential", "concurrent"):
        (a, ha), (b, hb) = run(mode), run(mode)
        for m1, m2 in zip(a, b):
            for p, q in zip(m1.parameters(), m2.parameters()):
                assert torch.equal(p, q)
        assert [h.train_loss for h in ha] == [h.train_loss for h in hb]


def test_rejects_mixed_groups_and_counts() -> None:
    images, labels = toy_data(32)
    models = [TinyCNN(), nn.Sequential(nn.Flatten(), nn.Linear(784, 10))]
    gens = [torch.Generator(), torch.Generator()]
    with pytest.raises(ValueError, match="one architecture"):
        train_many(models, images, labels, SPECS[:2], generators=gens, mode="concurrent")
    with pytest.raises(ValueError, match="epochs and batch_size"):
        train_many([TinyCNN(), TinyCNN()], images, labels,
                   [SPECS[0], TrainSpec(epochs=1, batch_size=16)], generators=gens,
                   mode="concurrent")
    with pytest.raises(ValueError, match="one of each"):
        train_many([TinyCNN()], images, labels, SPECS[:2], generators=gens)


def test_auto_mode_follows_the_device() -> None:
    assert resolve_mode("auto", torch.device("cpu")) == "sequential"
    assert resolve_mode("auto", torch.device("cuda")) == "concurrent"
    assert resolve_mode("concurrent", torch.device("cpu")) == "concurrent"
    with pytest.raises(ValueError):
        resolve_mode("fast", torch.device("cpu"))


def test_alike_consecutive_runs_share_one_optimizer_over_their_rows() -> None:
    adam = TrainSpec(optimizer="adam", lr=1e-3)
    specs = [adam, adam, TrainSpec(optimizer="adam", lr=3e-3), SPECS[0], adam]
    stacked = {"w": torch.zeros(5, 3, requires_grad=True), "b": torch.zeros(5, requires_grad=True)}
    blocks = _blocks(stacked, specs, total_steps=10)
    assert [(b.rows.start, b.rows.stop) for b in blocks] == [(0, 2), (2, 3), (3, 4), (4, 5)]
    assert [type(b.optimizer).__name__ for b in blocks] == ["Adam", "Adam", "SGD", "Adam"]
    # The aliases are the stacked rows themselves: an optimizer step moves the stacked leaf.
    first = blocks[0]
    for name, alias in first.aliases:
        assert alias.is_leaf and alias.data_ptr() == stacked[name].data_ptr()
        alias.grad = torch.ones_like(alias)
    first.optimizer.step()
    assert (stacked["w"][:2] < 0).all() and (stacked["w"][2:] == 0).all()


def test_an_optimizer_this_torch_cannot_fuse_steps_unfused(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    class NoFusedAdagrad(torch.optim.Adagrad):
        """torch.optim.Adagrad as a torch without its fused kernel on this device has it."""

        def step(self, closure=None):  # type: ignore[no-untyped-def]
            if self.defaults.get("fused"):
                raise RuntimeError("`fused=True` requires all the params to be floating point "
                                   "Tensors of supported devices: ['cpu']")
            return super().step(closure)

    monkeypatch.setitem(training.OPTIMIZERS, "adagrad", NoFusedAdagrad)
    training.fused_works.cache_clear()
    try:
        assert not training.fused_works("adagrad", "cpu")
        param = nn.Parameter(torch.ones(3))
        optimizer = training.make_optimizer(TrainSpec(optimizer="adagrad"), [param])
        assert not optimizer.defaults["fused"]
        param.grad = torch.ones(3)
        optimizer.step()
        assert (param < 1).all()
    finally:
        training.fused_works.cache_clear()
    assert training.fused_works("adam", "cpu") and not training.fused_works("rmsprop", "cpu")
