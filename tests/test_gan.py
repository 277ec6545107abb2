"""digits.gan and analyses.gan: the batched GAN, its failure handling, and the whole section."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from analyses import ANALYSES, PRESENTATION, classifiers, dataset
from analyses import gan as section
from digits import original
from digits.data import MNIST
from digits.gan import (
    RECIPES,
    Discriminator,
    GanHistory,
    Generator,
    generate,
    loss_problem,
    optimizers_named,
    recorded_epochs,
    to_unit,
    train_gan,
)
from digits.models import BestCNN
from digits.sampling import balanced_index
from report import DrawContext
from report.analysis import sections_from_modules
from report.config import make_config
from report.context import Results
from report.engine import BuildOptions, DataSource, build
from report.keys import PRESENTATION_MODULES, Keys

REPO = Path(__file__).resolve().parent.parent
SMALL = {"widths": (16, 16, 32)}


def digits(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ten classes: a bright bar at a class-dependent place over faint noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 30, (n, 28, 28), generator=g, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        images[i, 2 + 2 * label:5 + 2 * label, 4:24] = 255
    return images, labels


def test_recorded_epochs_include_start_and_end() -> None:
    assert recorded_epochs(7, 3) == [0, 3, 6, 7]
    assert recorded_epochs(4, 1) == [0, 1, 2, 3, 4]
    assert recorded_epochs(5, 10) == [0, 5]


def test_loss_problem() -> None:
    assert loss_problem(0.7, 1.2, 100.0) is None
    assert loss_problem(math.nan, 1.0, 100.0) == "nan"
    assert loss_problem(0.5, math.inf, 100.0) == "nan"
    assert loss_problem(0.5, 150.0, 100.0) == "exploded"


def test_recipes_named_and_changes() -> None:
    recipes = section.recipes_named(("original", "range", "smoothing"))
    assert [r.name for r in recipes] == ["original", "range", "smoothing"]
    assert section.changes(recipes[0], recipes[1]) == ["real images in [-1, 1]"]
    assert section.changes(recipes[1], recipes[2]) == [
        "D's dropout only while D trains", "D's target for real images 0.9"]
    with pytest.raises(ValueError):
        section.recipes_named(("original", "nonsense"))
    with pytest.raises(ValueError):
        section.recipes_named(("original",))


def test_config_lists_are_tuples_and_the_quick_override_too() -> None:
    quick = make_config([section.ANALYSIS], "quick").section("gan")
    assert quick.g_widths == (64, 128, 256) and quick.d_widths == (256, 128, 64)
    assert quick.runs == ("original", "range", "smoothing")
    full = make_config([section.ANALYSIS], "full", {"gan.runs": "original,spectral"})
    assert full.section("gan").runs == ("original", "spectral")
    assert full.section("gan").g_widths == (256, 512, 1024)


def measurement(seed: int) -> dict:
    """A measurement shaped like section.measure's, with random values."""
    rng = np.random.default_rng(seed)
    m: dict = {key: float(rng.random()) for key in section.METRICS}
    m.update({f"{key}_per_class": rng.random(10) for key in section.PER_CLASS})
    return m


def test_pack_keeps_every_value_exactly_and_a_stopped_run_as_nan() -> None:
    a, b = measurement(0), measurement(1)
    overall, classes = section.pack([a, None, b])
    assert overall.shape == (3, 7) and classes.shape == (3, 5, 10)
    assert np.isnan(overall[1]).all() and np.isnan(classes[1]).all()
    back = section.unpack(overall[2], classes[2])
    assert back.keys() == b.keys()
    for key, value in b.items():
        assert np.array_equal(back[key], value), key


def test_summarise_takes_means_and_counts_collapsed_classes() -> None:
    sets = [measurement(0), measurement(1)]
    sets[0]["recall_per_class"][:] = 0.5
    sets[1]["recall_per_class"][:] = 0.5
    sets[0]["recall_per_class"][3] = 0.0  # class 3: mean 0.25
    sets[1]["recall_per_class"][7] = 0.0  # class 7 too
    summary = section.summarise(sets, collapse_recall=0.3)
    assert summary["fid"] == np.mean([sets[0]["fid"], sets[1]["fid"]])
    assert summary["batches"]["fid"] == [sets[0]["fid"], sets[1]["fid"]]
    assert summary["collapsed"] == [3, 7]
    assert section.summarise(sets, collapse_recall=0.2)["collapsed"] == []


