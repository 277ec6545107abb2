"""The data section (analyses/dataset.py): its helpers, its two stages' reach, then the whole
section on synthetic data, drawn again from the recorded results."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from analyses import PRESENTATION, dataset
from digits import original
from digits.data import MNIST
from report.analysis import Section
from report.config import make_config
from report.context import DrawContext, Results
from report.engine import BuildOptions, DataSource, build
from report.keys import PRESENTATION_MODULES, Keys

REPO = Path(__file__).resolve().parent.parent


def test_pixel_stats_on_known_images() -> None:
    # Two images per class: all pixels 10*d and all pixels 10*d + 2.
    values = [10 * d + k for d in range(10) for k in (0, 2)]
    images = torch.tensor(values, dtype=torch.uint8).view(-1, 1, 1).expand(-1, 28, 28)
    labels = torch.arange(10).repeat_interleave(2)
    stats = dataset.pixel_stats(images, labels)
    expected = np.array([10 * d + 1 for d in range(10)]) / 255
    assert stats["counts"].tolist() == [2] * 10
    assert stats["mean_images"].shape == (10, 28, 28)
    np.testing.assert_allclose(stats["mean_images"][:, 5, 5], expected, rtol=1e-5)
    np.testing.assert_allclose(stats["intensity"], expected, rtol=1e-5)
    # Sample std of the per-image means {a, a + 2}: 2 / sqrt(2), in units of 1/255.
    np.testing.assert_allclose(stats["intensity_std"], math.sqrt(2) / 255, rtol=1e-4)


def test_pixel_stats_per_class_mean_image() -> None:
    images = torch.zeros(30, 28, 28, dtype=torch.uint8)
    labels = torch.arange(30) % 10  # three images per class
    images[3, 4, 5] = 255  # one of the three 3s is inked at (4, 5)
    stats = dataset.pixel_stats(images, labels)
    assert stats["mean_images"][3, 4, 5] == pytest.approx(1 / 3)
    assert stats["mean_images"].sum() == pytest.approx(1 / 3)
    assert stats["counts"].tolist() == [3] * 10


def test_class_shares_and_their_largest_difference() -> None:
    train = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    test = torch.tensor([0] * 5 + [1] * 3 + [2] * 2)  # the same proportions
    np.testing.assert_allclose(dataset.class_shares(train, 3), [0.5, 0.3, 0.2])
    digit, diff = dataset.largest_share_difference(dataset.class_shares(test, 3),
                                                   dataset.class_shares(train, 3))
    assert diff == pytest.approx(0.0)
    # Class 2 gains 4 points in the second set, class 0 loses 3, class 1 loses 1.
    digit, diff = dataset.largest_share_difference(np.array([0.47, 0.29, 0.24]),
                                                   np.array([0.5, 0.3, 0.2]))
    assert digit == 2 and diff == pytest.approx(0.04)
    digit, diff = dataset.largest_share_difference(np.array([0.45, 0.33, 0.22]),
                                                   np.array([0.5, 0.3, 0.2]))
    assert digit == 0 and diff == pytest.approx(-0.05)  # signed: the first set has fewer


def test_dark_ink_share_counts_only_non_zero_pixels_above_half() -> None:
    images = torch.zeros(3, 28, 28, dtype=torch.uint8)
    images[0, 0, :4] = torch.tensor([100, 200, 255, 127])  # class 0: 2 of 4 ink pixels dark
    images[1, 0, :2] = torch.tensor([128, 1])  # class 1: 1 of 2 (128 is dark, 127 is not)
    images[2, 0, :3] = torch.tensor([250, 250, 250])  # class 1 again: 3 of 3
    labels = torch.tensor([0, 1, 1])
    per_class, overall = dataset.dark_ink_share(images, labels, half=127, n_classes=2)
    np.testing.assert_allclose(per_class, [2 / 4, 4 / 5])
    assert overall == pytest.approx(6 / 9)  # the zeros of the background never count
    per_class, overall = dataset.dark_ink_share(images, labels, half=99, n_classes=2)
    assert per_class[0] == pytest.approx(1.0)


def test_value_histograms_count_non_zero_values_per_class() -> None:
    images = torch.zeros(4, 28, 28, dtype=torch.uint8)
    images[0, 0, :3] = torch.tensor([1, 9, 255])  # class 0; bins 7.97 wide from 1 to 256
    images[1, 0, :2] = torch.tensor([17, 17])  # class 1, twice the same value
    images[3, 0, 0] = 200  # class 1 again
    labels = torch.tensor([0, 1, 0, 1])
    bins = dataset.histogram_bins(32)
    assert bins[0] == 1 and bins[-1] == 256 and len(bins) == 33
    counts, zeros = dataset.value_histograms(images, labels, bins, n_classes=2)
    assert counts.dtype == np.int64 and counts.shape == (2, 32)
    assert counts[0].sum() == 3 and counts[1].sum() == 3  # the zeros are not counted
    assert counts[0, 0] == counts[0, 1] == counts[0, 31] == 1
    assert counts[1, 2] == 2 and counts[1, 24] == 1  # 17 in [16.9, 24.9), 200 in [192.3, 200.2)
    np.testing.assert_allclose(zeros, [1 - 3 / (2 * 784), 1 - 3 / (2 * 784)])


def test_border_mask_and_share_on_border() -> None:
    ring = dataset.border_mask(6, 6, 1)
    assert ring.sum() == 36 - 16 and not ring[1:5, 1:5].any() and ring[0].all()
    assert dataset.border_mask(28, 28, 4).sum() == 28 * 28 - 20 * 20
    pixels = np.zeros((6, 6), dtype=bool)
    pixels[0, 0] = pixels[5, 3] = pixels[2, 0] = True  # three on the outer ring
    pixels[2, 2] = True  # one inside
    assert dataset.share_on_border(pixels, 1) == pytest.approx(3 / 4)
    assert dataset.share_on_border(pixels, 3) == pytest.approx(1.0)  # a ring covering all
    assert math.isnan(dataset.share_on_border(np.zeros((6, 6), dtype=bool), 1))


def test_ink_features() -> None:
    images = torch.zeros(3, 28, 28, dtype=torch.uint8)
    images[1] = 255
    images[2, :7, :4] = 51  # 28 pixels at 0.2
    features = dataset.ink_features(images)
    assert features.shape == (3, 2)
    np.testing.assert_allclose(features[:, 0], [0.0, 1.0, 28 * 0.2 / 784], rtol=1e-6)
    np.testing.assert_allclose(features[:, 1], [0, 784, 28])


def inked(counts: list[int], generator: torch.Generator) -> torch.Tensor:
    """One image per entry with that many random pixels at a random dark value."""
    images = torch.zeros(len(counts), 28 * 28, dtype=torch.uint8)
    for i, k in enumerate(counts):
        where = torch.randperm(28 * 28, generator=generator)[:k]
        images[i, where] = torch.randint(128, 256, (k,), generator=generator,
                                         dtype=torch.uint8)
    return images.view(-1, 28, 28)


def test_ink_classifier_separates_classes_only_by_their_ink() -> None:
    generator = torch.Generator().manual_seed(0)
    labels = np.arange(300) % 3
    # Classes with 20, 120 and 300 ink pixels (+- 5): the amount of ink tells them apart.
    counts = [int(c) for c in np.array([20, 120, 300])[labels]
              + torch.randint(-5, 6, (300,), generator=generator).numpy()]
    images = inked(counts, generator)
    model = dataset.fit_ink_classifier(dataset.ink_features(images[:200]), labels[:200])
    assert (model.predict(dataset.ink_features(images[200:])) == labels[200:]).mean() > 0.95
    # The same amount of ink in every class: no better than chance (one third).
    same = inked([100] * 300, generator)
    model = dataset.fit_ink_classifier(dataset.ink_features(same[:200]), labels[:200])
    assert (model.predict(dataset.ink_features(same[200:])) == labels[200:]).mean() < 0.5


def test_part_accuracies_cover_disjoint_parts() -> None:
    labels = np.zeros(100, dtype=int)
    predictions = np.zeros(100, dtype=int)
    predictions[:30] = 1  # 70 % right overall
    parts = dataset.part_accuracies(labels, predictions, 10, np.random.default_rng(0))
    assert parts.shape == (10,)
    assert parts.mean() == pytest.approx(0.7)  # equal parts: their mean is the overall accuracy
    assert parts.std() > 0  # random parts, not the first 10 and the next 10
    again = dataset.part_accuracies(labels, predictions, 10, np.random.default_rng(0))
    np.testing.assert_array_equal(parts, again)
    perfect = dataset.part_accuracies(labels, labels, 4, np.random.default_rng(1))
    assert perfect.tolist() == [1.0] * 4


def test_dimmest_gap() -> None:
    assert dataset.dimmest_gap(np.array([0.3, 0.1, 0.25, 0.12])) == pytest.approx((1, 3, 0.02))
    dimmest, following, gap = dataset.dimmest_gap(np.array([0.2, 0.2, 0.5]))
    assert (dimmest, following, gap) == (0, 1, 0.0)  # a tie: no gap


def test_distinct_after_resampling() -> None:
    # Drawing 60,000 times with replacement from 60,000 keeps 1 - 1/e of them on average.
    distinct = dataset.distinct_after_resampling(60_000, 1_875, 32, np.random.default_rng(7))
    assert distinct == pytest.approx(60_000 * (1 - (1 - 1 / 60_000) ** 60_000), rel=0.01)
    assert distinct == np.unique(np.random.default_rng(7).integers(0, 60_000, 60_000)).size
    # Many draws from few images find them all; few draws from many images are all distinct.
    assert dataset.distinct_after_resampling(10, 100, 10, np.random.default_rng(0)) == 10
    assert dataset.distinct_after_resampling(10**12, 10, 10, np.random.default_rng(0)) == 100


def synthetic_mnist(n_train: int = 200, n_test: int = 100, border: int = 2) -> MNIST:
    """Digits-like images with a blank border of `border` pixels and balanced labels.

    Ink pixels are all dark (128..255) and digit d inks a share 0.1 + 0.05 d of the inner
    pixels, so that the amount of ink tells the classes apart.
    """
    generator = torch.Generator().manual_seed(0)

    def images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(n) % 10
        density = (0.1 + 0.05 * labels.float()).view(-1, 1, 1)
        x = torch.randint(128, 256, (n, 28, 28), generator=generator, dtype=torch.uint8)
        x[torch.rand(n, 28, 28, generator=generator) >= density] = 0
        mask = torch.zeros(28, 28, dtype=torch.bool)
        mask[border:28 - border, border:28 - border] = True
        return x * mask, labels

    return MNIST(*images(n_train), *images(n_test), source="synthetic")


def test_compute_reaches_no_drawing_and_draw_measures_nothing() -> None:
    keys = Keys(REPO, (*PRESENTATION_MODULES, *PRESENTATION))
    section = Section(dataset.ANALYSIS, dataset)
    compute = keys.closure(section, "compute")
    assert not compute.excluded  # report.compare, digits.plots, ...
    files = {name.split(":")[0] for name in compute.symbols}
    assert "digits/plots.py" not in files and "report/compare.py" not in files
    mine = {name.split(":")[1] for name in compute.symbols
            if name.startswith("analyses/dataset.py:")}
    assert {"compute", "pixel_values", "value_histograms", "ink_baseline"} <= mine
    assert not mine & {"draw", "plot_pixel_histograms", "ink_verdict", "class_counts_table"}
    drawn = {name.split(":")[1] for name in keys.closure(section, "draw").symbols
             if name.startswith("analyses/dataset.py:")}
    assert "ink_verdict" in drawn and not drawn & {"fit_ink_classifier", "pixel_stats",
                                                   "dark_ink_share", "value_histograms"}


def entry(cache: Path) -> Path:
    """The one compute entry of the data section in a fresh build's cache."""
    (folder,) = [p for p in (cache / "compute" / "dataset").iterdir()
                 if not p.name.startswith(".")]
    return folder


