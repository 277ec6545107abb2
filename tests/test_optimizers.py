"""analyses/optimizers.py: the first-step probe, the original's facts, the whole section."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from analyses import optimizers
from digits import original
from digits.data import MNIST
from digits.training import TrainSpec
from report.config import make_config
from report.engine import BuildOptions, DataSource, build
from synthetic import stripes

REPO = Path(__file__).resolve().parent.parent




def synthetic_mnist(n_train: int, n_test: int) -> MNIST:
    """Stripe 'digits' of ten classes in MNIST's container."""
    return MNIST(*stripes(n_train, 2), *stripes(n_test, 3), source="synthetic")


def test_first_update_of_adam_is_far_larger_than_sgds_at_one_rate() -> None:
    images, labels = stripes(32, 0)

    def size(optimizer: str) -> float:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))
        return optimizers.first_update_size(model, images, labels,
                                            TrainSpec(optimizer=optimizer, lr=0.01))

    # Adam's first step moves every weight with a gradient by about lr; SGD by lr x |gradient|.
    assert size("adam") > 10 * size("sgd") > 0
    # SGD's step is exactly lr x the gradient's mean magnitude (no momentum buffer yet).
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))
    probe = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10))
    probe.load_state_dict(model.state_dict())
    loss = nn.functional.cross_entropy(probe(images.unsqueeze(1).float() / 255), labels)
    loss.backward()
    grads = torch.cat([p.grad.abs().flatten() for p in probe.parameters()])
    measured = optimizers.first_update_size(model, images, labels, TrainSpec(lr=0.01))
    assert abs(measured - 0.01 * grads.mean().item()) < 1e-9


def test_original_numbers_are_facts_not_config_or_prose() -> None:
    assert original.OPTIMIZER_TEST_ACC["rmsprop"] == 0.9847
    assert not any("original" in f for f in optimizers.Config.__dataclass_fields__)
    prose = (REPO / "analyses" / "optimizers.md").read_text()
    for value in ("98.05", "98.47", "94.67", "97.35", "93.26"):
        assert value not in prose


def test_whole_section_on_synthetic_data(tmp_path: Path) -> None:
    sets = {"optimizers.optimizers": "sgd,adam", "optimizers.epochs": "1",
            "optimizers.validation": "40", "optimizers.train_subset": "48",
            "optimizers.test_subset": "0", "optimizers.seeds": "2",
            "optimizers.batch_size": "16", "optimizers.update_probes": "2"}
    config = make_config([optimizers.ANALYSIS], "quick", sets)
    options = BuildOptions(root=REPO, out=tmp_path / "site", cache_dir=tmp_path / "cache",
                           templates=REPO / "templates", device=torch.device("cpu"),
                           prose_globals={"original": original.facts()})
    source = DataSource(fingerprint="synthetic", load=lambda device: synthetic_mnist(120, 30))
    index, outcomes = build([optimizers], config, options, source, log=lambda m: None)
    assert outcomes["optimizers"].status == "run", outcomes["optimizers"].error
    site = tmp_path / "site"
    metrics = json.loads((site / "data" / "optimizers" / "metrics.json").read_text())
    assert metrics["n_train"] == 48 and metrics["n_validation"] == 40 and metrics["n_test"] == 30
    # The carried optimizer is the best validation mean, whatever the test set says.
    val = metrics["fair_val_mean"]
    assert metrics["best_optimizer"] == max(sorted(val), key=val.get)
    assert metrics["best_lr"] == metrics["chosen_lr"][metrics["best_optimizer"]]
    assert (metrics["winner"] is None) == (len(metrics["tied"]) > 1)
    assert metrics["first_update_ratio"]["sgd"] == 1.0
    assert set(metrics["first_update_vs_sgd"]) == {"adam"}
    manifest = json.loads(next((tmp_path / "cache" / "optimizers").glob("*/manifest.json"))
                          .read_text())
    assert set(manifest["choices"]) == {"chosen_lr", "best_optimizer", "best_lr"}
    page = index.read_text()
    for name in ("test_accuracy", "curves", "lr_grid", "comparison", "grid"):
        assert f'id="optimizers-{name}"' in page
    assert "Correcting the original" in page
    runs = (site / "assets" / "optimizers" / "runs.csv").read_text().splitlines()
    assert len(runs) == 1 + 2 * (2 + 2 + 2)  # header + shared, grid (2 rates), fair runs
