"""The Context an analysis sees (report/context.py): names, artifacts, metrics, seeds."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from report.context import ArtifactError, Context, derive_seed, table_csv, to_jsonable


def make(tmp_path: Path, name: str = "sec", upstream: dict | None = None,
         data_loader=None) -> Context:
    staging = tmp_path / name
    staging.mkdir(parents=True, exist_ok=True)
    return Context(name, None, seed=7, device=torch.device("cpu"), profile="quick",
                   staging=staging, upstream=upstream or {}, data_loader=data_loader,
                   log=lambda m: None)


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
        ctx.table(bad, [], caption="c")


def test_duplicate_artifact_names_are_rejected_across_kinds(tmp_path: Path) -> None:
    ctx = make(tmp_path)
    ctx.figure("plot", small_figure(), caption="c", alt="a", dpi=20)
    with pytest.raises(ArtifactError, match="written twice"):
        ctx.figure("plot", small_figure(), caption="c", alt="a", dpi=20)
    with pytest.raises(ArtifactError, match="written twice"):
        ctx.table("plot", [{"a": 1}], caption="c")
    with pytest.raises(ArtifactError, match="written twice"):
        ctx.asset("plot", "x")


def test_asset_cannot_overwrite_a_figure_file_or_the_manifest(tmp_path: Path) -> None:
    ctx = make(tmp_path)
    ctx.figure("plot", small_figure(), caption="c", alt="a", dpi=20)
    png = (tmp_path / "sec" / "plot.png").read_bytes()
    with pytest.raises(ArtifactError):
        ctx.asset("plot.png", b"not a png")
    assert (tmp_path / "sec" / "plot.png").read_bytes() == png
    with pytest.raises(ArtifactError):
        ctx.asset("manifest.json", "{}")


def test_figure_gif_table_asset_items(tmp_path: Path) -> None:
    ctx = make(tmp_path)
    ctx.figure("fig", small_figure(), caption="A figure.", alt="alt text", dpi=20)
    frames = [np.full((4, 6, 3), v, dtype=np.uint8) for v in (0, 128, 255)]
    ctx.gif("anim", frames, caption="A gif.", alt="moving", fps=2)
    ctx.table("tab", [{"a": np.int64(1), "b": 0.5}, {"a": 2, "c": "x"}], caption="T.")
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
        ctx.gif("empty", [], caption="c", alt="a")


def test_table_columns_can_be_given(tmp_path: Path) -> None:
    ctx = make(tmp_path)
    ctx.table("t", [{"b": 1, "a": 2}], caption="c", columns=["a", "b"])
    assert ctx.items[0]["columns"] == ["a", "b"]


def test_table_csv() -> None:
    text = table_csv(["a", "b"], [{"a": 1, "b": None}, {"a": "x,y", "b": 2.5, "extra": 0}])
    assert text == 'a,b\n1,\n"x,y",2.5\n'


def test_save_and_load_through_requires(tmp_path: Path) -> None:
    up = make(tmp_path, "up")
    up.save("weights", {"w": torch.arange(3)})
    (tmp_path / "up" / "manifest.json").write_text(json.dumps({"metrics": {"acc": 0.9}}))
    down = make(tmp_path, "down", upstream={"up": tmp_path / "up"})
    assert torch.equal(down.load("up", "weights")["w"], torch.arange(3))
    assert down.metric_of("up", "acc") == 0.9
    with pytest.raises(ArtifactError, match="saved no object named 'bias'"):
        down.load("up", "bias")


def test_load_from_undeclared_upstream_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "up").mkdir()
    ctx = make(tmp_path, "down", upstream={})
    with pytest.raises(ArtifactError, match="'up' is not in its requires"):
        ctx.load("up", "weights")
    with pytest.raises(ArtifactError, match="not in its requires"):
        ctx.metric_of("up", "acc")


def test_save_name_cannot_escape_the_entry(tmp_path: Path) -> None:
    ctx = make(tmp_path)
    with pytest.raises(ArtifactError):
        ctx.save("../../outside", 1)
    assert not (tmp_path / "outside.pt").exists()


def test_seeds_are_per_analysis_and_stable(tmp_path: Path) -> None:
    assert derive_seed(7, "a") == derive_seed(7, "a")
    assert derive_seed(7, "a") != derive_seed(7, "b")
    assert derive_seed(7, "a") != derive_seed(8, "a")
    assert 0 <= derive_seed(7, "a") < 2**32
    one, two = make(tmp_path / "1"), make(tmp_path / "2")
    assert one.seed == two.seed == derive_seed(7, "sec")
    assert one.rng.integers(0, 10**9) == two.rng.integers(0, 10**9)
    assert torch.equal(torch.randperm(50, generator=one.generator(1)),
                       torch.randperm(50, generator=two.generator(1)))
    assert not torch.equal(torch.randperm(50, generator=one.generator(1)),
                           torch.randperm(50, generator=one.generator(2)))


def test_data_is_loaded_lazily(tmp_path: Path) -> None:
    calls = []
    ctx = make(tmp_path, data_loader=lambda: calls.append(1) or "dataset")
    assert calls == []
    assert ctx.data == "dataset" and calls == [1]
    with pytest.raises(ArtifactError, match="no dataset"):
        _ = make(tmp_path, "other").data


def test_progress_and_timer(tmp_path: Path) -> None:
    ctx = make(tmp_path)
    assert list(ctx.progress(range(3), desc="steps")) == [0, 1, 2]
    with ctx.timer() as t:
        sum(range(1000))
    assert t.seconds >= 0
