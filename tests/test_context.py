"""The Context an analysis sees (report/context.py): names, artifacts, metrics, streams."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from report.context import (
    ArtifactError,
    ComputeContext,
    DrawContext,
    LineProgress,
    table_csv,
    to_jsonable,
)
from report.streams import Streams, derive_seed


def make(tmp_path: Path, name: str = "sec", upstream: dict | None = None,
         data_loader=None, results: dict | None = None) -> DrawContext:
    """A draw context over compute results holding `results` as metrics."""
    staging = tmp_path / name
    staging.mkdir(parents=True, exist_ok=True)
    computed = tmp_path / f"{name}.computed"
    computed.mkdir(parents=True, exist_ok=True)
    (computed / "manifest.json").write_text(json.dumps({"metrics": results or {}}))
    return DrawContext(name, None, seed=7, staging=staging, upstream=upstream or {},
                       data_loader=data_loader, log=lambda m: None, results=computed)


def compute_ctx(tmp_path: Path, name: str = "sec", upstream: dict | None = None,
                log=lambda m: None) -> ComputeContext:
    staging = tmp_path / name
    staging.mkdir(parents=True, exist_ok=True)
    return ComputeContext(name, None, seed=7, device=torch.device("cpu"), staging=staging,
                          upstream=upstream or {}, log=log)


def small_figure() -> Figure:
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot([0, 1])
    return fig


def test_to_jsonable_converts_numpy_and_torch() -> None:
    assert to_jsonable(np.int64(3)) == 3 and type(to_jsonable(np.int64(3))) is int
    assert to_jsonable(np.float32(0.5)) == 0.5
    assert to_jsonable(np.bool_(True)) is True
    assert to_jsonable(np.arange(3)) == [0, 1, 2]
    assert to_jsonable(torch.tensor([[1, 2], [3, 4]])) == [[1, 2], [3, 4]]
    assert to_jsonable(torch.tensor(0.25)) == 0.25  # a 0-d tensor, e.g. a loss
    assert to_jsonable(np.float64(7.0)) == 7.0
    assert to_jsonable({1: (np.int8(2), None, "s")}) == {"1": [2, None, "s"]}
    assert to_jsonable(float("nan")) is None and to_jsonable(np.array([np.inf])) == [None]
    with pytest.raises(ArtifactError, match="object"):
        to_jsonable(object())


def test_metrics_are_converted_and_unique(tmp_path: Path) -> None:
    ctx = make(tmp_path)
    ctx.metric("acc", torch.tensor(0.975))
    ctx.metric("counts", np.array([1, 2]))
    assert json.dumps(ctx.metrics)  # plain JSON
    assert ctx.metrics["counts"] == [1, 2] and math.isclose(ctx.metrics["acc"], 0.975,
                                                            rel_tol=1e-6)
    with pytest.raises(ArtifactError, match="recorded twice"):
        ctx.metric("acc", 1.0)


@pytest.mark.parametrize("bad", ["", "a b", "../up", "a/b", "ü", ".hidden"])
def test_artifact_names_are_checked(tmp_path: Path, bad: str) -> None:
    ctx = make(tmp_path)
    with pytest.raises(ArtifactError, match="artifact name"):
        ctx.table(bad, [])


def test_duplicate_artifact_names_are_rejected_across_kinds(tmp_path: Path) -> None:
    ctx = make(tmp_path)
    ctx.figure("plot", small_figure(), dpi=20)
    with pytest.raises(ArtifactError, match="written twice"):
        ctx.figure("plot", small_figure(), dpi=20)
    with pytest.raises(ArtifactError, match="written twice"):
        ctx.table("plot", [{"a": 1}])
    with pytest.raises(ArtifactError, match="written twice"):
        ctx.asset("plot", "x")


def test_asset_cannot_overwrite_a_figure_file_or_the_manifest(tmp_path: Path) -> None:
    ctx = make(tmp_path)
    ctx.figure("plot", small_figure(), dpi=20)
    png = (tmp_path / "sec" / "plot.png").read_bytes()
    with pytest.raises(ArtifactError):
        ctx.asset("plot.png", b"not a png")
    assert (tmp_path / "sec" / "plot.png").read_bytes() == png
    with pytest.raises(ArtifactError):
        ctx.asset("manifest.json", "{}")


def test_figure_gif_table_asset_items(tmp_path: Path) -> None:
    ctx = make(tmp_path)
    ctx.figure("fig", small_figure(), dpi=20)
    frames = [np.full((4, 6, 3), v, dtype=np.uint8) for v in (0, 128, 255)]
    ctx.gif("anim", frames, fps=2)
    ctx.table("tab", [{"a": np.int64(1), "b": 0.5}, {"a": 2, "c": "x"}])
    ctx.asset("data.json", '{"k": 1}')
    kinds = [(i["kind"], i["name"]) for i in ctx.items]
    assert kinds == [("figure", "fig"), ("gif", "anim"), ("table", "tab"),
                     ("asset", "data.json")]
    staging = tmp_path / "sec"
    assert (staging / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (staging / "anim.gif").read_bytes()[:6] in (b"GIF89a", b"GIF87a")
    gif = ctx.items[1]
    assert (gif["frames"], gif["width"], gif["height"], gif["fps"]) == (3, 6, 4, 2)
    table = ctx.items[2]
    assert table["columns"] == ["a", "b", "c"] and table["rows"][0] == {"a": 1, "b": 0.5}
    assert (staging / "data.json").read_text() == '{"k": 1}'
    with pytest.raises(ArtifactError, match="no frames"):
        ctx.gif("empty", [])


def test_table_columns_can_be_given(tmp_path: Path) -> None:
    ctx = make(tmp_path)
    ctx.table("t", [{"b": 1, "a": 2}], columns=["a", "b"])
    assert ctx.items[0]["columns"] == ["a", "b"]


def test_table_csv() -> None:
    text = table_csv(["a", "b"], [{"a": 1, "b": None}, {"a": "x,y", "b": 2.5, "extra": 0}])
    assert text == 'a,b\n1,\n"x,y",2.5\n'


def test_save_and_load_through_requires(tmp_path: Path) -> None:
    up = compute_ctx(tmp_path, "up")
    up.save("weights", {"w": torch.arange(3)})
    up.array("coords", np.arange(6, dtype=np.float32).reshape(3, 2))
    (tmp_path / "up" / "manifest.json").write_text(json.dumps({"metrics": {"acc": 0.9}}))
    for down in (compute_ctx(tmp_path, "down", upstream={"up": tmp_path / "up"}),
                 make(tmp_path, "drawer", upstream={"up": tmp_path / "up"})):
        assert torch.equal(down.load("up", "weights")["w"], torch.arange(3))
        assert down.metric_of("up", "acc") == 0.9
        assert down.array_of("up", "coords").dtype == np.float32
        with pytest.raises(ArtifactError, match="saved no object named 'bias'"):
            down.load("up", "bias")
        with pytest.raises(ArtifactError, match="recorded no metric 'loss'"):
            down.metric_of("up", "loss")


def test_draw_reads_its_own_compute_results(tmp_path: Path) -> None:
    computed = compute_ctx(tmp_path, "sec.computed")
    computed.array("xy", np.ones((4, 2)))
    computed.save("weights", [1, 2])
    ctx = make(tmp_path, results={"acc": 0.5})  # writes sec.computed/manifest.json
    assert ctx.results == {"acc": 0.5} and ctx.array("xy").shape == (4, 2)
    assert ctx.saved("weights") == [1, 2]
    with pytest.raises(ArtifactError, match="recorded no array named 'nope'"):
        ctx.array("nope")
    with pytest.raises(ArtifactError, match="compute already recorded"):
        ctx.metric("acc", 0.6)
    ctx.metric("acc_pct", 50.0)  # a derived number under a new name
    with pytest.raises(TypeError):
        ctx.results["acc"] = 1.0  # read-only


def test_stages_offer_only_their_own_writers(tmp_path: Path) -> None:
    compute, draw = compute_ctx(tmp_path), make(tmp_path, "drawer")
    for writer in ("figure", "gif", "table", "asset"):
        assert not hasattr(compute, writer) and hasattr(draw, writer)
    for writer in ("choice", "save"):
        assert hasattr(compute, writer) and not hasattr(draw, writer)
    with pytest.raises(ArtifactError, match="Python objects"):
        compute.array("rows", [{"a": 1}])


def test_load_from_undeclared_upstream_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "up").mkdir()
    ctx = make(tmp_path, "down", upstream={})
    with pytest.raises(ArtifactError, match="'up' is not in its requires"):
        ctx.load("up", "weights")
    with pytest.raises(ArtifactError, match="not in its requires"):
        ctx.metric_of("up", "acc")


def test_save_name_cannot_escape_the_entry(tmp_path: Path) -> None:
    ctx = compute_ctx(tmp_path)
    with pytest.raises(ArtifactError):
        ctx.save("../../outside", 1)
    assert not (tmp_path / "outside.pt").exists()


def test_seeds_and_streams_are_per_analysis_and_stable(tmp_path: Path) -> None:
    assert derive_seed(7, "a") == derive_seed(7, "a")
    assert derive_seed(7, "a") != derive_seed(7, "b")
    assert derive_seed(7, "a") != derive_seed(8, "a")
    assert 0 <= derive_seed(7, "a") < 2**32
    one, two = make(tmp_path / "1"), make(tmp_path / "2")
    assert one.seed == two.seed == derive_seed(7, "sec")
    assert isinstance(one.streams, Streams)
    assert one.streams.numpy("x").integers(0, 10**9) == two.streams.numpy("x").integers(0, 10**9)
    assert torch.equal(torch.randperm(50, generator=one.streams.torch("order")),
                       torch.randperm(50, generator=two.streams.torch("order")))
    assert not torch.equal(torch.randperm(50, generator=one.streams.torch("order")),
                           torch.randperm(50, generator=one.streams.torch("other")))
    # Another analysis of the same build draws other numbers from a stream of the same name.
    other = make(tmp_path / "3", "other")
    assert not torch.equal(torch.randperm(50, generator=one.streams.torch("order")),
                           torch.randperm(50, generator=other.streams.torch("order")))
    assert set(one.streams.used) == {"x", "order", "other"}


def test_the_old_seed_api_is_gone(tmp_path: Path) -> None:
    ctx = make(tmp_path)
    assert not hasattr(ctx, "rng") and not hasattr(ctx, "generator")
    assert not hasattr(ctx, "profile")


@pytest.mark.parametrize("call", [
    lambda ctx: ctx.figure("f", small_figure(), caption="c", alt="a", dpi=20),
    lambda ctx: ctx.gif("g", [np.zeros((2, 2, 3), np.uint8)], alt="a"),
    lambda ctx: ctx.table("t", [{"a": 1}], caption="c"),
])
def test_artifacts_take_no_words(tmp_path: Path, call) -> None:
    """Captions and alt text live in the prose, outside the cache key: the API refuses them."""
    with pytest.raises(TypeError):
        call(make(tmp_path))


def test_items_hold_no_caption_or_alt(tmp_path: Path) -> None:
    ctx = make(tmp_path)
    ctx.figure("fig", small_figure(), dpi=20)
    ctx.gif("anim", [np.zeros((2, 2, 3), np.uint8)] * 2)
    ctx.table("tab", [{"a": 1}])
    for item in ctx.items:
        assert "caption" not in item and "alt" not in item, item


def test_choices_are_metrics_and_are_listed(tmp_path: Path) -> None:
    ctx = compute_ctx(tmp_path)
    ctx.metric("acc", 0.5)
    ctx.choice("learning_rate", np.float64(0.01))
    assert ctx.metrics == {"acc": 0.5, "learning_rate": 0.01}
    assert ctx.choices == ["learning_rate"]
    with pytest.raises(ArtifactError, match="recorded twice"):
        ctx.choice("acc", 1.0)
    assert ctx.choices == ["learning_rate"]


def test_gif_sprite_holds_every_frame(tmp_path: Path) -> None:
    import imageio.v3 as iio

    ctx = make(tmp_path)
    frames = [np.full((2, 3, 3), 40 * v, dtype=np.uint8) for v in range(5)]
    ctx.gif("anim", frames, fps=5, sprite=True)
    gif = ctx.items[0]
    assert gif["sprite"] == "anim.frames.png" and gif["sprite_columns"] == 3  # ceil(sqrt(5))
    assert ctx.items[1] == {"kind": "asset", "name": "anim.frames.png", "file": "anim.frames.png",
                            "bytes": (tmp_path / "sec" / "anim.frames.png").stat().st_size}
    grid = iio.imread(tmp_path / "sec" / "anim.frames.png")
    assert grid.shape[:2] == (2 * 2, 3 * 3)  # two rows of three frames of 2x3
    assert (grid[2:4, 3:6] == 160).all()  # frame 4 is row 1, column 1
    assert (grid[2:4, 6:9] == 255).all()  # the unused cell stays white


def test_data_is_loaded_lazily(tmp_path: Path) -> None:
    calls = []
    ctx = make(tmp_path, data_loader=lambda: calls.append(1) or "dataset")
    assert calls == []
    assert ctx.data == "dataset" and calls == [1]
    with pytest.raises(ArtifactError, match="no dataset"):
        _ = make(tmp_path, "other").data


def test_progress_and_timer(tmp_path: Path) -> None:
    lines: list[str] = []
    ctx = compute_ctx(tmp_path, log=lines.append)
    assert list(ctx.progress(range(3), desc="steps")) == [0, 1, 2]
    # Not a terminal (pytest captures stderr): lines, not carriage-return frames.
    assert lines and all("\r" not in line for line in lines)
    assert lines[-1].startswith("  sec: steps 3/3 (")
    with ctx.timer() as t:
        sum(range(1000))
    assert t.seconds >= 0


def test_line_progress_logs_each_tenth_once() -> None:
    lines: list[str] = []
    bar = LineProgress(None, desc="train", total=200, log=lines.append)
    for _ in range(200):
        bar.update(1)
    bar.set_postfix(loss="0.1")
    bar.close()
    assert len(lines) == 10 and lines[0].startswith("train 20/200 (")
    open_ended = LineProgress(None, desc="steps", total=None, log=lines.append)
    open_ended.update(250)
    assert lines[-1].startswith("steps 250 (")
