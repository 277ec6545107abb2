"""Understanding the data: samples, class balance, mean images, pixel statistics."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.ticker
import numpy as np
import torch

from digits.data import iterate_batches
from digits.plots import CLASS_COLORS, digit_grid, new_figure
from report import Analysis, Context


@dataclass(frozen=True)
class Config:
    """Knobs of the data section (the data itself is always the full 60k + 10k)."""

    grid: int = 5  # the sample grid is grid x grid images from one shuffled batch
    original_batch: int = 32  # the original notebook's batch size
    original_batches: int = 1_875  # batches it drew, with replacement, as "the whole training set"
    hist_bins: int = 32  # histogram bins over pixel values 1..255


ANALYSIS = Analysis(
    name="dataset",
    title="Understanding the data",
    config=Config(),
    quick={},  # every statistic here takes seconds on the full data, so quick = full
)


def pixel_stats(images: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-class mean image, mean intensity and its std over images (intensities in [0, 1])."""
    x = images.float().div(255)
    means, intensity, intensity_std, counts = [], [], [], []
    for digit in range(10):
        xs = x[labels == digit]
        counts.append(len(xs))
        means.append(xs.mean(0).cpu().numpy())
        per_image = xs.mean(dim=(1, 2))
        intensity.append(per_image.mean().item())
        intensity_std.append(per_image.std().item())
    return {"mean_images": np.stack(means), "intensity": np.array(intensity),
            "intensity_std": np.array(intensity_std), "counts": np.array(counts)}


def distinct_after_resampling(n: int, batches: int, batch: int, rng: np.random.Generator) -> int:
    """How many distinct images `batches` batches drawn with replacement from n images contain."""
    draws = rng.integers(0, n, size=batches * batch)
    return int(np.unique(draws).size)


