"""analyses/optimizers.py: the study on a tiny model, then the whole section on synthetic data."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from torch import nn

from analyses import dataset, optimizers
from digits.data import MNIST
from digits.study import validation_split
from report.config import make_config
from report.engine import BuildOptions, DataSource, build

REPO = Path(__file__).resolve().parent.parent
CFG = dataclasses.replace(optimizers.Config(), optimizers=("sgd", "adam"), epochs=2,
                          batch_size=16, lr_factors=(0.1, 1.0), seeds=2, mode="sequential")


def stripes(n: int, seed: int, classes: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels = which band of rows (of `classes`) holds a bright stripe, over noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.uint8)
    height = 28 // classes
    for i, label in enumerate(labels.tolist()):
        images[i, height * label:height * label + height] = 255
    return images, labels


def synthetic_mnist(n_train: int, n_test: int) -> MNIST:
    """Stripe 'digits' of ten classes in MNIST's container."""
    train_x, train_y = stripes(n_train, 2, classes=10)
    test_x, test_y = stripes(n_test, 3, classes=10)
    return MNIST(train_x, train_y, test_x, test_y, md5={}, source="synthetic")


def tiny() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 10))


def study(test_labels: torch.Tensor | None = None) -> optimizers.StudyResult:
    images, labels = stripes(160, 0)
    test_x, test_y = stripes(60, 1)
    split = validation_split(images, labels, 40, torch.Generator().manual_seed(0))
    test = (test_x, test_y if test_labels is None else test_labels)
    return optimizers.run_study(tiny, split, test, CFG, seed=11, log=lambda m: None)


def test_study_structure_and_reproducibility() -> None:
    a, b = study(), study()
    assert [r.study for r in a.runs].count("shared") == 4  # 2 optimizers x 2 seeds
    assert [r.study for r in a.runs].count("grid") == 4  # 2 optimizers x 2 rates
    assert [r.study for r in a.runs].count("fair") == 4
    assert a.grids == {"sgd": [0.01, 0.1], "adam": [1e-4, 1e-3]}
    for opt in CFG.optimizers:
        assert a.chosen_lr[opt] in a.grids[opt]
        assert a.grid_scores[opt][a.chosen_lr[opt]] == max(a.grid_scores[opt].values())
    # Seeds make runs reproducible on the CPU: every curve is bit-identical.
    assert a.chosen_lr == b.chosen_lr
    assert [h.eval_acc for h in a.histories] == [h.eval_acc for h in b.histories]
    assert [h.train_loss for h in a.histories] == [h.train_loss for h in b.histories]
    summaries = a.summaries("fair")
    assert set(summaries) == {"sgd", "adam"} and all(s.n == 2 for s in summaries.values())


def test_the_test_set_never_chooses() -> None:
    clean = study()
    poisoned = study(test_labels=torch.randint(0, 10, (60,), generator=torch.Generator()))
    # Grid runs are never evaluated on the test set...
    for run, history in zip(clean.runs, clean.histories):
        assert ("test" in history.eval_acc) == (run.study != "grid")
    # ...so scrambling the test labels changes no choice, only the reported test accuracy.
    assert clean.grid_scores == poisoned.grid_scores
    assert clean.chosen_lr == poisoned.chosen_lr
    assert clean.final("fair", "sgd", "validation") == poisoned.final("fair", "sgd", "validation")
    assert clean.final("fair", "sgd", "test") != poisoned.final("fair", "sgd", "test")


def test_seed_pairing() -> None:
    run = optimizers.Run
    # Same seed index: same initial weights and data order in (a) and (b), for every optimizer.
    assert optimizers._seed_offsets(run("shared", "sgd", 0.01, 1)) == \
        optimizers._seed_offsets(run("fair", "adam", 3e-4, 1))
    # Grid runs draw from their own seeds, so the final runs are fresh draws.
    grid = {optimizers._seed_offsets(run("grid", "sgd", 0.1, s)) for s in range(5)}
    final = {optimizers._seed_offsets(run("fair", "sgd", 0.1, s)) for s in range(5)}
    assert not {x for pair in grid for x in pair} & {x for pair in final for x in pair}


def test_original_numbers_come_from_the_constant() -> None:
    assert optimizers.ORIGINAL["test_acc"]["rmsprop"] == 0.9847  # DESIGN.md §6
    prose = (REPO / "analyses" / "optimizers.md").read_text()
    for value in ("98.05", "98.47", "94.67", "97.35", "93.26"):
        assert value not in prose
    # Every default optimizer has a grid centre.
    assert set(optimizers.Config().optimizers) <= set(optimizers.LR_CENTRES)


def test_whole_section_on_synthetic_data(tmp_path: Path) -> None:
    sets = {"optimizers.optimizers": "sgd,adam", "optimizers.epochs": "1",
            "optimizers.validation": "40", "optimizers.train_subset": "48",
            "optimizers.test_subset": "0", "optimizers.seeds": "2",
            "optimizers.batch_size": "16"}
    config = make_config([dataset.ANALYSIS, optimizers.ANALYSIS], "quick", sets)
    options = BuildOptions(root=REPO, out=tmp_path / "site", cache_dir=tmp_path / "cache",
                           templates=REPO / "templates", device=torch.device("cpu"))
    source = DataSource(fingerprint="synthetic",
                        load=lambda device: synthetic_mnist(120, 30))
    index, outcomes = build([dataset, optimizers], config, options, source, log=lambda m: None)
    assert outcomes["optimizers"].status == "run", outcomes["optimizers"].error
    metrics = json.loads((tmp_path / "site" / "data" / "optimizers" / "metrics.json").read_text())
    assert metrics["n_train"] == 48 and metrics["n_validation"] == 40 and metrics["n_test"] == 30
    assert metrics["best_optimizer"] in ("sgd", "adam")
    assert metrics["best_lr"] == metrics["chosen_lr"][metrics["best_optimizer"]]
    assert (metrics["winner"] is None) == (len(metrics["tied"]) > 1)
    page = index.read_text()
    for name in ("test_accuracy", "curves", "lr_grid", "comparison", "grid"):
        assert f'id="optimizers-{name}"' in page
    assert "Correcting the original" in page
    runs = (tmp_path / "site" / "assets" / "optimizers" / "runs.csv").read_text().splitlines()
    assert len(runs) == 1 + 2 * (2 + 2 + 2)  # header + shared, grid (2 rates), fair runs
