"""Understanding the data: samples, class balance, mean images, pixel statistics, ink alone.

`compute` measures the full training and test sets and records the numbers and the small
arrays every figure needs (class means, per-class pixel-value histograms, the dead-pixel mask,
the std map, the sample grid); `draw` makes the figures, the class table and the verdict on the
ink-only classifier from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import matplotlib.patches
import matplotlib.ticker
import numpy as np
import torch

from digits import original
from digits.data import MNIST, iterate_batches
from digits.metrics import accuracy, per_class_accuracy
from digits.plots import CLASS_COLORS, digit_grid, new_figure
from report import Analysis, ComputeContext, DrawContext
from report.compare import Runs, against

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline


@dataclass(frozen=True)
class Config:
    """Knobs of the data section (the data itself is always the full 60k + 10k)."""

    grid: int = 5  # the sample grid is grid x grid images from one shuffled batch
    hist_bins: int = 32  # histogram bins over pixel values 1..255
    # A non-zero pixel counts as dark ink above half the 0..255 range: 128 and up.
    half_ink: int = 127
    # "Close to binary" when at least this share of the non-zero pixels is dark ink, i.e. at
    # most one ink pixel in ten is a grey edge.
    binary_share: float = 0.9
    # MNIST's digits were size-normalised into a 20 x 20 box and centred in 28 x 28: the
    # outermost 4 pixels form the margin around that box. Always-zero pixels are counted in it.
    border_width: int = 4
    # The ink-only classifier's test accuracy is measured on this many disjoint random parts
    # of the test set (1,000 images each), so that compare() sees its spread.
    ink_test_parts: int = 10


ANALYSIS = Analysis(
    name="dataset",
    config=Config(),
    quick={},  # every statistic here takes seconds on the full data, so quick = full
)


# --- statistics (pure functions, tested on synthetic data) ------------------------------------


def pixel_stats(images: torch.Tensor, labels: torch.Tensor,
                n_classes: int = 10) -> dict[str, np.ndarray]:
    """Per-class mean image, mean intensity and its std over images (intensities in [0, 1])."""
    x = images.float().div(255)
    means, intensity, intensity_std, counts = [], [], [], []
    for digit in range(n_classes):
        xs = x[labels == digit]
        counts.append(len(xs))
        means.append(xs.mean(0).cpu().numpy())
        per_image = xs.mean(dim=(1, 2))
        intensity.append(per_image.mean().item())
        intensity_std.append(per_image.std().item())
    return {"mean_images": np.stack(means), "intensity": np.array(intensity),
            "intensity_std": np.array(intensity_std), "counts": np.array(counts)}


def class_shares(labels: torch.Tensor, n_classes: int = 10) -> np.ndarray:
    """Share of each class among the labels."""
    counts = torch.bincount(labels.cpu(), minlength=n_classes).numpy()
    return counts / counts.sum()


def largest_share_difference(a: np.ndarray, b: np.ndarray) -> tuple[int, float]:
    """The class whose share differs most between a and b, and that difference (a - b)."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    worst = int(np.abs(diff).argmax())
    return worst, float(diff[worst])


def dark_ink_share(images: torch.Tensor, labels: torch.Tensor, half: int = 127,
                   n_classes: int = 10) -> tuple[np.ndarray, float]:
    """Share of the non-zero pixels that are above `half`, per class and over all images."""
    ink = (images > 0).sum(dim=(1, 2)).double()
    dark = (images > half).sum(dim=(1, 2)).double()
    per_class = np.array([(dark[labels == d].sum() / ink[labels == d].sum()).item()
                          for d in range(n_classes)])
    return per_class, (dark.sum() / ink.sum()).item()


def histogram_bins(bins: int) -> np.ndarray:
    """Edges of `bins` equal bins over the non-zero pixel values 1..255."""
    return np.linspace(1, 256, bins + 1)


