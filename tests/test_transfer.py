"""analyses.transfer: label budgets, the contract, and the whole section on synthetic digits."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from analyses import classifiers, dataset
from analyses import transfer as t
from digits import original
from digits.data import MNIST
from digits.recipes import BEST_CNN
from digits.sampling import balanced_index
from digits.study import validation_split
from report.config import make_config
from report.engine import BuildOptions, DataSource, build
from synthetic import blobs

REPO = Path(__file__).resolve().parent.parent


def test_budget_subsets_are_balanced_and_disjoint_from_validation_and_test() -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (1_000,), generator=g)
    images = torch.arange(1_000).view(-1, 1, 1).expand(-1, 28, 28).to(torch.uint8)
    split = validation_split(images, labels, 200, torch.Generator().manual_seed(1))
    train_y = labels[split.train_index].numpy()
    for per_class in (1, 10, 30):
        pos = np.sort(balanced_index(train_y, per_class, torch.Generator().manual_seed(2),
                                          strict=True))
        assert np.array_equal(np.bincount(train_y[pos], minlength=10), [per_class] * 10)
        assert len(np.unique(pos)) == len(pos) and np.all(np.diff(pos) > 0)
        chosen = split.train_index[torch.from_numpy(pos)]  # indices into the training set
        assert not set(chosen.tolist()) & set(split.val_index.tolist())
        # Drawn from the training images only: a test image can never be in it.
        assert chosen.max() < len(labels)
    small = balanced_index(train_y, 5, torch.Generator().manual_seed(3))
    large = balanced_index(train_y, 20, torch.Generator().manual_seed(3))
    assert set(small) <= set(large)  # one permutation: larger budgets contain smaller ones
    assert np.array_equal(balanced_index(train_y, 0, g), np.arange(len(train_y)))
    with pytest.raises(ValueError, match="per class"):
        balanced_index(train_y, 10_000, g, strict=True)


def test_helpers() -> None:
    assert t.parse_list("0.001, 0.003") == [0.001, 0.003]
    assert t.parse_list("10,100,0", int) == [10, 100, 0]
    assert (t.budget_name(1000), t.budget_name(0)) == ("1,000", "all")
    assert t.feature_folder("off") is None and t.feature_folder("") is None
    assert t.feature_folder("/x/y") == Path("/x/y")
    row = t.accuracy_rows("m", [0.9, 0.92], 10, 1.234, "here")
    assert row["test accuracy (%)"] == 91.0 and row["runs"] == 2 and row["± std"] == 1.41


def test_contract() -> None:
    analysis = t.ANALYSIS
    assert analysis.name == "transfer" and analysis.requires == ("dataset", "classifiers")
    full = analysis.config
    assert (full.input_size, full.train_subset, full.test_subset) == (224, 0, 0)
    assert full.head_epochs == original.EPOCHS and full.seeds >= 3
    assert t.parse_list(full.budgets, int) == [10, 100, 1_000, 0]
    assert full.finetune_epochs > 0 and full.backbone == "auto"
    # The CNN from scratch is the classifiers section's recipe, unchanged.
    best = classifiers.ANALYSIS.config
    assert (full.cnn_epochs, full.cnn_batch_size, full.cnn_lr, full.cnn_momentum,
            full.cnn_weight_decay, full.cnn_dropout, full.cnn_max_shift, full.cnn_max_degrees) \
        == (best.best_epochs, best.best_batch_size, best.best_lr, best.best_momentum,
            best.best_weight_decay, best.best_dropout, best.max_shift, best.max_degrees)
    assert best.best_schedule == BEST_CNN.schedule
    quick = dataclasses.replace(full, **analysis.quick)
    assert quick.input_size < full.input_size and quick.seeds >= 2




# Tiny settings: the three sections in seconds on 400 + 200 synthetic images.
TINY = {"classifiers.epochs": "1", "classifiers.seeds": "2", "classifiers.best_epochs": "1",
        "classifiers.best_seeds": "1", "classifiers.train_subset": "0",
        "classifiers.gallery": "4",
        "transfer.input_size": "32", "transfer.validation": "60", "transfer.seeds": "2",
        "transfer.budgets": "2,0", "transfer.head_epochs": "2", "transfer.head_min_steps": "5",
        "transfer.head_lrs": "0.001,0.003", "transfer.cnn_epochs": "1",
        "transfer.cnn_min_steps": "2", "transfer.timing_images": "32",
        "transfer.finetune_epochs": "1", "transfer.tsne_points": "120",
        "transfer.maps_per_stage": "4", "transfer.download": "false", "transfer.threads": "1"}


def test_whole_section_on_synthetic_digits(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))  # no VGG16 here
    sets = {**TINY, "transfer.feature_cache": str(tmp_path / "features")}
    modules = [dataset, classifiers, t]
    config = make_config([m.ANALYSIS for m in modules], "quick", sets)
    options = BuildOptions(root=REPO, out=tmp_path / "site", cache_dir=tmp_path / "cache",
                           templates=REPO / "templates", device=torch.device("cpu"),
                           prose_globals={"original": original.facts()})
    data = MNIST(*blobs(400, 1), *blobs(200, 2), source="synthetic")
    source = DataSource(fingerprint="synthetic", load=lambda device: data)
    index, outcomes = build(modules, config, options, source, log=lambda m: None)
    assert outcomes["transfer"].status == "run", outcomes["transfer"].error
    metrics = json.loads((tmp_path / "site" / "data" / "transfer" / "metrics.json").read_text())
    assert metrics["backbone_name"] == "efficientnet_lite0"
    assert "downloading them is switched off" in metrics["backbone_reason"]
    assert (metrics["n_train"], metrics["n_val"], metrics["n_test"]) == (340, 60, 200)
    assert metrics["head_lr"] in (0.001, 0.003)
    assert len(metrics["head_test_accs"]) == 2 and len(metrics["finetune_test_accs"]) == 2
    assert len(metrics["budget2_cnn_accs"]) == 2
    assert metrics["budget_all_cnn_accs"] == json.loads(
        (tmp_path / "site" / "data" / "classifiers" / "metrics.json").read_text()
    )["best_test_accs"]
    for key in ("head_vs_no_dropout", "head_vs_no_norm", "head_vs_both", "budget2_head_vs_cnn",
                "knn_features_vs_pixels", "head_vs_best"):
        assert metrics[key]["verdict"] in ("ahead", "behind", "cannot separate")
    assert metrics["epoch_speedup_seconds_ratio"] > 1
    assert len(list((tmp_path / "features").glob("*.pt"))) == 4  # train/test, two preprocessings
    page = index.read_text()
    for name in ("curves", "beside_classifiers", "budgets", "budgets_plot", "ablations",
                 "filters", "maps", "tsne"):
        assert f'id="transfer-{name}"' in page
    assert "EfficientNet-Lite0" in page