def test_compute_reaches_no_presentation_and_draw_reaches_the_comparison() -> None:
    keys = Keys(REPO, (*PRESENTATION_MODULES, *PRESENTATION))
    gan = next(s for s in sections_from_modules(ANALYSES) if s.name == "gan")
    assert keys.closure(gan, "compute").excluded == frozenset()
    compute = set(keys.symbols(gan, "compute"))
    draw = set(keys.symbols(gan, "draw"))
    assert "report/compare.py:compare" in draw and "digits/plots.py:new_figure" in draw
    # Verdict wording and figure helpers are drawing's alone: editing them recomputes nothing.
    for name in ("_per_class_claim", "ablation_tables", "summarise", "grid_gif", "tile"):
        assert f"analyses/gan.py:{name}" in draw and f"analyses/gan.py:{name}" not in compute


def test_runs_start_alike_and_train_independently() -> None:
    """Runs with the same recipe stay identical: the batched layers never mix runs."""
    torch.manual_seed(0)
    recipes = [RECIPES["range"], RECIPES["range"], RECIPES["original"]]
    g, d = Generator(3, z_dim=8, **SMALL), Discriminator(3, widths=(32, 16, 16))
    images, labels = digits(200, 1)
    history = train_gan(g, d, recipes, images, labels, epochs=2, batch_size=50, lr=1e-3,
                        generator_order=torch.Generator().manual_seed(0))
    assert history.steps == 8 and history.stopped == [None] * 3
    assert history.cuda_graph is False  # graphs are for CUDA only
    # G's step freezes D's weights for speed; they must be trainable again afterwards.
    assert all(p.requires_grad for p in d.parameters())
    torch.testing.assert_close(g.layers[0].weight[0], g.layers[0].weight[1])
    assert not torch.equal(g.layers[0].weight[0], g.layers[0].weight[2])
    out = generate(g, torch.randn(20, 8), torch.arange(20) % 10)
    assert out.shape == (3, 20, 28, 28) and out.abs().max() <= 1
    unit = to_unit(out, recipes)
    assert unit.min() >= 0 and unit.max() <= 1
    torch.testing.assert_close(unit[0], (out[0] + 1) / 2)


@pytest.mark.parametrize("middle", ["range", "spectral"])
def test_a_batched_run_equals_the_same_run_trained_alone(middle: str) -> None:
    """Training three recipes together leaves the middle one as if it had trained alone (the
    spectral norm's vectors too are per run)."""
    images, labels = digits(200, 1)
    weights = []
    for recipes in ([RECIPES["original"], RECIPES[middle], RECIPES["smoothing"]],
                    [RECIPES[middle]]):
        torch.manual_seed(0)
        g = Generator(len(recipes), z_dim=8, **SMALL)
        d = Discriminator(len(recipes), widths=(32, 16, 16))
        train_gan(g, d, recipes, images, labels, epochs=2, batch_size=50, lr=1e-3,
                  generator_order=torch.Generator().manual_seed(0))
        weights.append(g.layers[-1].weight[1 if len(recipes) == 3 else 0].detach())
    # Rounding only: batched products of 3 runs and of 1 sum in other orders (measured up to
    # 4e-6 apart after these 8 steps, in float32 and in bf16); a run mixed in moves 1e-2.
    torch.testing.assert_close(weights[0], weights[1], rtol=1e-3, atol=1e-5)


def test_a_nan_loss_is_reported_not_raised() -> None:
    """A run whose generator turns NaN stops with a reason; the other run trains on."""
    torch.manual_seed(0)
    recipes = [RECIPES["original"], RECIPES["smoothing"]]
    g, d = Generator(2, z_dim=8, **SMALL), Discriminator(2, widths=(32, 16, 16))
    with torch.no_grad():
        g.layers[-1].weight[0, 0, 0] = math.nan  # poison run 0 only
    images, labels = digits(200, 1)
    seen = []
    history = train_gan(g, d, recipes, images, labels, epochs=3, batch_size=50, lr=1e-3,
                        generator_order=torch.Generator().manual_seed(0), record=[0, 2, 3],
                        on_record=lambda epoch, h: seen.append((epoch, list(h.stopped))))
    assert history.stopped == ["nan", None]
    assert history.stopped_epoch == [1, None]
    assert math.isnan(history.d_loss[0][1]) and all(math.isfinite(v) for v in history.d_loss[1])
    assert seen == [(0, [None, None]), (2, ["nan", None]), (3, ["nan", None])]
    assert torch.isfinite(g.layers[-1].weight[1]).all()