def value_histograms(images: torch.Tensor, labels: torch.Tensor, bins: np.ndarray,
                     n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Per class: counts of the non-zero pixel values in `bins` (int64 [n_classes, bins]) and
    the share of pixels that are exactly zero."""
    counts, zero_share = [], []
    for digit in range(n_classes):
        values = images[labels == digit].flatten().cpu().numpy()
        zero_share.append(float((values == 0).mean()))
        counts.append(np.histogram(values[values > 0], bins=bins)[0])
    return np.stack(counts).astype(np.int64), np.array(zero_share)


def border_mask(height: int, width: int, ring: int) -> np.ndarray:
    """Boolean [height, width] mask of the outermost `ring` pixels on every side."""
    mask = np.ones((height, width), dtype=bool)
    mask[ring:height - ring, ring:width - ring] = False
    return mask


def share_on_border(pixels: np.ndarray, ring: int) -> float:
    """Share of the True pixels of a 2-D mask that lie in its outermost `ring` pixels."""
    pixels = np.asarray(pixels, dtype=bool)
    total = int(pixels.sum())
    if total == 0:
        return float("nan")
    return float(pixels[border_mask(*pixels.shape, ring)].sum() / total)


def ink_features(images: torch.Tensor) -> np.ndarray:
    """The amount of ink of each image: [mean intensity in [0, 1], count of non-zero pixels]."""
    intensity = images.float().div(255).mean(dim=(1, 2))
    count = (images > 0).float().sum(dim=(1, 2))
    return torch.stack([intensity, count], dim=1).cpu().numpy().astype(np.float64)


def fit_ink_classifier(features: np.ndarray, labels: np.ndarray) -> Pipeline:
    """Multinomial logistic regression on standardised ink features (sklearn defaults)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1_000))
    return model.fit(features, labels)


