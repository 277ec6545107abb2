"""analyses/dynamics.py and analyses/hidden_layers.py: GIF frames and sprite, filters, maps."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from analyses import dynamics, hidden_layers
from digits.models import Model2
from digits.recording import DistributionRecorder
from digits.training import TrainSpec, train
from report.context import Context
from report.render import make_environment

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def recording():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (40,), generator=g)
    torch.manual_seed(0)
    recorder = DistributionRecorder(every=1, sample_size=500)
    train(Model2(0.13, 0.31), images, labels, TrainSpec(epochs=1, batch_size=8, optimizer="adam",
                                                        lr=1e-3),
          generator=torch.Generator().manual_seed(1), callbacks=[recorder])
    return recorder.recording


def model_with_distinct_convs() -> Model2:
    torch.manual_seed(0)
    model = Model2()
    with torch.no_grad():
        model.conv1.weight.copy_(torch.linspace(-1, 1, 288).reshape(32, 1, 3, 3))
        model.conv2.weight.copy_(torch.linspace(0.5, -0.5, 18432).reshape(64, 32, 3, 3))
    return model.eval()


def test_snapshot_interval() -> None:
    assert dynamics.snapshot_interval(500, 32) == 15
    assert dynamics.snapshot_interval(10, 100) == 1


def test_gif_writer_produces_one_frame_per_snapshot(recording, tmp_path: Path) -> None:
    frames, edges = dynamics.histogram_frames(recording, "weights", bins=20, coverage=0.999,
                                              dpi=40)
    assert len(frames) == len(recording.steps) == 5
    assert len({f.shape for f in frames}) == 1  # same size: the axes do not move
    assert set(edges) == {"conv1", "conv2", "fc1", "fc2"} and all(len(e) == 21
                                                                  for e in edges.values())
    grad_frames, _ = dynamics.histogram_frames(recording, "grads", bins=20, coverage=0.999,
                                               dpi=40)
    assert len(grad_frames) == 5
    ctx = Context("sec", None, seed=1, device=torch.device("cpu"), profile="quick",
                  staging=tmp_path, upstream={}, log=lambda m: None)
    ctx.gif("w", frames, caption="c", alt="a", fps=5, sprite=True)
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


def test_bands_and_flow_figures(recording) -> None:
    for kind in ("weights", "grads"):
        fig = dynamics.bands_figure(recording, kind)
        assert len(fig.axes) == 4
    assert len(dynamics.flow_figure(recording).axes) == 2
    rows = dynamics.layer_rows(recording)
    assert [r["layer"] for r in rows] == ["conv1", "conv2", "fc1", "fc2"]
    assert rows[2]["weights"] == 128 * 36864


def test_gif_partial_carries_the_sprite_only_when_there_is_one() -> None:
    env = make_environment(REPO / "templates")
    partial = env.get_template("partials/gif.html")
    item = {"frames": 3, "fps": 4, "alt": "a", "width": 6, "height": 4, "caption": "c"}
    plain = partial.render(item=item, label="Figure 1", section="s", anchor="s-g", src="g.gif")
    assert "data-sprite" not in plain
    rich = partial.render(item={**item, "sprite": "g.frames.png", "sprite_columns": 2},
                          label="Figure 1", section="s", anchor="s-g", src="g.gif")
    assert 'data-sprite="assets/s/g.frames.png"' in rich and 'data-columns="2"' in rich
    assert "data-sprite" in (REPO / "templates/static/gif_player.js").read_text()


def test_conv2_filters_are_not_conv1s() -> None:
    model = model_with_distinct_convs()
    conv1 = hidden_layers.layer_kernels(model, "conv1")
    conv2 = hidden_layers.layer_kernels(model, "conv2")
    assert conv1.shape == (32, 1, 3, 3) and conv2.shape == (64, 32, 3, 3)
    fig = hidden_layers.conv_filters_figure(conv2, "conv2")
    shown = np.ma.filled(fig.axes[0].images[0].get_array().astype(float), np.nan)
    # 32 rows (input channels) x 64 columns (filters) of 3x3 tiles with 1-pixel gaps.
    assert shown.shape == (32 * 4 - 1, 64 * 4 - 1)
    np.testing.assert_array_equal(shown[0:3, 4:7], conv2[1, 0])  # filter 1, input channel 0
    np.testing.assert_array_equal(shown[4:7, 0:3], conv2[0, 1])  # filter 0, input channel 1
    assert "conv2" in fig.axes[0].get_title()
    # Every weight shown is conv2's, each exactly once (none of conv1's 288).
    np.testing.assert_array_equal(np.sort(shown[np.isfinite(shown)]), np.sort(conv2.ravel()))
    with pytest.raises(ValueError):
        hidden_layers.layer_kernels(model, "fc1")


def test_mosaic_layout() -> None:
    tiles = np.arange(5 * 2 * 2, dtype=float).reshape(5, 2, 2)
    out = hidden_layers.mosaic(tiles, ncols=3)
    assert out.shape == (5, 8)
    np.testing.assert_array_equal(out[3:5, 0:2], tiles[3])
    assert np.isnan(out[2]).all() and np.isnan(out[3:5, 6:8]).all()


def test_activations_and_saliency() -> None:
    model = model_with_distinct_convs()
    image = torch.randint(0, 256, (28, 28), generator=torch.Generator().manual_seed(0),
                          dtype=torch.uint8)
    acts = hidden_layers.activations(model, image)
    assert {k: v.shape for k, v in acts.items()} == {"conv1": (32, 26, 26),
                                                     "conv2": (64, 24, 24), "fc1": (128,),
                                                     "fc2": (10,)}
    assert (acts["conv1"] >= 0).all() and acts["fc2"].sum() == pytest.approx(1, abs=1e-5)
    maps = hidden_layers.input_saliency(model, image)
    assert maps.shape == (10, 28, 28)
    x = (image.float() / 255)[None, None].requires_grad_(True)
    model(x)[0, 7].backward()
    np.testing.assert_allclose(maps[7], x.grad[0, 0].numpy(), rtol=1e-4, atol=1e-7)
    assert not np.allclose(maps[7], maps[3])


def _upstream(folder: Path, metrics: dict, objects: dict | None = None) -> Path:
    import json

    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"metrics": metrics}))
    for name, obj in (objects or {}).items():
        (folder / "objects").mkdir(exist_ok=True)
        torch.save(obj, folder / "objects" / f"{name}.pt")
    return folder


def test_both_sections_run_and_their_prose_renders(tmp_path: Path) -> None:
    """run(ctx) of both analyses on tiny synthetic data, then their Markdown through Jinja."""
    from dataclasses import replace
    from types import SimpleNamespace

    from report.render import SectionView, render_sections

    g = torch.Generator().manual_seed(0)
    data = SimpleNamespace(
        train_images=torch.randint(0, 256, (256, 28, 28), generator=g, dtype=torch.uint8),
        train_labels=torch.randint(0, 10, (256,), generator=g),
        test_images=torch.randint(0, 256, (100, 28, 28), generator=g, dtype=torch.uint8),
        test_labels=torch.arange(100) % 10)
    torch.manual_seed(0)
    model2 = Model2(0.13, 0.31)
    upstream = {
        "dataset": _upstream(tmp_path / "dataset", {"train_mean": 0.13, "train_std": 0.31}),
        "optimizers": _upstream(tmp_path / "optimizers",
                                {"best_optimizer": "adam", "best_lr": 1e-3}),
        "classifiers": _upstream(tmp_path / "classifiers", {}, {"model2": {
            "state_dict": model2.state_dict(), "mean": 0.13, "std": 0.31}}),
    }
    configs = {
        "dynamics": replace(dynamics.Config(), train_size=64, epochs=2, frames=4, sample_size=100,
                            bins=8, gif_dpi=30, overhead_pairs=2, overhead_steps=2,
                            flow_depth=2, flow_width=8, flow_steps=4, flow_every=1,
                            flow_test=50),
        "hidden_layers": hidden_layers.Config(),
    }
    views = []
    for module in (dynamics, hidden_layers):
        name = module.ANALYSIS.name
        staging = tmp_path / "out" / name
        staging.mkdir(parents=True)
        ctx = Context(name, configs[name], seed=3, device=torch.device("cpu"), profile="quick",
                      staging=staging, upstream={u: upstream[u] for u in module.ANALYSIS.requires},
                      data_loader=lambda: data, log=lambda m: None)
        module.run(ctx)
        views.append(SectionView(name, module.ANALYSIS.title,
                                 (REPO / "analyses" / f"{name}.md").read_text(), ctx.cfg,
                                 ctx.metrics, ctx.items, staging, "run"))
    dyn, hidden = views[0].metrics, views[1].metrics
    assert dyn["snapshots"] == 4 and dyn["every"] == 1 and dyn["layers"] == [
        "conv1", "conv2", "fc1", "fc2"]
    assert dyn["recording_is_passive"] is True and len(dyn["overhead_ratios"]) == 2
    assert dyn["bad_ratio"] < dyn["good_ratio"]
    assert hidden["conv2_kernel_shape"] == [64, 32, 3, 3]
    assert hidden["wrong_predicted"] != hidden["wrong_label"]
    names = {v.name: {i["name"] for i in v.items} for v in views}
    assert {"weights_gif", "grads_gif", "weights_distributions", "grads_distributions",
            "gradient_flow", "good_bad_flow", "weights_gif.frames.png"} <= names["dynamics"]
    assert {"conv1_filters", "conv2_filters", "fc2_weights", "feature_maps_correct",
            "feature_maps_wrong", "saliency"} <= names["hidden_layers"]
    env = make_environment(REPO / "templates")
    render_sections(env, views, {"metrics": {v.name: v.metrics for v in views},
                                 "build": {"profile": "quick"}})
    assert 'data-sprite="assets/dynamics/weights_gif.frames.png"' in views[0].html
    assert "conv2 filters" in views[1].html and "@@ITEM" not in views[0].html + views[1].html
