"""analyses/optimizers.py: the first-step probe, the original's facts, the whole section in two
stages (compute records every run and the choices; draw summarises, compares and plots)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from analyses import optimizers
from digits import original
from digits.data import MNIST
from digits.study import diverged
from digits.training import TrainSpec
from report.analysis import Section
from report.config import make_config
from report.context import DrawContext
from report.engine import BuildOptions, DataSource, build
from report.keys import PRESENTATION_MODULES, Keys
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


SETS = {"optimizers.optimizers": "sgd,adam", "optimizers.epochs": "2",
        "optimizers.validation": "40", "optimizers.train_subset": "48",
        "optimizers.test_subset": "0", "optimizers.seeds": "2", "optimizers.batch_size": "16",
        "optimizers.update_probes": "2"}


def load_synthetic(device: torch.device) -> MNIST:
    return synthetic_mnist(120, 30)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """One build of the section on synthetic data: its folders, config and both manifests."""
    tmp = tmp_path_factory.mktemp("optimizers")
    config = make_config([optimizers.ANALYSIS], "quick", SETS)
    options = BuildOptions(root=REPO, out=tmp / "site", cache_dir=tmp / "cache",
                           templates=REPO / "templates", device=torch.device("cpu"),
                           prose_globals={"original": original.facts()})
    source = DataSource(fingerprint="synthetic", load=load_synthetic)
    index, outcomes = build([optimizers], config, options, source, log=lambda m: None)
    assert outcomes["optimizers"].status == "run", outcomes["optimizers"].error
    entry = next((tmp / "cache" / "compute" / "optimizers").glob("*/manifest.json")).parent
    drawn = next((tmp / "cache" / "draw" / "optimizers").glob("*/manifest.json"))
    return {"tmp": tmp, "index": index, "entry": entry, "cfg": config.section("optimizers"),
            "compute": json.loads((entry / "manifest.json").read_text()),
            "draw": json.loads(drawn.read_text())}


def redraw(built: dict, folder: Path, results: Path | None = None) -> DrawContext:
    """Run draw again, in this process, from compute's entry (or another results folder)."""
    folder.mkdir(parents=True)
    ctx = DrawContext("optimizers", built["cfg"], results=results or built["entry"], seed=0,
                      staging=folder, upstream={}, log=lambda m: None)
    optimizers.draw(ctx)
    return ctx


def test_whole_section_on_synthetic_data(built: dict) -> None:
    site = built["tmp"] / "site"
    metrics = json.loads((site / "data" / "optimizers" / "metrics.json").read_text())
    assert metrics["n_train"] == 48 and metrics["n_validation"] == 40 and metrics["n_test"] == 30
    # The carried optimizer is the best validation mean, whatever the test set says.
    val = metrics["fair_val_mean"]
    assert metrics["best_optimizer"] == max(sorted(val), key=val.get)
    assert metrics["best_lr"] == metrics["chosen_lr"][metrics["best_optimizer"]]
    assert (metrics["winner"] is None) == (len(metrics["tied"]) > 1)
    assert metrics["first_update_ratio"]["sgd"] == 1.0
    assert set(metrics["first_update_vs_sgd"]) == {"adam"}
    assert set(built["compute"]["choices"]) == {"chosen_lr", "best_optimizer", "best_lr"}
    page = built["index"].read_text()
    for name in ("test_accuracy", "curves", "lr_grid", "comparison", "grid"):
        assert f'id="optimizers-{name}"' in page
    assert "Correcting the original" in page
    runs = (site / "assets" / "optimizers" / "runs.csv").read_text().splitlines()
    assert len(runs) == 1 + 2 * (2 + 2 + 2)  # header + shared, grid (2 rates), fair runs
    assert runs[0].endswith(",train_loss,diverged,failed")