def test_spectral_norm_bounds_the_largest_singular_value() -> None:
    torch.manual_seed(0)
    d = Discriminator(2, widths=(32, 16, 16))
    d.set_spectral([True, False])
    x, y = torch.rand(2, 10, 784), torch.arange(10)
    for _ in range(30):  # power iteration converges over training calls
        d(x, y)
    w = d.layers[0].weight.detach()
    sigma = torch.linalg.vector_norm(torch.bmm(d.v0[:, None, :], w), dim=(1, 2))
    assert sigma[0] == pytest.approx(float(torch.linalg.matrix_norm(w[0], ord=2)), rel=1e-3)
    # Run 1 is not normalised: its layer is the plain one.
    h = torch.cat([x, d.embed(y)], dim=2)
    d.eval()
    torch.testing.assert_close(d(x, y)[1], d.layers[3](F.leaky_relu(d.layers[2](F.leaky_relu(
        d.layers[1](F.leaky_relu(d.layers[0](h), 0.2)), 0.2)), 0.2))[1, :, 0])


def test_dropout_masks_are_one_draw_shared_by_runs_and_off_where_asked() -> None:
    """Each hidden layer's mask: 0 or 1 / (1 - p), the same for every run; all ones for a run
    whose dropout is off."""
    torch.manual_seed(0)
    d = Discriminator(3, widths=(32, 16, 8), p=0.25)
    h = torch.zeros(3, 40, 32)
    masks = d._dropout_masks(h, None)
    assert [tuple(m.shape) for m in masks] == [(40, 32), (40, 16), (40, 8)]
    values = torch.cat([m.flatten() for m in masks])
    torch.testing.assert_close(values.unique(), torch.tensor([0.0, 1 / 0.75]))
    assert 0.15 < (values == 0).float().mean() < 0.35
    off = d._dropout_masks(h, torch.tensor([True, False, True]))
    assert all(m.shape[0] == 3 and torch.equal(m[0], m[2]) for m in off)
    assert all(bool((m[1] == 1).all()) for m in off)


def test_g_step_calls_leave_the_power_iteration_alone() -> None:
    """A training call refines the spectral norm's vectors; one without power iteration (G's
    step) and an eval call leave them as they are."""
    torch.manual_seed(0)
    d = Discriminator(2, widths=(32, 16, 16))
    d.set_spectral([True, True])
    x, y = torch.rand(2, 10, 784), torch.arange(10)
    before = [buffer.clone() for buffer in (d.u0, d.v0)]
    d(x, y, power_iteration=False)
    d.eval()
    d(x, y)
    assert all(torch.equal(a, b) for a, b in zip(before, (d.u0, d.v0)))
    d.train()
    d(x, y)
    d(x, y)  # v starts as the first step from u, so the first call moves u alone
    assert not any(torch.equal(a, b) for a, b in zip(before, (d.u0, d.v0)))


def test_balanced_index_and_nearest_distances() -> None:
    labels = torch.tensor([0, 1, 0, 1, 0, 2])
    index = balanced_index(labels, 2, torch.Generator().manual_seed(0), n_classes=3)
    assert labels[index].tolist() == [0, 0, 1, 1, 2]
    bank = torch.zeros(3, 28, 28, dtype=torch.uint8)
    bank[1] = 255
    query = torch.ones(2, 28, 28)
    distance, which = section.nearest_distances(query, bank)
    assert which.tolist() == [1, 1] and distance.tolist() == [0.0, 0.0]


TINY = {"gan.train_subset": "0", "gan.epochs": "2", "gan.record_every": "1",
        "gan.optimizers": "original", "gan.g_widths": "16,16,32", "gan.d_widths": "32,16,16",
        "gan.runs": "original,range,smoothing", "gan.samples_per_class": "8",
        "gan.reference_per_class": "8", "gan.fid_batches": "2", "gan.copy_check": "4",
        "gan.walk_steps": "4"}
DATA = MNIST(*digits(400, 1), *digits(200, 2), source="synthetic")


