"""The embeddings section (analyses/embeddings.py): the interactive map's file format
(digits/tsne_map.py), the section's two stages and their reach, then the whole section, drawn
again from its recorded results."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from threadpoolctl import threadpool_limits

from analyses import PRESENTATION, dataset, embeddings
from digits import original, tsne_map
from digits.data import MNIST
from digits.embedding_quality import MAP_SCORING
from report.analysis import Section
from report.config import make_config
from report.context import DrawContext, Results
from report.engine import BuildOptions, DataSource, build
from report.keys import PRESENTATION_MODULES, Keys

REPO = Path(__file__).resolve().parent.parent


# --- the interactive map's files ----------------------------------------------------------------


def test_quantize_keeps_the_aspect_ratio() -> None:
    xy = np.array([[-10.0, 5.0], [30.0, 5.0], [10.0, 25.0]])  # 40 wide, 20 tall
    q, (x0, y0, span) = tsne_map.quantize_xy(xy)
    assert (x0, y0, span) == (-10.0, 5.0, 40.0)
    assert q.dtype == np.uint16
    assert q[:, 0].tolist() == [0, 65535, 32768]
    assert q[:, 1].tolist() == [0, 0, 32768]  # the short axis uses half the range


def test_map_data_round_trip() -> None:
    rng = np.random.default_rng(0)
    n = 1_003  # odd, so the arrays after the uint16 ones start at unaligned-looking offsets
    xy = rng.normal(size=(n, 2)) * [40.0, 25.0]
    labels = rng.integers(0, 10, n)
    index = np.sort(rng.choice(70_000, n, replace=False))
    colors = [f"#{d}{d}{d}{d}{d}{d}" for d in range(10)]
    text = tsne_map.encode_map_data(xy, labels, index, sheets=["a.png", "b.png"],
                                      sheet_size=600, n_train=60_000, colors=colors)
    assert text.startswith("window.mnistMapData=window.mnistMapData||{};")
    decoded = tsne_map.decode_map_data(text)
    assert decoded["n"] == n and decoded["n_train"] == 60_000
    assert decoded["sheets"] == ["a.png", "b.png"] and decoded["sheet_size"] == 600
    assert decoded["colors"] == colors and decoded["sheet_columns"] == tsne_map.SHEET_COLUMNS
    assert np.array_equal(decoded["labels"], labels)
    assert np.array_equal(decoded["index"], index)
    span = decoded["bounds"][2]
    assert np.abs(decoded["xy"] - xy).max() <= span / 65535 / 2 + 1e-9  # half a quantum
    # The binary part really is 9 bytes per point.
    blob = re.search(r'"data":"([^"]*)"', text).group(1)
    assert len(blob) == 4 * -(-9 * n // 3)


def test_decode_rejects_a_damaged_file() -> None:
    text = tsne_map.encode_map_data(np.zeros((3, 2)), [1, 2, 3], [0, 1, 2], sheets=[],
                                      sheet_size=10, n_train=2, colors=[])
    with pytest.raises(ValueError, match="bytes"):
        tsne_map.decode_map_data(text.replace('"n":3', '"n":4'))
    with pytest.raises(ValueError, match="not a map"):
        tsne_map.decode_map_data("var x = 1;")


def test_sprite_sheet_is_a_4_bit_png_that_round_trips() -> None:
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(130, 28, 28), dtype=np.uint8)
    png = tsne_map.sprite_sheet_png(images)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[24] == 4 and png[25] == 3  # IHDR: bit depth 4, colour type 3 (palette)
    sheet = Image.open(io.BytesIO(png))
    assert sheet.size == (tsne_map.SHEET_COLUMNS * 28, 2 * 28)  # 130 images = 2 rows
    decoded = tsne_map.decode_sprite_sheet(png, len(images))
    levels = (images.astype(np.int64) * 15 + 127) // 255  # the nearest of 16 grey levels
    assert np.array_equal(decoded, levels * 17)
    assert np.abs(decoded.astype(int) - images).max() <= 255 // 15 // 2 + 1


def test_thumbnail_map_places_each_image_in_its_cell() -> None:
    images = np.zeros((3, 28, 28), np.uint8)
    images[:, 10:18, 10:18] = 255
    xy = np.array([[0.0, 0.0], [7.0, 2.0], [10.0, 4.9]])  # 10 wide, 4.9 tall
    labels = np.array([0, 1, 2])
    rgb = embeddings.thumbnail_map(xy, images, labels, grid=2)
    assert rgb.shape == (28, 56, 3)  # 2 x 1 square cells
    # Bottom-left cell: image 0 in class colour 0; right cell: image 1 (nearest the centre).
    from digits.plots import CLASS_COLORS
    expected0 = np.round(np.array(CLASS_COLORS[0]) * 255)
    expected1 = np.round(np.array(CLASS_COLORS[1]) * 255)
    assert np.array_equal(rgb[14, 14], expected0)
    assert np.array_equal(rgb[14, 28 + 14], expected1)
    assert (rgb[0, 0] == 255).all()  # paper stays white


def test_morton_order_keeps_neighbours_together() -> None:
    # A 4 x 4 grid of points: Z-order visits each 2 x 2 quadrant before the next one.
    xy = np.array([(x, y) for y in range(4) for x in range(4)], dtype=float)
    order = tsne_map.morton_order(xy)
    assert sorted(order.tolist()) == list(range(16))
    quadrants = [(int(xy[i, 0]) // 2, int(xy[i, 1]) // 2) for i in order]
    assert quadrants == [(0, 0)] * 4 + [(1, 0)] * 4 + [(0, 1)] * 4 + [(1, 1)] * 4
    assert xy[order[0]].tolist() == [0, 0] and xy[order[-1]].tolist() == [3, 3]
    # Random points: consecutive points in Z-order are far closer than in random order.
    pts = np.random.default_rng(0).random((2000, 2))
    z = pts[tsne_map.morton_order(pts)]
    assert np.linalg.norm(np.diff(z, axis=0), axis=1).mean() < 0.2 * np.linalg.norm(
        np.diff(pts, axis=0), axis=1).mean()


def test_the_script_reads_only_fields_the_format_writes() -> None:
    script = (REPO / "templates" / "static" / "tsne_map.js").read_text()
    text = tsne_map.encode_map_data(np.zeros((2, 2)), [0, 1], [0, 1], sheets=["s.png"],
                                    sheet_size=10, n_train=1, colors=["#000000"] * 10)
    header = json.loads(re.search(r"\]=(\{.*\});", text).group(1))
    read = set(re.findall(r"\braw\.(\w+)", script))
    assert read and read <= set(header), read - set(header)
    assert f"window.{tsne_map.MAP_GLOBAL}" in script and "digits/tsne_map.py" in script
    assert header["thumb"] == 28 and "28" in script  # the script assumes 28-pixel thumbnails


# --- the section's two stages -------------------------------------------------------------------


def test_contract_scoring_is_shared_not_configured() -> None:
    fields = {f.name for f in dataclasses.fields(embeddings.Config)}
    assert not fields & {"pca_dims", "perplexity", "knn_k", "knn_folds", "trust_k"}
    quick = dataclasses.replace(embeddings.ANALYSIS.config, **embeddings.ANALYSIS.quick)
    assert quick.tsne_points < embeddings.ANALYSIS.config.tsne_points == 70_000
    assert not any(isinstance(getattr(quick, f), str) and "," in getattr(quick, f)
                   for f in fields)  # lists are tuples


def test_compute_reaches_no_drawing_and_draw_embeds_nothing() -> None:
    keys = Keys(REPO, (*PRESENTATION_MODULES, *PRESENTATION))
    section = Section(embeddings.ANALYSIS, embeddings)
    compute = keys.closure(section, "compute")
    assert not compute.excluded  # report.compare, digits.plots, ...
    files = {name.split(":")[0] for name in compute.symbols}
    assert not files & {"digits/plots.py", "digits/tsne_map.py", "report/compare.py"}
    assert {"digits/embedding_quality.py:tsne_map", "digits/embedding_quality.py:knn_scores",
            "digits/embedding_quality.py:MAP_SCORING"} <= set(compute.symbols)
    mine = {name.split(":")[1] for name in compute.symbols
            if name.startswith("analyses/embeddings.py:")}
    assert {"compute", "pca_step", "tsne_step", "knn_step", "trust_step", "TsneLogger"} <= mine
    assert not mine & {"draw", "map_assets", "confusions", "mean_scores", "class_scatter",
                       "VARIANCE_LEVELS"}
    drawn = set(keys.closure(section, "draw").symbols)
    assert "digits/tsne_map.py:encode_map_data" in drawn
    assert not drawn & {"digits/embedding_quality.py:tsne_map",
                        "digits/embedding_quality.py:knn_scores",
                        "digits/embedding_quality.py:fit_pca", "analyses/embeddings.py:compute"}


# --- the whole section -------------------------------------------------------------------------


def clustered_mnist(n_train: int = 400, n_test: int = 100) -> MNIST:
    """Ten random 'digit' templates, each image its template with 3 % of the pixels flipped."""
    generator = torch.Generator().manual_seed(0)
    templates = (torch.rand(10, 28, 28, generator=generator) < 0.2).to(torch.uint8) * 255

    def images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % 10
        x = templates[labels].clone()
        flip = torch.rand(n, 28, 28, generator=generator) < 0.03
        x[flip] = 255 - x[flip]
        return x, labels

    train_x, train_y = images(n_train)
    test_x, test_y = images(n_test)
    return MNIST(train_x, train_y, test_x, test_y, source="synthetic")


def test_whole_section_on_synthetic_clusters(tmp_path: Path) -> None:
    data = clustered_mnist()
    # Barnes-Hut on one thread: on 500 points the FFT grid's fixed cost and thread
    # synchronisation (on a busy machine) would take most of a minute.
    config = make_config([dataset.ANALYSIS, embeddings.ANALYSIS], "quick",
                         {"embeddings.tsne_gradients": "bh", "embeddings.threads": "1"})
    options = BuildOptions(root=REPO, out=tmp_path / "site", cache_dir=tmp_path / "cache",
                           templates=REPO / "templates", device=torch.device("cpu"),
                           prose_globals={"original": original.facts()})
    source = DataSource(fingerprint="clusters", load=lambda device: data)
    # One BLAS thread: on a busy machine, threads spinning in LAPACK make PCA 10x slower.
    with threadpool_limits(1):
        index, outcomes = build([dataset, embeddings], config, options, source,
                                log=lambda m: None)
    assert outcomes["embeddings"].status == "run"
    site = tmp_path / "site"
    m = json.loads((site / "data" / "embeddings" / "metrics.json").read_text())
    assert m["n_images"] == 500 and m["tsne_points"] == 500 and m["tsne_all"] is True
    # Ten tight clusters: every space separates them, even PCA's first two axes nearly do.
    for key in ("raw", "pca50", "tsne"):
        assert m[f"knn_{key}"] >= 0.98, key
        assert len(m[f"knn_{key}_folds"]) == 5
        assert m[f"knn_{key}"] == pytest.approx(np.mean(m[f"knn_{key}_folds"]))
    assert m["pca_n90"] <= m["pca_n95"] <= m["pca_n99"] <= 784
    # Five disjoint trustworthiness samples: 500 points leave 100 each (quick asks 1,000).
    assert m["trust_repeats"] == 5 and m["trust_points"] == 100
    assert len(m["trust_tsne_samples"]) == 5 and m["trust_tsne"] > 0.8
    # Every comparison the prose makes is recorded with its verdict and both sides.
    for name in ("tsne_vs_raw", "pca50_vs_raw", "tsne_vs_pca2", "trust_tsne_vs_pca2",
                 "tsne_worst_vs_next", "tsne_best_vs_next"):
        assert m[name]["verdict"] in ("ahead", "behind", "cannot separate"), name
    assert m["tsne_vs_raw"]["a"]["n"] == 5 and m["trust_tsne_vs_pca2"]["b"]["n"] == 5
    assert m["tsne_vs_pca2"]["a"]["mean"] == pytest.approx(m["knn_tsne"])
    table = json.loads((site / "data" / "embeddings" / "knn_quality.json").read_text())
    assert [row["space"] for row in table["rows"]] == ["raw pixels", "PCA-2", "PCA-50", "t-SNE-2"]
    assert all(" ± " in row["kNN accuracy"] for row in table["rows"])
    # The map data decodes to the right labels for the right images.
    script = (site / "assets" / "embeddings" / "map_points.js").read_text()
    decoded = tsne_map.decode_map_data(script)
    all_labels = torch.cat([data.train_labels, data.test_labels]).numpy()
    assert decoded["n"] == 500 and np.array_equal(decoded["labels"], all_labels[decoded["index"]])
    png = (site / "assets" / "embeddings" / decoded["sheets"][0]).read_bytes()
    thumbs = tsne_map.decode_sprite_sheet(png, 500)
    all_images = torch.cat([data.train_images, data.test_images]).numpy()
    # Pixels are 0 or 255 here, which 16 grey levels keep exactly.
    assert np.array_equal(thumbs, all_images[decoded["index"]])
    assert m["map_sprite_bytes"] == len(png) and m["map_points_bytes"] == len(script.encode())
    # The page holds every figure, the tables and the widget pointing at the data.
    page = index.read_text()
    for item in outcomes["embeddings"].draw_manifest["items"]:
        if item["kind"] == "figure":
            assert (site / "figures" / "embeddings" / item["file"]).stat().st_size > 0
            assert f'id="embeddings-{item["name"]}"' in page
    assert 'data-src="assets/embeddings/map_points.js"' in page
    assert 'data-figure="embeddings-tsne_map"' in page
    assert '<script src="static/tsne_map.js" defer></script>' in page
    assert (site / "data" / "embeddings" / "confused_pairs.csv").is_file()
    assert "@@ITEM" not in page
    assert "Maps of 500 digits: PCA and t-SNE" in page  # the title follows the count
    assert "from their first 50 principal components, with perplexity 30" in " ".join(
        page.split())  # MAP_SCORING's settings, as recorded by compute

    # Compute recorded raw results: coordinates, per-fold and per-sample scores, predictions.
    results = entry(tmp_path / "cache")
    recorded = json.loads((results / "manifest.json").read_text())["metrics"]
    assert {k: recorded[k] for k in dataclasses.asdict(MAP_SCORING)} == dataclasses.asdict(
        MAP_SCORING)
    assert not set(recorded) & {"knn_tsne", "trust_tsne", "tsne_vs_raw", "pca_n90",
                                "tsne_worst_class", "map_sprite_bytes", "thumb_rows"}
    arrays = {p.stem: Results("test", "embeddings", results).array(p.stem)
              for p in (results / "arrays").glob("*.npz")}
    assert arrays["tsne_xy"].shape == (500, 2) and arrays["tsne_xy"].dtype == np.float32
    assert arrays["pca_coordinates"].shape == (500, 3)
    assert arrays["pca_coordinates"].dtype == np.float32
    assert arrays["pca_components"].shape == (12, 784)
    assert arrays["pca_explained_ratio"].sum() == pytest.approx(1.0, abs=1e-4)
    assert np.array_equal(arrays["tsne_index"], np.arange(500))
    assert arrays["knn_confusion_tsne"].sum() == 500 and arrays["knn_fold_of"].max() == 4
    assert arrays["pixel_value_counts"].sum() == 500 * 784
    assert np.array_equal(np.bincount(arrays["knn_tsne_predictions"], minlength=10),
                          arrays["knn_confusion_tsne"].sum(axis=0))

    # Draw alone, twice from the same results: the build's metrics, items and map files.
    cfg = config.section("embeddings")
    first = redraw(tmp_path, cfg, results, data, "a")
    second = redraw(tmp_path, cfg, results, data, "b")
    assert first.metrics == second.metrics == outcomes["embeddings"].draw_manifest["metrics"]
    assert (tmp_path / "a" / "map_points.js").read_text() == script
    assert (tmp_path / "b" / decoded["sheets"][0]).read_bytes() == png
    # Doctored results, where t-SNE wins every fold against raw pixels: draw's verdicts follow.
    doctored = tmp_path / "doctored"
    shutil.copytree(results, doctored)
    manifest = json.loads((doctored / "manifest.json").read_text())
    # Separated by more than the spreads (equal folds would be a spread of zero: no verdict).
    manifest["metrics"]["knn_tsne_folds"] = [1.0, 0.99, 1.0, 0.99, 1.0]
    manifest["metrics"]["knn_raw_folds"] = [0.5, 0.52, 0.48, 0.5, 0.5]
    (doctored / "manifest.json").write_text(json.dumps(manifest))
    again = redraw(tmp_path, cfg, doctored, data, "c").metrics
    assert again["knn_tsne"] == pytest.approx(0.996) and again["knn_raw"] == pytest.approx(0.5)
    assert again["tsne_vs_raw"]["verdict"] == "ahead"


def entry(cache: Path, name: str = "embeddings") -> Path:
    """The one compute entry of `name` in a fresh build's cache."""
    (folder,) = [p for p in (cache / "compute" / name).iterdir() if not p.name.startswith(".")]
    return folder