def test_compute_records_every_run_and_only_raw_results(built: dict) -> None:
    computed, drawn = built["compute"]["metrics"], built["draw"]["metrics"]
    runs = computed["runs"]
    assert [(r["study"], r["optimizer"]) for r in runs].count(("grid", "adam")) == 2
    for run in runs:
        assert len(run["validation"]) == 2 and len(run["train_loss"]) == 2  # every epoch
        assert ("test" in run) == (run["study"] != "grid")  # grid runs never see the test set
        assert run["diverged"] is diverged(run["train_loss"])
    assert set(computed["first_update_sizes"]) == {"sgd", "adam"}
    assert all(len(v) == 2 for v in computed["first_update_sizes"].values())  # every probe
    # Read by dynamics with metric_of: recorded by compute.
    assert {"best_optimizer", "best_lr", "batch_size", "momentum"} <= set(computed)
    # Summaries and verdicts are drawn, never computed.
    for name in ("winner", "tied", "val_winner", "shared_test_mean", "tuning_vs_shared",
                 "first_update_vs_sgd", "chosen_at_edge", "names", "diverged_runs"):
        assert name in drawn and name not in computed
    assert not set(computed) & set(drawn)
    # The fair runs' test accuracies are what the drawn means summarise.
    fair_adam = [r["test"][-1] for r in runs if r["study"] == "fair" and r["optimizer"] == "adam"]
    assert drawn["fair_test_mean"]["adam"] == pytest.approx(sum(fair_adam) / 2)


def test_draw_reproduces_its_items_from_the_recorded_results(built: dict, tmp_path: Path) -> None:
    again = redraw(built, tmp_path / "again")
    assert json.loads(json.dumps(again.metrics)) == built["draw"]["metrics"]
    tables = {i["name"]: i["rows"] for i in again.items if i["kind"] == "table"}
    assert tables == {i["name"]: i["rows"] for i in built["draw"]["items"]
                      if i["kind"] == "table"}


def test_verdicts_follow_the_recorded_runs(built: dict, tmp_path: Path) -> None:
    """Draw decides who wins from compute's runs: make Adam's tuned runs far ahead on the test
    set and redraw; the verdict changes, the choice (validation) does not."""
    results = tmp_path / "results"
    shutil.copytree(built["entry"], results)
    manifest = json.loads((results / "manifest.json").read_text())
    for run in manifest["metrics"]["runs"]:
        if run["study"] == "fair":
            run["test"][-1] = (0.99 if run["optimizer"] == "adam" else 0.5) + 0.001 * run["seed"]
    (results / "manifest.json").write_text(json.dumps(manifest))
    shared = next(r for r in manifest["metrics"]["runs"] if r["study"] == "shared")
    shared["diverged"] = True
    (results / "manifest.json").write_text(json.dumps(manifest))
    ctx = redraw(built, tmp_path / "drawn", results)
    assert ctx.metrics["winner"] == "adam" and ctx.metrics["tied"] == ["adam"]
    label = f"{optimizers.NAMES[shared['optimizer']]}, seed {shared['seed']}"
    assert label in ctx.metrics["diverged_runs"]["shared"]
    # A run compute flagged is a failed run, named by optimizer, rate and seed, and the verdict
    # on its study says it rests on it.
    failed = ctx.metrics["failed_runs"]["shared"]
    assert {"optimizer": shared["optimizer"], "lr": shared["lr"], "seed": shared["seed"],
            "why": "at chance"}.items() <= failed[0].items()
    assert shared["optimizer"] in ctx.metrics["failed_optimizers"]["shared"]
    assert ctx.metrics["fair_test_mean"] == {"sgd": pytest.approx(0.5005),
                                             "adam": pytest.approx(0.9905)}
    assert ctx.metrics["test_best_is_val_best"] == (manifest["metrics"]["best_optimizer"] == "adam")


def test_compute_reaches_no_presentation_module() -> None:
    keys = Keys(REPO, (*PRESENTATION_MODULES, "digits.plots"))
    section = Section(optimizers.ANALYSIS, optimizers)
    assert keys.closure(section, "compute").excluded == frozenset()
    symbols = set(keys.closure(section, "compute").symbols)
    assert "digits/study.py:choose_best" in symbols and "digits/study.py:decide" not in symbols
    drawn = set(keys.closure(section, "draw").symbols)
    assert "digits/study.py:decide" in drawn and "report/compare.py:compare" in drawn