def build_section(tmp_path: Path, **extra: str) -> tuple[Path, dict, object]:
    """Build dataset, classifiers and gan on synthetic digits; the page, outcomes and config."""
    sets = {"classifiers.epochs": "1", "classifiers.seeds": "2", "classifiers.best_epochs": "1",
            "classifiers.best_seeds": "1", "classifiers.train_subset": "0", **TINY, **extra}
    modules = [dataset, classifiers, section]
    config = make_config([m.ANALYSIS for m in modules], "quick", sets)
    options = BuildOptions(root=REPO, out=tmp_path / "site", cache_dir=tmp_path / "cache",
                           templates=REPO / "templates", device=torch.device("cpu"),
                           prose_globals={"original": original.facts()})
    source = DataSource(fingerprint="synthetic", load=lambda device: DATA)
    index, outcomes = build(modules, config, options, source, log=lambda m: None)
    assert outcomes["gan"].status == "run", outcomes["gan"].error
    return index, outcomes, config


def manifests(outcome: object) -> tuple[dict, dict]:
    """The compute and the draw manifest of an outcome."""
    return (json.loads((outcome.entry / "manifest.json").read_text()),
            json.loads((outcome.draw_entry / "manifest.json").read_text()))


def draw_again(tmp_path: Path, outcome: object, config: object) -> dict:
    """Run draw on the build's compute results in a fresh folder; the metrics it records."""
    staging = tmp_path / "redraw"
    staging.mkdir()
    ctx = DrawContext("gan", config.section("gan"), results=outcome.entry, seed=config.seed,
                      staging=staging, upstream={}, data_loader=lambda: DATA, log=lambda m: None)
    section.draw(ctx)
    return ctx.metrics


def test_whole_section_on_synthetic_digits(tmp_path: Path) -> None:
    index, outcomes, config = build_section(tmp_path)
    computed, drawn = manifests(outcomes["gan"])
    results = computed["metrics"]
    assert results["recorded_epochs"] == [0, 1, 2]
    # Compute records raw results: every measurement as arrays, the digits as uint8.
    arrays = {i["name"]: i for i in computed["items"] if i["kind"] == "array"}
    assert arrays["measured"]["shape"] == [3, 3, 7]  # epochs, runs, metrics
    assert arrays["measured_per_class"]["shape"] == [3, 3, 5, 10]
    assert arrays["final"]["shape"] == [2, 3, 7]  # generated sets, runs, metrics
    assert arrays["grid_frames"] == {"kind": "array", "name": "grid_frames",
                                     "shape": [3, 2, 100, 28, 28], "dtype": "uint8"}
    assert arrays["samples"]["shape"] == [3, 100, 28, 28]
    assert arrays["walk"]["shape"] == [40, 28, 28]
    assert arrays["copy_fake_distance"]["shape"] == [40]
    assert arrays["pixel_counts"]["shape"] == [3, section.PIXEL_BINS]
    assert all(a["dtype"] in ("uint8", "float32", "float64", "int32", "int64")
               for a in arrays.values())
    # Every verdict and summary is drawing's: none is among compute's results.
    metrics = drawn["metrics"]
    for name in ("corrected_vs_original_recall", "copy_fake_vs_test", "ablation_verdicts",
                 "corrected_fid", "real_fid", "n_frames"):
        assert name in metrics and name not in results, name
    gif = next(i for i in drawn["items"] if i["name"] == "grid_gif")
    assert gif["frames"] == len(results["recorded_epochs"]) == metrics["n_frames"]
    assert gif.get("sprite")
    assert metrics["runs"] == ["original", "range", "smoothing"]
    assert metrics["steps"] == 2 * 400 // 100
    for key in ("cond_acc", "fid", "precision", "recall", "one_nn", "inception"):
        assert metrics[f"real_{key}"] is not None
    # Real training digits against test digits: the classifier's own accuracy is the ceiling.
    assert 0 <= metrics["real_cond_acc"] <= 1 and metrics["real_fid"] >= 0
    assert metrics["corrected_vs_original_recall"]["a"]["n"] == 10
    assert metrics["copy_fake_vs_test"]["a"]["n"] == 40
    # The corrected run's FD is the mean over the generated sets compute measured.
    final = Results("test", "gan", outcomes["gan"].entry).array("final")
    assert metrics["corrected_fid"] == pytest.approx(final[:, -1, 1].mean(), rel=1e-12)
    # Draw is a function of compute's results: run again, it records the same numbers.
    assert draw_again(tmp_path, outcomes["gan"], config) == metrics
    page = index.read_text()
    for name in ("ablation", "per_class", "losses", "metrics", "grid_gif", "samples",
                 "real_vs_generated", "pixel_hist", "z_walk", "nearest"):
        assert f'id="gan-{name}"' in page, name
    assert "{{" not in page