def run(ctx: Context) -> None:
    """Compute every statistic on the full training and test sets, then draw the figures."""
    cfg: Config = ctx.cfg
    data = ctx.data
    train_x, train_y = data.train_images, data.train_labels
    test_x, test_y = data.test_images, data.test_labels
    ctx.metric("n_train", train_x.shape[0])
    ctx.metric("n_test", test_x.shape[0])
    ctx.metric("image_size", list(train_x.shape[1:]))

    # 1. A grid of samples from one shuffled batch, as a training loop would see them.
    n = cfg.grid * cfg.grid
    images, labels = next(iterate_batches(train_x, train_y, n, generator=ctx.generator()))
    fig = digit_grid(images.cpu().numpy(), [str(int(v)) for v in labels], ncols=cfg.grid,
                     size=0.9)
    ctx.figure("samples", fig, caption=f"{n} training images from one shuffled batch, with "
               "their labels.", alt=f"A {cfg.grid} by {cfg.grid} grid of handwritten digits.")

    # 2. Class balance.
    train_stats = pixel_stats(train_x, train_y)
    test_counts = torch.bincount(test_y, minlength=10).cpu().numpy()
    counts = train_stats["counts"]
    ctx.table("class_counts", [
        {"digit": d, "train": int(counts[d]), "train share": round(counts[d] / counts.sum(), 4),
         "test": int(test_counts[d]), "test share": round(test_counts[d] / test_counts.sum(), 4)}
        for d in range(10)], caption="Images per class in the training and test sets.")
    ctx.metric("train_counts", counts)
    ctx.metric("test_counts", test_counts)
    ctx.metric("most_common", int(counts.argmax()))
    ctx.metric("most_common_count", int(counts.max()))
    ctx.metric("least_common", int(counts.argmin()))
    ctx.metric("least_common_count", int(counts.min()))
    ctx.metric("imbalance_ratio", float(counts.max() / counts.min()))

    fig, axes = new_figure(7, 2.8)
    ax = axes[0, 0]
    width = 0.4
    ax.bar(np.arange(10) - width / 2, counts / counts.sum(), width,
           label=f"train ({counts.sum():,})", color=CLASS_COLORS[0])
    ax.bar(np.arange(10) + width / 2, test_counts / test_counts.sum(), width,
           label=f"test ({test_counts.sum():,})", color=CLASS_COLORS[1])
    ax.axhline(0.1, color="k", lw=0.8, ls="--", label="perfect balance (10 %)")
    ax.set_xticks(range(10))
    ax.set_xlabel("digit")
    ax.set_ylabel("share of the set")
    ax.legend(loc="lower right", ncols=3, fontsize=8)
    ctx.figure("class_balance", fig, caption="Share of each digit in the training and test sets.",
               alt="Bar chart: every digit holds between about 9 and 11 percent of each set.")

    # 3. Class-wise mean images.
    fig = digit_grid(train_stats["mean_images"], [f"mean {d}" for d in range(10)], ncols=5,
                     cmap="magma", vmin=0, vmax=1)
    ctx.figure("class_means", fig, caption="The mean training image of each class (all "
               f"{counts.sum():,} images; brighter = more often ink).",
               alt="Ten blurred average digits, zero to nine.")

    # 4. Pixel-value histogram per class (ink only; the share of zeros is annotated).
    fig, axes = new_figure(9, 3.6, nrows=2, ncols=5, sharex=True, sharey=True)
    zero_share = []
    bins = np.linspace(1, 256, cfg.hist_bins + 1)
    for digit, ax in enumerate(axes.flat):
        values = train_x[train_y == digit].flatten().cpu().numpy()
        zeros = float((values == 0).mean())
        zero_share.append(zeros)
        ax.hist(values[values > 0], bins=bins, color=CLASS_COLORS[digit], density=True)
        ax.set_title(f"{digit}: {100 * zeros:.0f} % zeros", fontsize=8)
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in axes[1]:
        ax.set_xlabel("pixel value")
    for ax in axes[:, 0]:
        ax.set_ylabel("density")
    fig.tight_layout()
    ctx.figure("pixel_histograms", fig, caption="Distribution of non-zero pixel values per "
               "class (log scale); the title gives the share of pixels that are exactly zero.",
               alt="Ten histograms: most ink pixels are near 0 or near 255, with few in between.")
    ctx.metric("zero_share_per_class", zero_share)

    # 5. Mean intensity per class.
    intensity = train_stats["intensity"]
    fig, axes = new_figure(7, 2.8)
    ax = axes[0, 0]
    ax.bar(range(10), intensity, yerr=train_stats["intensity_std"], capsize=3,
           color=[CLASS_COLORS[d] for d in range(10)])
    ax.set_xticks(range(10))
    ax.set_xlabel("digit")
    ax.set_ylabel("mean pixel intensity (0-1)")
    ctx.figure("mean_intensity", fig, caption="Mean pixel intensity per class; bars show the "
               "standard deviation across that class's images.",
               alt="Bar chart of mean intensity per digit; one is clearly the dimmest.")
    ctx.metric("intensity_per_class", intensity)
    ctx.metric("brightest_class", int(intensity.argmax()))
    ctx.metric("dimmest_class", int(intensity.argmin()))
    ctx.metric("brightest_intensity", float(intensity.max()))
    ctx.metric("dimmest_intensity", float(intensity.min()))

    # 6. Facts the original did not show.
    all_x = torch.cat([train_x, test_x])
    never_ink = (all_x.amax(dim=0) == 0)
    never_ink_train = (train_x.amax(dim=0) == 0)
    ctx.metric("pixels_zero_everywhere", int(never_ink.sum()))
    ctx.metric("pixels_zero_everywhere_train", int(never_ink_train.sum()))
    train_float = train_x.float().div(255)
    ctx.metric("train_mean", train_float.mean().item())
    ctx.metric("train_std", train_float.std().item())
    ctx.metric("zero_share", float((train_x == 0).float().mean().item()))
    ctx.metric("saturated_share", float((train_x == 255).float().mean().item()))
    ink = (train_x > 0).float().sum(dim=(1, 2))
    ctx.metric("ink_pixels_mean", ink.mean().item())
    ink_per_class = [ink[train_y == d].mean().item() for d in range(10)]
    ctx.metric("ink_pixels_per_class", ink_per_class)

    std_map = train_float.std(dim=0).cpu().numpy()
    fig, axes = new_figure(6, 2.8, ncols=2)
    axes[0, 0].imshow(never_ink.cpu().numpy(), cmap="gray_r", interpolation="nearest")
    axes[0, 0].set_title(f"{int(never_ink.sum())} pixels are 0\nin all {len(all_x):,} images")
    im = axes[0, 1].imshow(std_map, cmap="viridis", interpolation="nearest")
    axes[0, 1].set_title("per-pixel std\nover the training set")
    fig.colorbar(im, ax=axes[0, 1], fraction=0.046)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    ctx.figure("dead_pixels", fig, caption="Left: in black, pixels that are zero in every "
               "training and test image. Right: how much each pixel varies across the "
               "training set.", alt="Two 28 by 28 maps: a dark border of always-empty pixels, "
               "and a bright central blob of variable pixels.")

    # 7. The original's "whole training set" was drawn with replacement.
    distinct = distinct_after_resampling(train_x.shape[0], cfg.original_batches,
                                         cfg.original_batch, ctx.rng)
    ctx.metric("original_draws", cfg.original_batches * cfg.original_batch)
    ctx.metric("original_distinct", distinct)
    ctx.metric("original_distinct_share", distinct / train_x.shape[0])
