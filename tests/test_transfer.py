"""analyses.transfer: label budgets, the contract, and the whole section on synthetic digits."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic import blobs

from analyses import PRESENTATION, classifiers, dataset
from analyses import transfer as t
from digits import original
from digits.data import MNIST
from digits.recipes import BEST_CNN
from digits.sampling import balanced_index
from digits.study import validation_split
from report.analysis import Section
from report.config import make_config
from report.context import DrawContext, Results
from report.engine import BuildOptions, DataSource, build
from report.keys import PRESENTATION_MODULES, Keys

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
    assert (t.budget_name(1000), t.budget_name(0)) == ("1,000", "all")
    assert (t.budget_key(10), t.budget_key(0)) == ("budget10", "budget_all")
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
    assert full.budgets == (10, 100, 1_000, 0) and isinstance(full.head_lrs, tuple)
    assert full.finetune_epochs > 0 and full.backbone == "auto"
    # The CNN from scratch is digits.recipes.BEST_CNN, unchanged: the config keeps only what a
    # profile shortens, not a copy of the recipe; the maps are scored as quality.MAP_SCORING.
    fields = {f.name for f in dataclasses.fields(full)}
    assert full.cnn_epochs == BEST_CNN.epochs and fields & {
        "cnn_batch_size", "cnn_lr", "cnn_momentum", "cnn_weight_decay", "cnn_dropout",
        "cnn_max_shift", "cnn_max_degrees", "knn_k", "knn_folds", "pca_dims",
        "perplexity"} == set()
    quick = dataclasses.replace(full, **analysis.quick)
    assert quick.input_size < full.input_size and quick.seeds >= 2
    assert quick.budgets == (10, 100, 0)
    # --set gives tuples too.
    config = make_config([t.ANALYSIS], "quick", {"transfer.budgets": "5,0",
                                                 "transfer.head_lrs": "0.001"})
    assert config.section("transfer").budgets == (5, 0)
    assert config.section("transfer").head_lrs == (0.001,)


def test_compute_reaches_no_drawing_and_draw_trains_nothing() -> None:
    keys = Keys(REPO, (*PRESENTATION_MODULES, *PRESENTATION))
    section = Section(t.ANALYSIS, t)
    compute = keys.closure(section, "compute")
    assert not compute.excluded  # report.compare, report.render, digits.plots, ...
    files = {name.split(":")[0] for name in compute.symbols}
    assert "digits/plots.py" not in files and "digits/recipes.py" in files
    mine = {name.split(":")[1] for name in compute.symbols
            if name.startswith("analyses/transfer.py:")}
    assert {"compute", "cnn_from_scratch", "tsne_maps", "budgets"} <= mine
    assert not mine & {"draw", "accuracy_rows", "budget_name", "draw_budgets", "plot_tsne",
                       "plot_maps", "beside_classifiers"}
    drawn = {name.split(":")[0] for name in keys.closure(section, "draw").symbols}
    assert not drawn & {"digits/training.py", "digits/features.py", "digits/backbones.py",
                        "digits/embedding_quality.py"}


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


def entry(cache: Path, name: str) -> Path:
    """The one compute entry of `name` in a fresh build's cache."""
    (folder,) = [p for p in (cache / "compute" / name).iterdir() if not p.name.startswith(".")]
    return folder


def redraw(tmp_path: Path, cache: Path, cfg: object, run: str) -> dict:
    """transfer's draw once more over the build's compute results: its metrics."""
    staging = tmp_path / run
    staging.mkdir()
    ctx = DrawContext("transfer", cfg, seed=0, staging=staging, results=entry(cache, "transfer"),
                      upstream={u: entry(cache, u) for u in t.ANALYSIS.requires},
                      log=lambda m: None)
    t.draw(ctx)
    return ctx.metrics


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

    # Compute recorded the raw results: per-run values and compact arrays, never the features.
    computed = entry(tmp_path / "cache", "transfer")
    raw = json.loads((computed / "manifest.json").read_text())["metrics"]
    assert len(raw["no_norm_test_accs"]) == 2 and len(raw["finetune_histories"]) == 2
    assert len(raw["knn_features_folds"]) == raw["knn_folds"] == 5
    assert raw["head_lr"] == raw["head_lr_grid"][int(np.argmax(raw["head_lr_val_accs"]))]
    for verdict in ("head_vs_best", "head_test_mean", "knn_features", "budget_points"):
        assert verdict not in raw  # summaries and verdicts are draw's
    stored = Results("test", "transfer", computed)
    arrays = {p.name.split(".")[0]: stored.array(p.name.split(".")[0])
              for p in (computed / "arrays").iterdir()}
    assert arrays["tsne_features"].shape == arrays["tsne_pixels"].shape == (120, 2)
    assert arrays["tsne_features"].dtype == np.float32 and arrays["tsne_labels"].dtype == np.uint8
    assert np.array_equal(arrays["tsne_labels"], data.test_labels.numpy()[arrays["tsne_index"]])
    assert arrays["first_conv"].shape[1] == 3
    maps = [arrays[f"maps_{s}"] for s in range(raw["maps_stages"])]
    assert all(m.dtype == np.float16 and m.shape[0] <= 4 for m in maps)
    assert [m.shape[0] for m in maps] == raw["maps_shown"]
    assert not any(a.ndim == 2 and a.shape[1] == 1280 for a in arrays.values())
    size = sum(p.stat().st_size for p in computed.rglob("*") if p.is_file())
    assert size < 200_000, size  # 200 test features alone would be 1 MB

    # Draw alone, again, from those results: the same verdicts and numbers.
    cfg = config.section("transfer")
    again = redraw(tmp_path, tmp_path / "cache", cfg, "first")
    assert again == redraw(tmp_path, tmp_path / "cache", cfg, "second")
    assert {k: metrics[k] for k in again} == json.loads(json.dumps(again))