def test_the_optimizer_is_chosen_in_trials_the_reported_runs_do_not_reuse(
        tmp_path: Path) -> None:
    """Several settings named: trial runs choose one by the judge's cross-entropy, and the runs
    the page reports are exactly those of a build that named the chosen setting alone."""
    index, outcomes, _ = build_section(tmp_path / "trials", **{
        "gan.optimizers": "original,large-step", "gan.trial_epochs": "1"})
    computed, drawn = manifests(outcomes["gan"])
    results = computed["metrics"]
    trials = results["optimizer_trials"]
    assert [t["name"] for t in trials] == ["original", "large-step"]
    assert [t["steps"] for t in trials] == [400 // 100, 400 // 64]
    scores = [section.trial_score(t["cross_entropy"]) for t in trials]
    assert all(math.isfinite(v) and v > 0 for v in scores)
    assert results["optimizer_name"] == trials[int(np.argmin(scores))]["name"]
    metrics = drawn["metrics"]
    assert metrics["n_trials"] == 2 and metrics["optimizer"]["name"] == results["optimizer_name"]
    assert [t["cross_entropy"] for t in metrics["trials"]] == pytest.approx(scores)
    page = index.read_text()
    assert "How the optimizer was chosen" in page and "a tenfold step" in page
    # The trials run on streams of their own: the reported runs do not see them.
    alone_index, alone, _ = build_section(tmp_path / "alone",
                                          **{"gan.optimizers": results["optimizer_name"]})
    assert manifests(alone["gan"])[0]["metrics"]["optimizer_trials"] == []
    for name in ("measured", "final", "samples"):
        np.testing.assert_array_equal(
            Results("test", "gan", outcomes["gan"].entry).array(name),
            Results("test", "gan", alone["gan"].entry).array(name), err_msg=name)
    assert "How the optimizer was chosen" not in alone_index.read_text()


def test_judged_runs_skip_a_stopped_run_and_a_non_finite_one() -> None:
    torch.manual_seed(0)
    judge = BestCNN()
    output = torch.rand(3, 4, 28, 28)
    output[2, 1, 5, 5] = math.nan
    history = GanHistory(["a", "b", "c"], stopped=[None, "exploded", None])
    judged = section.judged_runs(judge, output, history)
    assert judged[1] is None and judged[2] is None
    features, logits = judged[0]
    assert logits.shape == (4, 10) and features.shape[0] == 4


def test_trial_score_rules_out_a_setting_with_a_failed_run() -> None:
    assert section.trial_score([1.0, 2.0]) == 1.5
    assert section.trial_score([1.0, None]) == math.inf
    assert section.trial_score([1.0, math.nan]) == math.inf


@pytest.mark.parametrize("names", [(), ("adam",), ("original", "original")])
def test_optimizers_named_rejects_bad_lists(names: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="optimizers must name"):
        optimizers_named(names)


def test_whole_section_reports_runs_that_stop(tmp_path: Path) -> None:
    """Every run exceeding the loss limit stops; the section still builds and says so, and an
    optimizer trial with a stopped run cannot be chosen."""
    index, outcomes, _ = build_section(tmp_path, **{"gan.explode_limit": "0.01",
                                                    "gan.optimizers": "large-step,original",
                                                    "gan.trial_epochs": "1"})
    computed, drawn = manifests(outcomes["gan"])
    assert computed["metrics"]["final_measured"] == [False, False, False]
    # Every trial had a stopped run: none could win, so the first named is kept.
    assert computed["metrics"]["optimizer_name"] == "large-step"
    assert all(t["cross_entropy"] == [None] * 3
               for t in computed["metrics"]["optimizer_trials"])
    metrics = drawn["metrics"]
    assert metrics["n_stopped"] == 3
    assert metrics["stopped_runs"][0] == ["original", "exploded", 1]
    assert metrics["both_finished"] is False and metrics["corrected_fid"] is None
    page = index.read_text()
    assert "Runs that stopped" in page and "stopped at epoch" in page
    assert page.count("so it could not be chosen") == 2
