"""The data section (analyses/dataset.py): its helpers, then the whole section on synthetic data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from analyses import dataset
from digits.data import MNIST
from report.config import make_config
from report.engine import BuildOptions, DataSource, build

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


def test_distinct_after_resampling() -> None:
    # Drawing 60,000 times with replacement from 60,000 keeps 1 - 1/e of them on average.
    distinct = dataset.distinct_after_resampling(60_000, 1_875, 32, np.random.default_rng(7))
    assert distinct == pytest.approx(60_000 * (1 - (1 - 1 / 60_000) ** 60_000), rel=0.01)
    assert distinct == np.unique(np.random.default_rng(7).integers(0, 60_000, 60_000)).size
    # Many draws from few images find them all; few draws from many images are all distinct.
    assert dataset.distinct_after_resampling(10, 100, 10, np.random.default_rng(0)) == 10
    assert dataset.distinct_after_resampling(10**12, 10, 10, np.random.default_rng(0)) == 100


def synthetic_mnist(n_train: int = 200, n_test: int = 40, border: int = 2) -> MNIST:
    """Random digits-like images with a blank border of `border` pixels, balanced labels."""
    generator = torch.Generator().manual_seed(0)

    def images(n: int) -> torch.Tensor:
        x = torch.randint(0, 256, (n, 28, 28), generator=generator, dtype=torch.uint8)
        x[x < 128] = 0  # mostly background, as in MNIST
        mask = torch.zeros(28, 28, dtype=torch.bool)
        mask[border:28 - border, border:28 - border] = True
        return x * mask

    return MNIST(images(n_train), torch.arange(n_train) % 10, images(n_test),
                 torch.arange(n_test) % 10, md5={}, source="synthetic")


def test_whole_section_on_synthetic_data(tmp_path: Path) -> None:
    config = make_config([dataset.ANALYSIS], "quick")
    options = BuildOptions(root=REPO, out=tmp_path / "site", cache_dir=tmp_path / "cache",
                           templates=REPO / "templates", device=torch.device("cpu"))
    source = DataSource(fingerprint="synthetic", load=lambda device: synthetic_mnist())
    index, outcomes = build([dataset], config, options, source, log=lambda m: None)
    assert outcomes["dataset"].status == "run"
    metrics = json.loads((tmp_path / "site" / "data" / "dataset" / "metrics.json").read_text())
    assert metrics["n_train"] == 200 and metrics["n_test"] == 40
    assert metrics["train_counts"] == [20] * 10 and metrics["imbalance_ratio"] == 1.0
    assert metrics["pixels_zero_everywhere"] == 28 * 28 - 24 * 24  # the blank border
    assert metrics["original_draws"] == 1_875 * 32
    assert metrics["original_distinct"] == 200  # 60,000 draws from 200 images hit them all
    page = index.read_text()
    assert "MNIST holds 200 training and 40 test images" in page
    for item in outcomes["dataset"].manifest["items"]:
        if item["kind"] == "figure":
            assert (tmp_path / "site" / "figures" / "dataset" / item["file"]).stat().st_size > 0
            assert f'id="dataset-{item["name"]}"' in page
    assert (tmp_path / "site" / "data" / "dataset" / "class_counts.csv").read_text().startswith(
        "digit,train,train share,test,test share\n")