def redraw(tmp_path: Path, results: Path, run: str) -> DrawContext:
    """The section's draw once more over recorded compute results."""
    staging = tmp_path / run
    staging.mkdir()
    ctx = DrawContext("dataset", dataset.ANALYSIS.config, seed=0, staging=staging,
                      results=results, upstream={}, log=lambda m: None)
    dataset.draw(ctx)
    return ctx


def test_whole_section_on_synthetic_data(tmp_path: Path) -> None:
    config = make_config([dataset.ANALYSIS], "quick")
    options = BuildOptions(root=REPO, out=tmp_path / "site", cache_dir=tmp_path / "cache",
                           templates=REPO / "templates", device=torch.device("cpu"),
                           prose_globals={"original": original.facts()})
    data = synthetic_mnist()
    source = DataSource(fingerprint="synthetic", load=lambda device: data)
    index, outcomes = build([dataset], config, options, source, log=lambda m: None)
    assert outcomes["dataset"].status == "run"
    metrics = json.loads((tmp_path / "site" / "data" / "dataset" / "metrics.json").read_text())
    assert metrics["n_train"] == 200 and metrics["n_test"] == 100
    assert metrics["train_counts"] == [20] * 10 and metrics["imbalance_ratio"] == 1.0
    assert metrics["n_classes"] == 10 and metrics["chance"] == pytest.approx(0.1)
    assert metrics["share_gap"] == pytest.approx(0.0)  # both sets perfectly balanced
    assert metrics["pixels_zero_everywhere"] == 28 * 28 - 24 * 24  # the blank border
    assert metrics["dead_on_border_share"] == 1.0  # a 2-pixel blank border lies in the 4 ring
    assert metrics["dark_ink_share"] == 1.0 and metrics["ink_near_binary"] is True
    assert metrics["dimmest_class"] == 0 and metrics["brightest_class"] == 9
    assert metrics["ink_vs_chance"]["verdict"] == "ahead"  # ink density encodes the class
    assert metrics["original_draws"] == original.TRAIN_BATCHES * original.BATCH_SIZE
    assert metrics["original_distinct"] == 200  # 60,000 draws from 200 images hit them all
    page = index.read_text()
    text = " ".join(page.split())  # prose line breaks do not matter
    assert "MNIST holds 200 training and 100 test images" in text
    assert "The ink itself is close to binary" in text
    assert "could tell some classes apart from the amount of ink alone" in text
    assert "All of them lie in the outermost ring 4 pixels wide" in text
    assert "@@ITEM" not in page
    for item in outcomes["dataset"].draw_manifest["items"]:
        if item["kind"] == "figure":
            assert (tmp_path / "site" / "figures" / "dataset" / item["file"]).stat().st_size > 0
            assert f'id="dataset-{item["name"]}"' in page
    assert (tmp_path / "site" / "data" / "dataset" / "class_counts.csv").read_text().startswith(
        "digit,train,train share,test,test share\n")

    # Compute recorded the raw results; the verdict is draw's.
    results = entry(tmp_path / "cache")
    recorded = json.loads((results / "manifest.json").read_text())["metrics"]
    assert "ink_vs_chance" not in recorded and len(recorded["ink_part_accuracies"]) == 10
    arrays = {p.stem: Results("test", "dataset", results).array(p.stem)
              for p in (results / "arrays").glob("*.npz")}
    assert arrays["class_means"].shape == (10, 28, 28) and arrays["class_means"].dtype == np.float32
    train_x, train_y = data.train_images.numpy(), data.train_labels.numpy()
    np.testing.assert_allclose(arrays["class_means"][3], train_x[train_y == 3].mean(0) / 255,
                               rtol=1e-5)
    assert arrays["pixel_histograms"].shape == (10, 32)
    assert [int(arrays["pixel_histograms"][d].sum()) for d in range(10)] == [
        int((train_x[train_y == d] > 0).sum()) for d in range(10)]
    assert arrays["never_ink"].dtype == bool and arrays["never_ink"].sum() == 28 * 28 - 24 * 24
    assert arrays["std_map"].shape == (28, 28) and arrays["std_map"][0, 0] == 0
    assert arrays["sample_images"].dtype == np.uint8 and arrays["sample_images"].shape == (
        25, 28, 28) and len(arrays["sample_labels"]) == 25

    # Draw alone, twice from the same results: the same metrics and items as the build's.
    first, second = redraw(tmp_path, results, "a"), redraw(tmp_path, results, "b")
    assert first.metrics == second.metrics == {"ink_vs_chance": metrics["ink_vs_chance"]}
    assert [i["name"] for i in first.items] == [i["name"] for i in second.items]
    assert {i["name"] for i in first.items} >= {"samples", "class_counts", "pixel_histograms",
                                                "dead_pixels"}
    # Results where the ink classifier is at chance in every part: draw's verdict follows.
    doctored = tmp_path / "doctored"
    shutil.copytree(results, doctored)
    manifest = json.loads((doctored / "manifest.json").read_text())
    manifest["metrics"]["ink_part_accuracies"] = [0.1] * 10
    (doctored / "manifest.json").write_text(json.dumps(manifest))
    verdict = redraw(tmp_path, doctored, "c").metrics["ink_vs_chance"]
    assert verdict["verdict"] == "cannot separate" and verdict["difference"] == pytest.approx(0)