def redraw(tmp_path: Path, cfg: object, results: Path, data: MNIST, run: str) -> DrawContext:
    """The section's draw once more over recorded compute results (into its own folder)."""
    staging = tmp_path / run
    staging.mkdir()
    ctx = DrawContext("embeddings", cfg, seed=0, staging=staging, results=results,
                      upstream={"dataset": entry(tmp_path / "cache", "dataset")},
                      data_loader=lambda: data, log=lambda m: None)
    with threadpool_limits(1):
        embeddings.draw(ctx)
    return ctx


@pytest.mark.e2e
def test_quick_build_of_the_section_on_real_mnist(tmp_path: Path) -> None:
    """build.main on the real data with a small t-SNE (about a minute on 2 CPU cores)."""
    import build as cli
    from digits.data import load_mnist

    out = tmp_path / "site"
    assert cli.main(["--profile", "quick", "--device", "cpu", "--only", "embeddings",
                     "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
                     "--set", "embeddings.tsne_points=1000",
                     "--set", "embeddings.knn_points=1000",
                     "--set", "embeddings.trust_points=200",
                     "--set", "embeddings.threads=1"]) == 0
    m = json.loads((out / "data" / "embeddings" / "metrics.json").read_text())
    assert m["n_images"] == 70_000 and m["tsne_points"] == 1_000
    # Facts about MNIST that any correct PCA finds (87 / 154 / 331 with every image).
    assert 80 <= m["pca_n90"] <= 95 and 140 <= m["pca_n95"] <= 170
    assert m["knn_tsne"] > 0.8 and m["tsne_vs_pca2"]["verdict"] == "ahead"
    decoded = tsne_map.decode_map_data((out / "assets" / "embeddings" /
                                          "map_points.js").read_text())
    mnist = load_mnist(None, log=lambda message: None)
    labels = torch.cat([mnist.train_labels, mnist.test_labels]).numpy()
    assert np.array_equal(decoded["labels"], labels[decoded["index"]])