def part_accuracies(labels: np.ndarray, predictions: np.ndarray, parts: int,
                    generator: np.random.Generator) -> np.ndarray:
    """Accuracy on each of `parts` disjoint random parts of the examples."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    chunks = np.array_split(generator.permutation(len(labels)), parts)
    return np.array([accuracy(labels[c], predictions[c]) for c in chunks])


def dimmest_gap(intensity: np.ndarray) -> tuple[int, int, float]:
    """The dimmest class, the next dimmest, and how much brighter the next one is."""
    order = np.argsort(intensity, kind="stable")
    return int(order[0]), int(order[1]), float(intensity[order[1]] - intensity[order[0]])


def distinct_after_resampling(n: int, batches: int, batch: int, rng: np.random.Generator) -> int:
    """How many distinct images `batches` batches drawn with replacement from n images contain."""
    draws = rng.integers(0, n, size=batches * batch)
    return int(np.unique(draws).size)


# --- compute: every statistic, recorded --------------------------------------------------------


def record_sizes(ctx: ComputeContext, data: MNIST) -> int:
    """Set sizes, image size, class count and chance level; returns the class count."""
    n_classes = int(torch.unique(data.train_labels).numel())
    ctx.metric("n_train", data.train_images.shape[0])
    ctx.metric("n_test", data.test_images.shape[0])
    ctx.metric("image_size", list(data.train_images.shape[1:]))
    ctx.metric("n_classes", n_classes)
    ctx.metric("chance", 1 / n_classes)
    ctx.metric("pixel_max", int(data.train_images.max()))
    return n_classes


def sample_grid(ctx: ComputeContext, data: MNIST) -> None:
    """One shuffled batch of grid x grid images, as a training loop would see it."""
    n = ctx.cfg.grid * ctx.cfg.grid
    images, labels = next(iterate_batches(data.train_images, data.train_labels, n,
                                          generator=ctx.streams.torch("sample_grid")))
    ctx.metric("samples_shown", len(images))
    ctx.array("sample_images", images.cpu().numpy().astype(np.uint8))
    ctx.array("sample_labels", labels.cpu().numpy().astype(np.uint8))


def class_balance(ctx: ComputeContext, data: MNIST, n_classes: int) -> None:
    """Class counts and shares of both sets and how far apart they are."""
    train_counts = torch.bincount(data.train_labels.cpu(), minlength=n_classes).numpy()
    test_counts = torch.bincount(data.test_labels.cpu(), minlength=n_classes).numpy()
    train_share = class_shares(data.train_labels, n_classes)
    test_share = class_shares(data.test_labels, n_classes)
    digit, difference = largest_share_difference(test_share, train_share)
    ctx.metric("train_counts", train_counts)
    ctx.metric("test_counts", test_counts)
    ctx.metric("most_common", int(train_counts.argmax()))
    ctx.metric("most_common_count", int(train_counts.max()))
    ctx.metric("least_common", int(train_counts.argmin()))
    ctx.metric("least_common_count", int(train_counts.min()))
    ctx.metric("imbalance_ratio", float(train_counts.max() / train_counts.min()))
    ctx.metric("min_class_share", float(min(train_share.min(), test_share.min())))
    ctx.metric("max_class_share", float(max(train_share.max(), test_share.max())))
    ctx.metric("share_gap_digit", digit)
    ctx.metric("share_gap", abs(difference))
    ctx.metric("share_gap_test_share", float(test_share[digit]))
    ctx.metric("share_gap_train_share", float(train_share[digit]))
    # Always answering the training set's most common digit: the floor any classifier must beat.
    ctx.metric("majority_test_accuracy", float(test_share[train_counts.argmax()]))


def pixel_values(ctx: ComputeContext, data: MNIST, n_classes: int) -> None:
    """Background, saturation and dark-ink shares, and the per-class value histograms."""
    cfg: Config = ctx.cfg
    train_x, train_y = data.train_images, data.train_labels
    dark_per_class, dark = dark_ink_share(train_x, train_y, cfg.half_ink, n_classes)
    ctx.metric("zero_share", float((train_x == 0).float().mean().item()))
    ctx.metric("saturated_share", float((train_x == 255).float().mean().item()))
    ctx.metric("dark_ink_share", dark)
    ctx.metric("dark_ink_share_per_class", dark_per_class)
    ctx.metric("dark_ink_lowest_class", int(dark_per_class.argmin()))
    ctx.metric("dark_ink_highest_class", int(dark_per_class.argmax()))
    ctx.metric("ink_near_binary", bool(dark >= cfg.binary_share))
    counts, zero_share = value_histograms(train_x, train_y, histogram_bins(cfg.hist_bins),
                                          n_classes)
    ctx.metric("zero_share_per_class", zero_share)
    ctx.array("pixel_histograms", counts)  # int64 [classes, hist_bins], values 1..255


def ink_amount(ctx: ComputeContext, data: MNIST, stats: dict[str, np.ndarray]) -> None:
    """Mean intensity and ink-pixel count per class, and the dimmest class's lead."""
    intensity = stats["intensity"]
    dimmest, next_dimmest, gap = dimmest_gap(intensity)
    ink = (data.train_images > 0).float().sum(dim=(1, 2))
    ctx.metric("intensity_per_class", intensity)
    ctx.metric("brightest_class", int(intensity.argmax()))
    ctx.metric("dimmest_class", dimmest)
    ctx.metric("brightest_intensity", float(intensity.max()))
    ctx.metric("dimmest_intensity", float(intensity.min()))
    ctx.metric("next_dimmest_class", next_dimmest)
    ctx.metric("dimmest_gap", gap)
    ink_per_class = np.array([ink[data.train_labels == d].mean().item()
                              for d in range(len(intensity))])
    ctx.metric("ink_pixels_mean", ink.mean().item())
    ctx.metric("ink_pixels_per_class", ink_per_class)
    ctx.metric("least_ink_class", int(ink_per_class.argmin()))
    ctx.metric("most_ink_class", int(ink_per_class.argmax()))
    ctx.array("class_means", stats["mean_images"].astype(np.float32))  # [classes, 28, 28]
    ctx.array("intensity_std", stats["intensity_std"])  # the bar chart's error bars


