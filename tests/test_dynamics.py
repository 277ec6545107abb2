"""The weights-and-gradients section (analyses/dynamics.py): its claims, figures and prose, and its
two stages (compute records the run's summaries as arrays; draw makes every frame, chart and
verdict)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from analyses import dynamics
from digits import original
from digits.gradient_flow import BAD, GOOD, FlowResult
from digits.models import Model2
from digits.recording import (TB_PERCENTILES, DistributionRecorder, Recording,
                              RecordingSummary, summarize)
from digits.training import TrainSpec, train
from report.analysis import Section
from report.compare import AHEAD, BEHIND, NOT_REPEATS, UNSEPARATED, ZERO_SPREAD
from report.context import ComputeContext, DrawContext
from report.keys import PRESENTATION_MODULES, Keys
from report.render import SectionView, make_environment, render_sections

REPO = Path(__file__).resolve().parent.parent
LAYERS = ["conv1", "conv2", "fc1", "fc2"]


@pytest.fixture(scope="module")
def recording() -> Recording:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (40,), generator=g)
    torch.manual_seed(0)
    recorder = DistributionRecorder(every=1, sample_size=500)
    train(Model2(0.13, 0.31), images, labels, TrainSpec(epochs=1, batch_size=8, optimizer="adam",
                                                        lr=1e-3),
          generator=torch.Generator().manual_seed(1), callbacks=[recorder])
    return recorder.recording


@pytest.fixture(scope="module")
def summary(recording) -> RecordingSummary:
    """What compute stores of the recording (20 bins)."""
    return summarize(recording, bins=20, coverage=0.999)


def synthetic_recording(g_mean: dict[str, np.ndarray]) -> Recording:
    """A Recording holding only the per-snapshot mean |gradient| of each layer."""
    rec = Recording(layers=list(g_mean), steps=list(range(1, len(next(iter(g_mean.values()))) + 1)))
    rec.stats = {layer: {"g_mean_abs": list(values)} for layer, values in g_mean.items()}
    return rec


# --- helpers ------------------------------------------------------------------------------------


def test_snapshot_interval() -> None:
    assert dynamics.snapshot_interval(500, 32) == 15
    assert dynamics.snapshot_interval(10, 100) == 1


def test_first_and_last_fifths() -> None:
    early, late = dynamics.first_and_last(np.arange(100))
    assert early.tolist() == list(range(20)) and late.tolist() == list(range(80, 100))
    early, late = dynamics.first_and_last(np.arange(3))  # fewer than five: one value each
    assert early.tolist() == [0] and late.tolist() == [2]


def test_gradient_changes_describe_one_run_and_are_never_verdicts() -> None:
    """Snapshots of one run are not repeats: every change is "cannot separate", with that
    reason, and its direction is described by its sign."""
    rng = np.random.default_rng(0)
    n = 50
    noise = rng.normal(0, 0.05, n)  # in log10 units
    rec = synthetic_recording({
        "falls": 10 ** (np.linspace(-2, -4, n) + noise),  # two decades down
        "rises": 10 ** (np.linspace(-5, -3, n) + noise),
        "flat": 10 ** (-3 + rng.normal(0, 0.5, n)),  # no trend, much noise
    })
    changes = dynamics.gradient_changes(rec)
    assert changes["falls"]["difference"] < -1.5 and changes["rises"]["difference"] > 1.5
    for change in changes.values():
        assert change["verdict"] == UNSEPARATED and change["reason"] == NOT_REPEATS
        assert change["unit"] == "snapshot"
    assert {k: dynamics.change_word(v["difference"]) for k, v in changes.items()
            if k != "flat"} == {"falls": "fell", "rises": "rose"}
    assert dynamics.change_word(0.0) == "did not change"
    short = synthetic_recording({"x": np.array([1e-2, 1e-6])})
    assert dynamics.gradient_changes(short)["x"]["verdict"] == UNSEPARATED


def test_gradient_ranking_orders_layers_but_calls_no_verdict() -> None:
    rng = np.random.default_rng(1)
    n = 30
    rec = synthetic_recording({
        "big": 10 ** (-1 + rng.normal(0, 0.1, n)),
        "mid_a": 10 ** (-3 + rng.normal(0, 0.3, n)),
        "mid_b": 10 ** (-3.05 + rng.normal(0, 0.3, n)),
    })
    ranking = dynamics.gradient_ranking(rec)
    assert ranking["order"][0] == "big"
    # However far apart, snapshots of one run are not repeats: no verdict, with the reason.
    assert ranking["largest_vs_next"]["verdict"] == UNSEPARATED
    assert ranking["largest_vs_next"]["reason"] == NOT_REPEATS
    assert ranking["largest_vs_next"]["difference"] > 1.5
    assert ranking["smallest_vs_next"]["verdict"] == UNSEPARATED


def fake_flow(config, ratios: list[float], accuracy: float, loss: float = 1.0) -> FlowResult:
    """A FlowResult whose first/last gradient-norm ratio is `ratios` at each snapshot."""
    norms = np.stack([np.asarray(ratios, float), np.ones(len(ratios))], axis=1)
    return FlowResult(config, np.arange(1, len(ratios) + 1), norms, loss, accuracy, 0.1, steps=7)


def test_flow_metrics_compare_seeds() -> None:
    runs = {"bad": [fake_flow(BAD, [1e-6, 1e-6], 0.11), fake_flow(BAD, [1e-5, 1e-5], 0.10),
                    fake_flow(BAD, [1e-3, 1e-5], 0.12)],
            "good": [fake_flow(GOOD, [0.5, 2.0], 0.90), fake_flow(GOOD, [1.0, 1.0], 0.92),
                     fake_flow(GOOD, [0.8, 0.8], 0.91)]}
    out = dynamics.flow_metrics(runs, depth=1, baseline=0.1)
    assert out["bad_ratio"] == pytest.approx(1e-5)  # geometric mean over steps and seeds
    assert out["good_ratio"] == pytest.approx((0.8 * 1.0 * 1.0) ** (1 / 3))
    assert out["bad_orders"] == pytest.approx(-5)
    assert out["flow_ratio_orders"]["verdict"] == AHEAD
    assert out["ratio_orders"] == pytest.approx(out["good_orders"] + 5)
    assert out["good_vs_bad_accuracy"]["verdict"] == AHEAD
    assert out["good_accuracy"] == pytest.approx(0.91) and out["bad_accuracies"] == [
        0.11, 0.10, 0.12]
    assert "flow_baseline" not in out  # compute's measurement, not drawn
    # 0.11 ± 0.01 over seeds against the fixed baseline 0.10: not separated.
    assert out["bad_vs_baseline"]["verdict"] == UNSEPARATED
    assert out["bad_vs_baseline"]["against"] and out["bad_vs_baseline"]["unit"] == "seed"
    # Seeds that all score the same measure no noise: never a verdict (not "behind by 1.35
    # points, more than their combined spread of 0.00").
    flat = {"bad": [fake_flow(BAD, [1e-6], 0.1035), fake_flow(BAD, [1e-6], 0.1035)],
            "good": runs["good"][:2]}
    assert dynamics.flow_metrics(flat, depth=1, baseline=0.117)["bad_vs_baseline"][
        "reason"] == ZERO_SPREAD
    assert dynamics.flow_metrics(runs, depth=1, baseline=0.05)["bad_vs_baseline"][
        "verdict"] == AHEAD
    assert out["flow_runs"] == 3 and out["flow_layers"] == 2 and out["flow_steps"] == 7


def test_flow_metrics_say_tie_when_seeds_disagree() -> None:
    runs = {"bad": [fake_flow(BAD, [1e-3], 0.60), fake_flow(BAD, [1e-3], 0.95)],
            "good": [fake_flow(GOOD, [1.0], 0.70), fake_flow(GOOD, [1.0], 0.90)]}
    out = dynamics.flow_metrics(runs, depth=4, baseline=0.1)
    assert out["good_vs_bad_accuracy"]["verdict"] == UNSEPARATED
    assert out["bad_per_layer_factor"] == pytest.approx(1e-3 ** (1 / 4))
    rows = dynamics.flow_rows(runs)
    assert [(r["network"], r["seed"]) for r in rows] == [
        (BAD.label, 0), (BAD.label, 1), (GOOD.label, 0), (GOOD.label, 1)]


def test_majority_share_is_the_constant_guess() -> None:
    assert dynamics.majority_share(torch.tensor([3, 3, 1, 3, 0])) == pytest.approx(0.6)
    assert dynamics.majority_share(torch.arange(20) % 10) == pytest.approx(0.1)


# --- figures ------------------------------------------------------------------------------------


def test_gif_writer_produces_one_frame_per_snapshot(summary, tmp_path: Path) -> None:
    frames, edges = dynamics.histogram_frames(summary, "weights", dpi=40)
    assert len(frames) == len(summary.steps) == 5
    assert len({f.shape for f in frames}) == 1  # same size: the axes do not move
    assert not np.array_equal(frames[0], frames[-1])  # each frame is drawn anew
    assert set(edges) == set(LAYERS) and all(len(e) == 21 for e in edges.values())
    grad_frames, _ = dynamics.histogram_frames(summary, "grads", dpi=40)
    assert len(grad_frames) == 5
    computed = _upstream(tmp_path / "computed", {})  # draw needs compute results; none here
    ctx = DrawContext("sec", None, results=computed, seed=1, staging=tmp_path, upstream={},
                      log=lambda m: None)
    ctx.gif("w", frames, fps=5, sprite=True)
    gif = iio.imread(tmp_path / "w.gif", index=None)
    assert gif.shape[0] == 5 and gif.shape[1:3] == frames[0].shape[:2]
    item, asset = ctx.items
    assert (item["frames"], item["sprite"], item["sprite_columns"]) == (5, "w.frames.png", 3)
    assert asset == {"kind": "asset", "name": "w.frames.png", "file": "w.frames.png",
                     "bytes": (tmp_path / "w.frames.png").stat().st_size}
    sprite = iio.imread(tmp_path / "w.frames.png")
    h, w = frames[0].shape[:2]
    assert sprite.shape[:2] == (2 * h, 3 * w)  # 5 frames in a 3-column grid
    np.testing.assert_array_equal(sprite[h:2 * h, w:2 * w, :3], frames[4])  # row 1, column 1


def test_bands_flow_figures_and_layer_rows(recording, summary) -> None:
    for kind in ("weights", "grads"):
        fig = dynamics.bands_figure(summary, kind)
        assert len(fig.axes) == 4
    assert len(dynamics.flow_figure(summary).axes) == 2
    rows = dynamics.layer_rows(summary)
    assert [r["layer"] for r in rows] == LAYERS
    assert rows[2]["weights"] == 128 * 36864
    assert rows[0]["init bound"] == pytest.approx(1 / 3)  # conv1: fan-in 9
    assert all(r["gradient change"] in ("fell", "rose", "cannot separate") for r in rows)
    # The share of exact zero gradients at the last snapshot, from compute's summary.
    for row, layer in zip(rows, LAYERS):
        assert row["zero grads, end"] == (recording.values("grads", layer)[-1] == 0).mean()


def test_gif_partial_carries_the_sprite_only_when_there_is_one() -> None:
    env = make_environment(REPO / "templates")
    partial = env.get_template("partials/gif.html")
    item = {"frames": 3, "fps": 4, "width": 6, "height": 4}
    common = {"label": "Figure 1", "section": "s", "anchor": "s-g", "src": "g.gif",
              "caption": "c", "alt": "a"}
    plain = partial.render(item=item, **common)
    assert "data-sprite" not in plain
    rich = partial.render(item={**item, "sprite": "g.frames.png", "sprite_columns": 2}, **common)
    assert 'data-sprite="assets/s/g.frames.png"' in rich and 'data-columns="2"' in rich
    assert "data-sprite" in (REPO / "templates/static/gif_player.js").read_text()


# --- the whole section ---------------------------------------------------------------------------


def _upstream(folder: Path, metrics: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"metrics": metrics}))
    return folder


def synthetic_data():
    from digits.data import MNIST

    g = torch.Generator().manual_seed(0)
    return MNIST(torch.randint(0, 256, (256, 28, 28), generator=g, dtype=torch.uint8),
                 torch.arange(256) % 10,
                 torch.randint(0, 256, (100, 28, 28), generator=g, dtype=torch.uint8),
                 torch.arange(100) % 10, source="synthetic")


TINY = replace(dynamics.Config(), train_size=64, epochs=2, frames=4, sample_size=100, bins=8,
               gif_dpi=30, overhead_pairs=2, overhead_steps=2, flow_depth=2, flow_width=8,
               flow_steps=4, flow_every=1, flow_test=50, flow_seeds=2)


def run_draw(computed: Path, staging: Path) -> DrawContext:
    """draw(ctx) of the section over the compute results in `computed`."""
    staging.mkdir(parents=True)
    ctx = DrawContext("dynamics", TINY, results=computed, seed=3, staging=staging, upstream={},
                      data_loader=synthetic_data, log=lambda m: None)
    dynamics.draw(ctx)
    return ctx


@dataclass
class Stages:
    compute: ComputeContext
    computed: Path  # compute's entry: manifest.json (metrics) and arrays/
    draw: DrawContext
    drawn: Path

    @property
    def metrics(self) -> dict:
        """What the prose sees: compute's and draw's metrics merged."""
        return {**self.compute.metrics, **self.draw.metrics}


@pytest.fixture(scope="module")
def section(tmp_path_factory) -> Stages:
    """compute(ctx), then draw(ctx), of the section on tiny synthetic data."""
    tmp = tmp_path_factory.mktemp("dynamics")
    data = synthetic_data()
    upstream = {"dataset": _upstream(tmp / "dataset", {"train_mean": 0.5, "train_std": 0.29}),
                "optimizers": _upstream(tmp / "optimizers",
                                        {"best_optimizer": "adam", "best_lr": 1e-3,
                                         "batch_size": 32, "momentum": 0.5})}
    computed = tmp / "computed"
    computed.mkdir()
    ctx = ComputeContext("dynamics", TINY, seed=3, device=torch.device("cpu"), staging=computed,
                         upstream=upstream, data_loader=lambda: data, log=lambda m: None)
    dynamics.compute(ctx)
    (computed / "manifest.json").write_text(json.dumps({"metrics": ctx.metrics}))
    return Stages(ctx, computed, run_draw(computed, tmp / "drawn"), tmp / "drawn")


def render(stages: Stages, metrics: dict | None = None, reduced: list | None = None) -> str:
    view = SectionView("dynamics", (REPO / "analyses" / "dynamics.md").read_text(), TINY,
                       metrics or stages.metrics, stages.draw.items, stages.drawn, "run",
                       reduced=reduced or [])
    env = make_environment(REPO / "templates")
    render_sections(env, [view], {"metrics": {"dynamics": view.metrics},
                                  "build": {"profile": "quick", "reduced": {}},
                                  "original": original.facts()})
    assert view.title.startswith("Understanding the weights")
    return view.html


def test_section_runs_on_synthetic_data(section: Stages) -> None:
    m = section.metrics
    assert m["snapshots"] == 4 and m["every"] == 1 and m["layers"] == LAYERS
    assert m["recording_is_passive"] is True and len(m["overhead_ratios"]) == 2
    assert m["overhead_vs_plain"]["a"]["n"] == 2 and m["overhead_vs_plain"]["b"]["n"] == 2
    assert m["overhead_vs_plain"]["a"]["mean"] == pytest.approx(
        np.mean(m["overhead_seconds_with"]))
    assert m["bad_ratio"] < m["good_ratio"] and m["flow_runs"] == 2
    assert len(m["bad_accuracies"]) == 2 and m["flow_baseline"] == pytest.approx(0.1)
    assert m["flow_steps"] == 4  # 256 images in batches of 64
    assert set(m["grad_changes"]) == set(LAYERS)
    assert sorted(m["grads_fell"] + m["grads_rose"] + m["grads_unchanged"]) == sorted(LAYERS)
    assert m["fifth_snapshots"] == 1
    names = {i["name"] for i in section.draw.items}
    assert {"weights_gif", "grads_gif", "weights_distributions", "grads_distributions",
            "gradient_flow", "good_bad_flow", "layer_summary", "flow_comparison",
            "weights_gif.frames.png"} <= names
    flow = next(i for i in section.draw.items if i["name"] == "flow_comparison")
    assert len(flow["rows"]) == 2 * TINY.flow_seeds
    # Named streams, no offsets: the recorded run, its subset and each flow seed.
    assert {"train_subset", "init/model2", "batches/recorded", "batches/overhead",
            "flow_subset", "flow/run0", "flow/run1"} <= set(section.compute.streams.used)


def test_compute_records_arrays_and_raw_results_only(section: Stages) -> None:
    computed, drawn = section.compute.metrics, section.draw.metrics
    arrays = {i["name"]: i for i in section.compute.items}
    assert {i["kind"] for i in section.compute.items} == {"array"}  # no figure, GIF or table
    # Per layer and kind, what is drawn from the sampled values (never the values themselves):
    # 4 snapshots, 8 bins; and every layer's statistics.
    for layer in LAYERS:
        for kind in ("weights", "grads"):
            assert f"recording.{layer}.{kind}" not in arrays
            shapes = {part: (arrays[f"recording.{layer}.{kind}.{part}"]["shape"],
                             arrays[f"recording.{layer}.{kind}.{part}"]["dtype"])
                      for part in ("edges", "shares", "zeros", "bands")}
            assert shapes == {"edges": ([9], "float64"), "shares": ([4, 8], "float64"),
                              "zeros": ([4], "float64"),
                              "bands": ([4, len(TB_PERCENTILES)], "float64")}
        assert arrays[f"recording.{layer}.stats"]["shape"] == [6, 4]
    assert arrays["recording.steps"]["shape"] == [4]
    # Each network's gradient norms: seeds x snapshots x layers (2 hidden + output).
    assert arrays["flow.bad.norms"]["shape"] == [2, 4, 3]
    assert len(computed["overhead_seconds_with"]) == 2
    # Every verdict and summary is drawn, never computed.
    for name in ("overhead_vs_plain", "grad_changes", "largest_grad_vs_next",
                 "good_vs_bad_accuracy", "bad_vs_baseline", "layer_summary", "weights_edges",
                 "overhead_ratio", "optimizer_name"):
        assert name in drawn and name not in computed
    assert not set(computed) & set(drawn)


def test_draw_rebuilds_every_frame_from_the_stored_arrays(section: Stages,
                                                          tmp_path: Path) -> None:
    again = run_draw(section.computed, tmp_path / "again")
    assert json.loads(json.dumps(again.metrics)) == json.loads(json.dumps(section.draw.metrics))
    for name in ("weights_gif.gif", "grads_gif.gif", "weights_gif.frames.png"):
        assert (tmp_path / "again" / name).read_bytes() == (section.drawn / name).read_bytes()
    gif = next(i for i in again.items if i["name"] == "weights_gif")
    assert gif["frames"] == section.compute.metrics["snapshots"] == 4
    # The frames come from the arrays: a summary rebuilt from them draws the same frames.
    rec = dynamics.recorded(again)
    frames, edges = dynamics.histogram_frames(rec, "grads", TINY.gif_dpi)
    assert again.metrics["grads_edges"] == {k: [e[0], e[-1]] for k, e in edges.items()}
    stored = iio.imread(section.drawn / "grads_gif.gif", index=None)
    assert len(frames) == stored.shape[0]


def test_verdicts_follow_the_recorded_timings(section: Stages, tmp_path: Path) -> None:
    """The recorder's verdict is drawn from compute's times: slower times redraw as 'ahead'."""
    results = tmp_path / "results"
    shutil.copytree(section.computed, results)
    manifest = json.loads((results / "manifest.json").read_text())
    manifest["metrics"]["overhead_seconds_with"] = [2.0, 2.1]
    manifest["metrics"]["overhead_seconds_without"] = [1.0, 1.1]
    (results / "manifest.json").write_text(json.dumps(manifest))
    ctx = run_draw(results, tmp_path / "drawn")
    assert ctx.metrics["overhead_vs_plain"]["verdict"] == AHEAD
    assert ctx.metrics["overhead_ratios"] == pytest.approx([2.0, 2.1 / 1.1])


def test_compute_reaches_no_presentation_module() -> None:
    keys = Keys(REPO, (*PRESENTATION_MODULES, "digits.plots"))
    section = Section(dynamics.ANALYSIS, dynamics)
    compute = keys.closure(section, "compute")
    assert compute.excluded == frozenset()
    # Compute bins the sampled values; draw only reads the summaries back.
    for name in ("distribution_summaries", "histograms", "fixed_edges", "percentile_bands"):
        assert f"digits/recording.py:{name}" in compute.symbols
    assert "digits/recording.py:summary_from_arrays" not in compute.symbols
    draw = keys.closure(section, "draw").symbols
    assert "analyses/dynamics.py:change_word" in draw
    assert "digits/recording.py:summary_from_arrays" in draw
    assert "digits/recording.py:histograms" not in draw


def test_prose_renders_every_item_with_captions(section: Stages) -> None:
    html = render(section, reduced=[{"key": "epochs", "value": 2, "full": 5}])
    assert 'data-sprite="assets/dynamics/weights_gif.frames.png"' in html
    assert "@@ITEM" not in html
    assert "Settings that differ from the full profile: <code>epochs</code> 2 (full: 5)." in html
    assert "from the first fifth of the snapshots to the last" in html
    assert "not verdicts: snapshots of one training run follow each other" in html


@pytest.mark.parametrize("verdict", [AHEAD, BEHIND, UNSEPARATED])
def test_prose_follows_each_verdict(section: Stages, verdict: str) -> None:
    """Every comparison's sentence follows its verdict (never "took longer" on a tie)."""
    metrics = json.loads(json.dumps(section.metrics))
    for key in ("overhead_vs_plain", "good_vs_bad_accuracy", "bad_vs_baseline",
                "largest_grad_vs_next", "smallest_grad_vs_next", "flow_ratio_orders"):
        metrics[key]["verdict"] = verdict
    metrics["grads_fell"], metrics["grads_rose"], metrics["grads_unchanged"] = (
        ["conv1"], ["fc2"], ["conv2", "fc1"])
    html = render(section, metrics)
    longer = "The runs with the recorder took longer" in html
    classifies = "The outcome follows" in html
    assert longer == (verdict == AHEAD) and classifies == (verdict == AHEAD)
    assert ("cannot be separated" in html) == (verdict == UNSEPARATED)
    assert "fell for conv1 (" in html and "; rose for fc2 (" in html
    assert "did not change for conv2, fc1" in html
