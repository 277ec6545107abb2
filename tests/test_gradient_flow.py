"""digits/gradient_flow.py: the deep MLPs and the good-versus-bad gradient-flow measurement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from digits.gradient_flow import (BAD, GOOD, deep_mlp, flow_arrays, flow_results, geometric_mean,
                                  run_flow)
from digits.recording import weight_layers
from digits.training import TrainSpec


def test_deep_mlp_layers() -> None:
    model = deep_mlp(depth=3, width=16, activation="sigmoid", batch_norm=False)
    assert weight_layers(model) == ["layer1", "layer2", "layer3", "layer4"]
    assert not any(isinstance(m, nn.BatchNorm1d) for m in model.modules())
    assert sum(isinstance(m, nn.Sigmoid) for m in model.modules()) == 3
    normed = deep_mlp(depth=3, width=16, activation="relu", batch_norm=True)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in normed.modules()) == 3
    assert normed(torch.rand(5, 1, 28, 28)).shape == (5, 10)
    with pytest.raises(ValueError):
        deep_mlp(2, 8, "swish", False)


def test_geometric_mean() -> None:
    assert geometric_mean(np.array([1e-6, 1e-2])) == pytest.approx(1e-4)


def test_sigmoid_network_starves_its_first_layer() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (256, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (256,), generator=g)
    spec = TrainSpec(epochs=1, batch_size=32, optimizer="sgd", lr=0.05, momentum=0.9)
    results = {config.label: run_flow(config, images, labels, (images[:64], labels[:64]), spec,
                                      depth=6, width=32, mean=0.5, std=0.3, seed=1, every=2)
               for config in (BAD, GOOD)}
    bad, good = results[BAD.label], results[GOOD.label]
    assert bad.snapshot_steps.tolist() == [1, 3, 5, 7]
    assert bad.grad_norms().shape == (4, 7)  # snapshots x (6 hidden + 1 output) layers
    # About 0.14 per sigmoid layer (see the module docstring): six layers give ~1e-5.
    assert geometric_mean(bad.first_last_ratio()) < 1e-3
    assert geometric_mean(good.first_last_ratio()) > 1e-1
    assert 0 <= bad.test_accuracy <= 1 and np.isfinite(good.train_loss)


def test_a_seed_fixes_the_run_and_seeds_differ() -> None:
    """dynamics trains each network on several seeds: one seed is one reproducible run."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (64,), generator=g)
    spec = TrainSpec(epochs=1, batch_size=16, optimizer="sgd", lr=0.05, momentum=0.9)

    def ratios(seed: int) -> np.ndarray:
        return run_flow(GOOD, images, labels, (images, labels), spec, depth=2, width=8,
                        mean=0.5, std=0.3, seed=seed).first_last_ratio()

    np.testing.assert_array_equal(ratios(4), ratios(4))
    assert not np.array_equal(ratios(4), ratios(5))


def test_runs_survive_their_arrays() -> None:
    """dynamics stores each network's seeds as arrays and draws from them: nothing is lost."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (64, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (64,), generator=g)
    spec = TrainSpec(epochs=1, batch_size=16, optimizer="sgd", lr=0.05, momentum=0.9)
    runs = [run_flow(BAD, images, labels, (images, labels), spec, depth=2, width=8, mean=0.5,
                     std=0.3, seed=seed) for seed in (4, 5)]
    arrays = flow_arrays(runs)
    assert arrays["norms"].shape == (2, 4, 3)  # seeds x snapshots x layers
    assert all(a.dtype != object for a in arrays.values())
    back = flow_results(BAD, arrays)
    for run, again in zip(runs, back):
        assert again.config == BAD
        np.testing.assert_array_equal(again.first_last_ratio(), run.first_last_ratio())
        np.testing.assert_array_equal(again.snapshot_steps, run.snapshot_steps)
        assert (again.train_loss, again.test_accuracy, again.seconds, again.steps) == (
            run.train_loss, run.test_accuracy, run.seconds, run.steps)