def ink_baseline(ctx: ComputeContext, data: MNIST, n_classes: int) -> None:
    """A classifier that sees only the amount of ink: fit on train, scored on test parts."""
    cfg: Config = ctx.cfg
    train_y = data.train_labels.cpu().numpy()
    test_y = data.test_labels.cpu().numpy()
    model = fit_ink_classifier(ink_features(data.train_images), train_y)
    predictions = model.predict(ink_features(data.test_images))
    recall = per_class_accuracy(test_y, predictions, n_classes=n_classes)
    parts = part_accuracies(test_y, predictions, cfg.ink_test_parts,
                            ctx.streams.numpy("ink_test_parts"))
    ctx.metric("ink_accuracy", accuracy(test_y, predictions))
    ctx.metric("ink_part_accuracies", parts)  # draw compares them with chance
    ctx.metric("ink_part_size", len(test_y) // cfg.ink_test_parts)
    ctx.metric("ink_class_recall", recall)
    ctx.metric("ink_best_class", int(np.nanargmax(recall)))
    ctx.metric("ink_never_predicted", sorted(set(range(n_classes)) - set(predictions.tolist())))


def dead_pixels(ctx: ComputeContext, data: MNIST) -> None:
    """Pixels that are zero in every image, where they sit, and the per-pixel std map."""
    cfg: Config = ctx.cfg
    train_x = data.train_images
    never_ink = (torch.cat([train_x, data.test_images]).amax(dim=0) == 0).cpu().numpy()
    ring = border_mask(*never_ink.shape, cfg.border_width)
    ctx.metric("pixels_zero_everywhere", int(never_ink.sum()))
    ctx.metric("pixels_zero_everywhere_train", int((train_x.amax(dim=0) == 0).sum()))
    ctx.metric("dead_on_border", int((never_ink & ring).sum()))
    ctx.metric("dead_on_border_share", share_on_border(never_ink, cfg.border_width))
    ctx.metric("border_pixels", int(ring.sum()))
    ctx.metric("border_area_share", float(ring.mean()))
    ctx.array("never_ink", never_ink)  # bool [28, 28]
    ctx.array("std_map", train_x.float().div(255).std(dim=0).cpu().numpy().astype(np.float32))


def normalisation(ctx: ComputeContext, data: MNIST) -> None:
    """The training set's pixel mean and std (scaled to [0, 1]) that every model uses."""
    train_float = data.train_images.float().div(255)
    ctx.metric("train_mean", train_float.mean().item())
    ctx.metric("train_std", train_float.std().item())


def original_resampling(ctx: ComputeContext, n_train: int) -> None:
    """Repeat the original's "whole training set" draw: batches drawn with replacement."""
    distinct = distinct_after_resampling(n_train, original.TRAIN_BATCHES, original.BATCH_SIZE,
                                         ctx.streams.numpy("original_resampling"))
    ctx.metric("original_draws", original.TRAIN_BATCHES * original.BATCH_SIZE)
    ctx.metric("original_distinct", distinct)
    ctx.metric("original_distinct_share", distinct / n_train)


def compute(ctx: ComputeContext) -> None:
    """Every statistic on the full training and test sets, with the arrays its figures need."""
    data = ctx.data
    n_classes = record_sizes(ctx, data)
    sample_grid(ctx, data)
    class_balance(ctx, data, n_classes)
    pixel_values(ctx, data, n_classes)
    ink_amount(ctx, data, pixel_stats(data.train_images, data.train_labels, n_classes))
    ink_baseline(ctx, data, n_classes)
    dead_pixels(ctx, data)
    normalisation(ctx, data)
    original_resampling(ctx, data.train_images.shape[0])


# --- draw: figures, the class table and the verdict -------------------------------------------


def plot_samples(ctx: DrawContext) -> None:
    """The sample grid with its labels."""
    labels = [str(int(v)) for v in ctx.array("sample_labels")]
    fig = digit_grid(ctx.array("sample_images"), labels, ncols=ctx.cfg.grid, size=0.9)
    ctx.figure("samples", fig)


def class_counts_table(ctx: DrawContext) -> None:
    """Images and shares per class in both sets."""
    train, test = (np.asarray(ctx.results[k]) for k in ("train_counts", "test_counts"))
    train_share, test_share = train / train.sum(), test / test.sum()
    ctx.table("class_counts", [
        {"digit": d, "train": int(train[d]), "train share": round(train_share[d], 4),
         "test": int(test[d]), "test share": round(test_share[d], 4)}
        for d in range(len(train))])


def plot_class_balance(ctx: DrawContext) -> None:
    """Bar chart of each class's share of the training and test sets."""
    m = ctx.results
    train, test = (np.asarray(m[k]) for k in ("train_counts", "test_counts"))
    n_classes = len(train)
    fig, axes = new_figure(7, 2.8)
    ax = axes[0, 0]
    width = 0.4
    ax.bar(np.arange(n_classes) - width / 2, train / train.sum(), width,
           label=f"train ({m['n_train']:,})", color=CLASS_COLORS[0])
    ax.bar(np.arange(n_classes) + width / 2, test / test.sum(), width,
           label=f"test ({m['n_test']:,})", color=CLASS_COLORS[1])
    ax.axhline(1 / n_classes, color="k", lw=0.8, ls="--",
               label=f"perfect balance ({1 / n_classes:.0%})")
    ax.set_xticks(range(n_classes))
    ax.set_xlabel("digit")
    ax.set_ylabel("share of the set")
    ax.legend(loc="lower right", ncols=3, fontsize=8)
    ctx.figure("class_balance", fig)


def plot_class_means(ctx: DrawContext) -> None:
    """The mean training image of each class."""
    means = ctx.array("class_means")
    fig = digit_grid(means, [f"mean {d}" for d in range(len(means))], ncols=5, cmap="magma",
                     vmin=0, vmax=1)
    ctx.figure("class_means", fig)


def plot_pixel_histograms(ctx: DrawContext) -> None:
    """Per class, the density of the non-zero pixel values on a log scale."""
    cfg: Config = ctx.cfg
    counts = ctx.array("pixel_histograms")
    zero_share = ctx.results["zero_share_per_class"]
    bins = histogram_bins(counts.shape[1])
    fig, axes = new_figure(9, 3.6, nrows=2, ncols=5, sharex=True, sharey=True)
    for digit, ax in enumerate(axes.flat[:len(counts)]):
        # What ax.hist(density=True) draws: counts over (total x bin width).
        density = counts[digit] / (counts[digit].sum() * np.diff(bins))
        ax.stairs(density, bins, fill=True, color=CLASS_COLORS[digit])
        ax.axvline(cfg.half_ink + 0.5, color="k", lw=0.6, ls="--")
        ax.set_title(f"{digit}: {100 * zero_share[digit]:.0f} % zeros", fontsize=8)
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    for ax in axes[1]:
        ax.set_xlabel("pixel value")
    for ax in axes[:, 0]:
        ax.set_ylabel("density")
    fig.tight_layout()
    ctx.figure("pixel_histograms", fig)


def plot_mean_intensity(ctx: DrawContext) -> None:
    """Mean intensity per class, with the std across that class's images."""
    intensity = ctx.results["intensity_per_class"]
    fig, axes = new_figure(7, 2.8)
    ax = axes[0, 0]
    ax.bar(range(len(intensity)), intensity, yerr=ctx.array("intensity_std"), capsize=3,
           color=[CLASS_COLORS[d] for d in range(len(intensity))])
    ax.set_xticks(range(len(intensity)))
    ax.set_xlabel("digit")
    ax.set_ylabel("mean pixel intensity (0-1)")
    ctx.figure("mean_intensity", fig)


def ink_verdict(ctx: DrawContext) -> None:
    """The ink-only classifier's test parts against chance, by the article's one rule."""
    chance = 1 / ctx.results["n_classes"]
    # The parts are disjoint samples of one fitted classifier's test predictions: the sentence
    # is about this classifier's test accuracy, which they estimate, not about the method.
    parts = Runs(ctx.results["ink_part_accuracies"], "test part")
    ctx.metric("ink_vs_chance", against(parts, chance, "chance").as_metric())


def plot_dead_pixels(ctx: DrawContext) -> None:
    """The always-zero pixels with the border ring marked, beside the per-pixel std map."""
    cfg: Config = ctx.cfg
    never_ink, std_map = ctx.array("never_ink"), ctx.array("std_map")
    images = ctx.results["n_train"] + ctx.results["n_test"]
    fig, axes = new_figure(6, 2.8, ncols=2)
    axes[0, 0].imshow(never_ink, cmap="gray_r", interpolation="nearest")
    inner = len(never_ink) - 2 * cfg.border_width
    axes[0, 0].add_patch(matplotlib.patches.Rectangle(
        (cfg.border_width - 0.5, cfg.border_width - 0.5), inner, inner, fill=False,
        edgecolor=CLASS_COLORS[3], lw=1, ls="--"))
    axes[0, 0].set_title(f"{int(never_ink.sum())} pixels are 0\nin all {images:,} images")
    im = axes[0, 1].imshow(std_map, cmap="viridis", interpolation="nearest")
    axes[0, 1].set_title("per-pixel std\nover the training set")
    fig.colorbar(im, ax=axes[0, 1], fraction=0.046)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    ctx.figure("dead_pixels", fig)


def draw(ctx: DrawContext) -> None:
    """Each statistic's figure, the class table and the ink-only verdict."""
    plot_samples(ctx)
    class_counts_table(ctx)
    plot_class_balance(ctx)
    plot_class_means(ctx)
    plot_pixel_histograms(ctx)
    plot_mean_intensity(ctx)
    ink_verdict(ctx)
    plot_dead_pixels(ctx)
