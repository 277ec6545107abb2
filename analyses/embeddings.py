"""Dimensionality reduction: PCA and t-SNE of the 70,000 digits, measured and explorable.

`compute` makes the maps and scores them with digits.embedding_quality (one way for every
section that draws a map, settings in its MAP_SCORING) and records the coordinates, the kNN
scores per fold and the trustworthiness per sample; `draw` makes every figure, table and
verdict from them, and the interactive map's files (format: digits/tsne_map.py) from the
recorded coordinates and the dataset's images.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from digits import embedding_quality as quality
from digits.data import MNIST
from digits.metrics import confusion_matrix, per_class_accuracy
from digits.plots import CLASS_COLORS, new_figure
from digits.sampling import disjoint_subsets, subset_index
from digits.tsne_map import GREY_LEVELS, encode_map_data, hex_color, morton_order, sprite_sheet_png
from report import Analysis, ComputeContext, DrawContext
from report.compare import Runs, compare, summarize


@dataclass(frozen=True)
class Config:
    """Knobs of the embeddings section; defaults embed all 70,000 train + test images.

    How a map is made and scored (PCA dimensions, perplexity, kNN neighbours and folds,
    trustworthiness neighbours) is not a knob: digits.embedding_quality.MAP_SCORING fixes it
    for every section that draws a map.
    """

    tsne_points: int = 70_000  # images embedded by t-SNE (a seeded subset when < 70,000)
    # "fft": interpolation-based gradients, O(n), the choice for 70,000 points; "bh":
    # Barnes-Hut, O(n log n) but cheaper below a few thousand points (the FFT grid has a fixed
    # cost: 45 ms per iteration for 500 points on 2 busy cores against ~1 ms with BH);
    # "auto": FFT above digits.embedding_quality.FFT_ABOVE points, else BH.
    tsne_gradients: str = "fft"
    # Threads for openTSNE and kNN; 0 = os.cpu_count() (openTSNE's own default is 1). On a
    # machine shared with other jobs, 1 can be several times faster for small runs.
    threads: int = 0
    knn_points: int = 70_000  # images scored by kNN (a seeded subset of the t-SNE points)
    trust_points: int = 2_000  # trustworthiness needs n x n distances: 2,000 -> 32 MB
    # Trustworthiness is measured on this many disjoint random samples of trust_points images
    # (shrunk to fit when the map has fewer than trust_repeats x trust_points), so that the
    # two maps are compared against the spread between samples.
    trust_repeats: int = 5
    confused_pairs: int = 8  # rows of the confused-pairs table
    components_shown: int = 12  # principal components drawn as 28 x 28 images
    scatter3d_points: int = 8_000  # points in the 3-D PCA view (more is an unreadable blob)
    thumb_grid: int = 32  # the thumbnail map is thumb_grid x thumb_grid cells
    sprite_sheet: int = 10_000  # thumbnails per sprite sheet PNG of the interactive map


ANALYSIS = Analysis(
    name="embeddings",
    requires=("dataset",),
    config=Config(),
    zero_means={"threads": "all cores"},  # what 0 means where it is not a count
    # t-SNE dominates: about 30 s for 5,000 points on 2 shared CPU cores, against minutes
    # for all 70,000 (and kNN on raw pixels grows with n^2). Five disjoint trustworthiness
    # samples of 1,000 fit in the 5,000 embedded points.
    quick={"tsne_points": 5_000, "knn_points": 5_000, "trust_points": 1_000},
)

SPACES = ("raw", "pca2", "pca50", "tsne")  # the spaces the kNN classifier scores, in table order
TSNE_ITERATIONS = 250 + 500  # openTSNE: early exaggeration, then the normal phase
TSNE_LOG_EVERY = 50  # iterations between t-SNE log lines
VARIANCE_LEVELS = (0.9, 0.95, 0.99)  # cumulative explained variance the PCA figure marks


def all_images(data: MNIST) -> tuple[np.ndarray, np.ndarray]:
    """Train then test images (uint8 [n, 28, 28]) and labels (int64), as numpy arrays."""
    images = torch.cat([data.train_images, data.test_images]).cpu().numpy()
    labels = torch.cat([data.train_labels, data.test_labels]).cpu().numpy().astype(np.int64)
    return images, labels


# --- compute: the maps and their scores ---------------------------------------------------------


class TsneLogger:
    """openTSNE callback: a log line every `every` iterations with KL divergence and time."""

    def __init__(self, ctx: ComputeContext, total: int, every: int):
        self.ctx, self.total, self.every = ctx, total, every
        self.done = 0
        self.start = time.perf_counter()

    def optimization_about_to_start(self) -> None:
        """Called by openTSNE at the start of each phase (early exaggeration, then normal)."""

    def __call__(self, iteration: int, error: float, embedding: np.ndarray) -> bool:
        self.done += self.every
        self.ctx.log(f"t-SNE iteration {self.done}/{self.total}, KL divergence {error:.3f}, "
                     f"{time.perf_counter() - self.start:.0f} s")
        return False  # never stop early


def pca_step(ctx: ComputeContext, pixels: np.ndarray) -> np.ndarray:
    """PCA of all images; records the variance ratios, the first components and the first
    three coordinates of every image; returns the first pca_dims coordinates (float32)."""
    dims = quality.MAP_SCORING.pca_dims
    ctx.log(f"PCA of {len(pixels):,} images x {pixels.shape[1]} pixels")
    with ctx.timer() as t_pca:
        pca = quality.fit_pca(pixels)
        projected = quality.project(pca, pixels, dims)
    ratio = pca.explained_variance_ratio_  # float32, like the pixels
    ctx.log(f"PCA done in {t_pca.seconds:.1f} s; the first {dims} components keep "
            f"{ratio[:dims].sum():.1%} of the variance")
    ctx.metric("pca_seconds", t_pca.seconds)
    ctx.metric("n_pixels", pixels.shape[1])
    ctx.array("pca_explained_ratio", ratio)
    ctx.array("pca_components", pca.components_[:ctx.cfg.components_shown].astype(np.float32))
    ctx.array("pca_coordinates", projected[:, :3])  # float32 [n, 3]: the scatter figures
    return projected


def tsne_step(ctx: ComputeContext, projected: np.ndarray,
              threads: int) -> tuple[np.ndarray, np.ndarray]:
    """openTSNE of (a seeded subset of) the images from PCA-50: indices and 2-D map."""
    cfg: Config = ctx.cfg
    tsne_idx = subset_index(len(projected), cfg.tsne_points, ctx.streams.torch("tsne_points"))
    m = len(tsne_idx)
    ctx.log(f"t-SNE of {m:,} images from {projected.shape[1]} PCA dims on {threads} threads "
            f"({cfg.tsne_gradients.upper()} gradients)")
    with ctx.timer() as t_tsne:
        embedding = quality.tsne_map(
            projected[tsne_idx], seed=ctx.streams.seed("tsne"), threads=threads,
            perplexity=quality.MAP_SCORING.perplexity, gradients=cfg.tsne_gradients,
            callbacks=TsneLogger(ctx, TSNE_ITERATIONS, TSNE_LOG_EVERY), every=TSNE_LOG_EVERY)
    ctx.log(f"t-SNE done in {t_tsne.seconds:.1f} s")
    ctx.metric("tsne_points", m)
    ctx.metric("tsne_all", m == len(projected))
    ctx.metric("tsne_seconds", t_tsne.seconds)
    ctx.metric("tsne_iterations", TSNE_ITERATIONS)
    ctx.array("tsne_index", tsne_idx.astype(np.uint32))  # positions in train + test
    ctx.array("tsne_xy", embedding.astype(np.float32))
    return tsne_idx, embedding


def knn_step(ctx: ComputeContext, pixels: np.ndarray, projected: np.ndarray,
             labels: np.ndarray, tsne_idx: np.ndarray, embedding: np.ndarray,
             threads: int) -> None:
    """kNN accuracy of four spaces on the same stratified folds of a seeded subset of the t-SNE
    points: per-fold accuracies, and what draw needs to say which digits it confuses."""
    pos = subset_index(len(tsne_idx), ctx.cfg.knn_points, ctx.streams.torch("knn_points"))
    rows = tsne_idx[pos]
    y = labels[rows]
    spaces = {"raw": pixels[rows], "pca2": projected[rows, :2], "pca50": projected[rows],
              "tsne": embedding[pos]}
    clock = [time.perf_counter()]

    def each(name: str, accuracies: np.ndarray) -> None:
        ctx.log(f"kNN in {name}: {accuracies.mean():.2%} ± {accuracies.std(ddof=1):.2%} over "
                f"folds ({time.perf_counter() - clock[0]:.1f} s)")
        clock[0] = time.perf_counter()

    # One seed for every space: the same folds, so the per-fold accuracies pair up.
    with ctx.timer() as t_knn:
        knn = quality.knn_scores(spaces, y, seed=ctx.streams.seed("knn_folds"),
                                 threads=threads, each=each)
    ctx.metric("knn_seconds", t_knn.seconds)
    ctx.metric("knn_points", len(pos))
    for key in SPACES:
        ctx.metric(f"knn_{key}_folds", knn.accuracies[key])
        ctx.array(f"knn_confusion_{key}", confusion_matrix(y, knn.predictions[key]))
    ctx.array("knn_index", pos.astype(np.uint32))  # positions among the t-SNE points
    ctx.array("knn_fold_of", knn.folds.astype(np.uint8))
    ctx.array("knn_tsne_predictions", knn.predictions["tsne"].astype(np.uint8))


def trust_step(ctx: ComputeContext, pixels: np.ndarray, projected: np.ndarray,
               tsne_idx: np.ndarray, embedding: np.ndarray) -> None:
    """Trustworthiness of PCA-2 and t-SNE-2 on disjoint random samples of the t-SNE points."""
    cfg: Config = ctx.cfg
    samples = disjoint_subsets(len(tsne_idx), cfg.trust_points, cfg.trust_repeats,
                               ctx.streams.torch("trust_samples"))
    # Only the sampled rows (10,000 at most), not a copy of every image's pixels.
    rows = np.concatenate(samples)
    ends = np.cumsum([len(s) for s in samples])
    local = [np.arange(end - len(s), end) for s, end in zip(samples, ends)]
    with ctx.timer() as t_trust:
        trust = quality.trustworthiness_samples(
            pixels[tsne_idx[rows]],
            {"pca2": projected[tsne_idx[rows], :2], "tsne": embedding[rows]}, local)
    ctx.log(f"trustworthiness on {len(samples)} x {len(samples[0]):,} images: "
            f"PCA-2 {trust['pca2'].mean():.3f}, t-SNE-2 {trust['tsne'].mean():.3f} "
            f"({t_trust.seconds:.1f} s)")
    ctx.metric("trust_points", len(samples[0]))
    ctx.metric("trust_repeats", len(samples))
    ctx.metric("trust_seconds", t_trust.seconds)
    for key, values in trust.items():
        ctx.metric(f"trust_{key}_samples", values)


def compute(ctx: ComputeContext) -> None:
    """PCA and t-SNE of every image, scored by kNN over folds and trustworthiness."""
    cfg: Config = ctx.cfg
    images, labels = all_images(ctx.data)
    pixels = images.reshape(len(images), -1).astype(np.float32) / 255
    threads = cfg.threads or os.cpu_count() or 1
    ctx.metric("n_images", len(images))
    ctx.metric("threads", threads)
    for name, value in dataclasses.asdict(quality.MAP_SCORING).items():
        ctx.metric(name, value)  # pca_dims, perplexity, knn_k, knn_folds, trust_k
    ctx.array("pixel_value_counts", np.bincount(images.reshape(-1), minlength=256))
    projected = pca_step(ctx, pixels)
    tsne_idx, embedding = tsne_step(ctx, projected, threads)
    knn_step(ctx, pixels, projected, labels, tsne_idx, embedding, threads)
    trust_step(ctx, pixels, projected, tsne_idx, embedding)


# --- draw: helpers ------------------------------------------------------------------------------


def point_size(n: int) -> float:
    """Marker area for a scatter of n points: dense clouds need tiny markers."""
    return float(np.clip(3e4 / n, 0.2, 6.0))


def class_scatter(ax, xy: np.ndarray, labels: np.ndarray, order: np.ndarray,
                  *, legend: bool = True) -> None:
    """Scatter coloured by class in a shuffled draw order, with digits written on the clusters."""
    import matplotlib.patheffects as pe

    colors = np.array(CLASS_COLORS)[labels[order]]
    ax.scatter(xy[order, 0], xy[order, 1], c=colors, s=point_size(len(xy)), linewidths=0,
               rasterized=True)
    for d in range(10):
        mask = labels == d
        if mask.any():
            cx, cy = np.median(xy[mask], axis=0)
            ax.text(cx, cy, str(d), fontsize=13, weight="bold", ha="center", va="center",
                    color=CLASS_COLORS[d], path_effects=[pe.withStroke(linewidth=3,
                                                                       foreground="white")])
    if legend:
        handles = [ax.scatter([], [], color=CLASS_COLORS[d], s=30, label=str(d))
                   for d in range(10)]
        ax.legend(handles=handles, title="digit", loc="center left", bbox_to_anchor=(1.0, 0.5),
                  fontsize=8, markerscale=1.0)
    ax.set_aspect("equal", adjustable="datalim")


def thumbnail_map(xy: np.ndarray, images: np.ndarray, labels: np.ndarray,
                  grid: int) -> np.ndarray:
    """RGB [rows*28, cols*28, 3], the longer side `grid` cells: in each cell the image nearest
    its centre, tinted by class (white where no image falls)."""
    lo = xy.min(axis=0)
    extent = xy.max(axis=0) - lo
    span = float(extent.max()) or 1.0
    # Square cells; the longer side of the map gets `grid` of them.
    shape = np.maximum(1, np.ceil(extent / span * grid - 1e-9)).astype(int)  # cells in x, y
    cell = np.minimum(((xy - lo) / span * grid).astype(int), shape - 1)
    centres = lo + (cell + 0.5) * span / grid
    dist = ((xy - centres) ** 2).sum(axis=1)
    flat = cell[:, 1] * shape[0] + cell[:, 0]
    canvas = np.ones((shape[1] * 28, shape[0] * 28, 3))
    order = np.lexsort((dist, flat))  # by cell, nearest first
    first = np.ones(len(order), bool)
    first[1:] = flat[order][1:] != flat[order][:-1]
    for i in order[first]:
        cx, cy = cell[i]
        row = shape[1] - 1 - cy  # y grows upwards, like the scatter
        ink = images[i].astype(np.float64)[..., None] / 255
        color = np.array(CLASS_COLORS[labels[i]])
        canvas[row * 28:(row + 1) * 28, cx * 28:(cx + 1) * 28] = 1 - ink * (1 - color)
    return (canvas * 255).round().astype(np.uint8)


def space_labels(pca_dims: int) -> dict[str, str]:
    """Metric key -> the name the page gives each space the kNN classifier scores."""
    return {"raw": "raw pixels", "pca2": "PCA-2", "pca50": f"PCA-{pca_dims}", "tsne": "t-SNE-2"}


def mean_pm_std(values: np.ndarray, scale: float = 1.0, digits: int = 4, unit: str = "") -> str:
    """'mean ± sample std' of repeated results, as a table cell."""
    summary = summarize(np.asarray(values, dtype=float))
    return f"{scale * summary.mean:.{digits}f} ± {scale * summary.std:.{digits}f}{unit}"


def class_fold_accuracies(y: np.ndarray, predictions: np.ndarray, folds: np.ndarray,
                          digit: int) -> np.ndarray:
    """Per-fold accuracy on the images of one digit."""
    mask = y == digit
    return quality.fold_accuracies(y[mask], predictions[mask], folds[mask])


# --- draw: PCA ----------------------------------------------------------------------------------


def pca_numbers(ctx: DrawContext, ratio: np.ndarray) -> None:
    """Components needed for each level of variance, and the variance of the first few."""
    counts = quality.cumulative_variance_counts(ratio, VARIANCE_LEVELS)
    ctx.metric("pca_levels", list(VARIANCE_LEVELS))
    for level, count in counts.items():
        ctx.metric(f"pca_n{round(100 * level)}", count)  # pca_n90, pca_n95, pca_n99
    ctx.metric("pca_var_pc1", float(ratio[0]))
    ctx.metric("pca_var_pc2", float(ratio[1]))
    ctx.metric("pca_var_2", float(ratio[:2].sum()))
    ctx.metric("pca_var_3", float(ratio[:3].sum()))
    ctx.metric("pca_var_50", float(ratio[:ctx.results["pca_dims"]].sum()))


def plot_pca_scatter(ctx: DrawContext, coords: np.ndarray, ratio: np.ndarray,
                     labels: np.ndarray) -> None:
    """Every image on the first two principal components."""
    order = ctx.streams.numpy("pca_scatter_order").permutation(len(coords))
    fig, axes = new_figure(7, 5.6)
    class_scatter(axes[0, 0], coords[:, :2], labels, order)
    axes[0, 0].set_xlabel(f"PC1 ({ratio[0]:.1%} of the variance)")
    axes[0, 0].set_ylabel(f"PC2 ({ratio[1]:.1%})")
    ctx.figure("pca_scatter", fig)


def plot_pca_3d(ctx: DrawContext, coords: np.ndarray, labels: np.ndarray) -> None:
    """A random sample on the first three principal components, from two angles."""
    from matplotlib.lines import Line2D

    sample = subset_index(len(coords), ctx.cfg.scatter3d_points,
                          ctx.streams.torch("pca_3d_points"))
    ctx.metric("scatter3d_points", len(sample))
    fig, axes = new_figure(9, 4.1, ncols=2)
    p = coords[sample, :3]
    # Clip the view to the 0.5-99.5 % range of each axis: a few outliers would shrink the cloud.
    limits = np.percentile(p, [0.5, 99.5], axis=0)
    handles = [Line2D([], [], ls="", marker="o", color=CLASS_COLORS[d], label=str(d))
               for d in range(10)]
    for k, (ax, (elev, azim)) in enumerate(zip(axes.flat, [(25, -60), (25, 30)])):
        fig.delaxes(ax)
        ax3 = fig.add_subplot(1, 2, k + 1, projection="3d")
        ax3.scatter(p[:, 0], p[:, 1], p[:, 2], c=np.array(CLASS_COLORS)[labels[sample]],
                    s=2, linewidths=0, depthshade=False, rasterized=True)
        ax3.set(xlim=limits[:, 0], ylim=limits[:, 1], zlim=limits[:, 2])
        ax3.view_init(elev=elev, azim=azim)
        ax3.set_box_aspect(None, zoom=0.82)  # leave room for the axis labels inside the panel
        ax3.set(xlabel="PC1", ylabel="PC2", zlabel="PC3")
        ax3.tick_params(labelsize=6, pad=0)
    fig.legend(handles=handles, loc="lower center", ncols=10, fontsize=8, title="digit")
    fig.subplots_adjust(left=0.0, right=1.0, top=1.0, bottom=0.1, wspace=0.0)
    ctx.figure("pca_3d", fig)


def plot_pca_variance(ctx: DrawContext, ratio: np.ndarray) -> None:
    """Cumulative explained variance against the number of components."""
    counts = quality.cumulative_variance_counts(ratio, VARIANCE_LEVELS)
    fig, axes = new_figure(7, 3.2)
    ax = axes[0, 0]
    ax.plot(np.arange(1, len(ratio) + 1), np.cumsum(ratio), color="k", lw=1.2)
    for (level, count), color in zip(counts.items(), CLASS_COLORS):
        ax.axhline(level, color=color, lw=0.8, ls="--")
        ax.axvline(count, color=color, lw=0.8, ls="--",
                   label=f"{level:.0%} of the variance: {count} components")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("number of principal components (log scale)")
    ax.set_ylabel("cumulative explained variance")
    ax.set_ylim(0, 1.02)
    ctx.figure("pca_variance", fig)


def plot_pca_components(ctx: DrawContext, components: np.ndarray, ratio: np.ndarray) -> None:
    """The first principal components as images."""
    shown = len(components)
    side = int(round(np.sqrt(components.shape[1])))
    rows = -(-shown // 6)
    fig, axes = new_figure(1.35 * 6, 1.5 * rows, nrows=rows, ncols=6)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < shown:
            comp = components[i].reshape(side, side)
            limit = float(np.abs(comp).max())
            ax.imshow(comp, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
            ax.set_title(f"PC{i + 1}: {ratio[i]:.1%}", fontsize=8)
    fig.tight_layout()
    ctx.figure("pca_components", fig)


# --- draw: the t-SNE map ------------------------------------------------------------------------


def plot_tsne_map(ctx: DrawContext, xy: np.ndarray, y: np.ndarray) -> None:
    """The t-SNE map coloured by digit (the static stand-in for the interactive map)."""
    order = ctx.streams.numpy("tsne_scatter_order").permutation(len(xy))
    fig, axes = new_figure(7, 6.2)
    class_scatter(axes[0, 0], xy, y, order)
    axes[0, 0].set_xlabel("t-SNE 1")
    axes[0, 0].set_ylabel("t-SNE 2")
    ctx.figure("tsne_map", fig)


def plot_tsne_axes(ctx: DrawContext, xy: np.ndarray, y: np.ndarray) -> None:
    """Each embedding axis stacked by digit, next to the raw pixel values (as the original)."""
    hist = ctx.array("pixel_value_counts")
    ctx.metric("pixel_zero_share", float(hist[0] / hist.sum()))
    fig, axes = new_figure(10, 3.0, ncols=3)
    axes[0, 0].bar(np.arange(256), hist / hist.sum(), width=1.0, color="0.3")
    axes[0, 0].set_yscale("log")
    axes[0, 0].set_xlabel("raw pixel value (all images)")
    axes[0, 0].set_ylabel("share of pixels")
    bins = np.linspace(xy.min(), xy.max(), 61)
    for k in range(2):
        ax = axes[0, k + 1]
        ax.hist([xy[y == d, k] for d in range(10)], bins=bins, stacked=True,
                color=CLASS_COLORS, label=[str(d) for d in range(10)])
        ax.set_xlabel(f"t-SNE axis {k + 1}")
        ax.set_ylabel("images")
    axes[0, 2].legend(title="digit", fontsize=7, ncols=2, loc="upper left",
                      bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    ctx.figure("tsne_axes", fig)


def small_multiples(ctx: DrawContext, xy: np.ndarray, y: np.ndarray,
                    per_class: np.ndarray, partner: list[int]) -> None:
    """The map once per digit, that digit in colour over the grey rest."""
    fig, axes = new_figure(10, 4.6, nrows=2, ncols=5)
    size = point_size(len(xy)) * 0.6
    pad = 0.03 * (xy.max(axis=0) - xy.min(axis=0))
    lo, hi = xy.min(axis=0) - pad, xy.max(axis=0) + pad
    for d, ax in enumerate(axes.flat):
        rest = y != d
        ax.scatter(xy[rest, 0], xy[rest, 1], c="0.82", s=size, linewidths=0, rasterized=True)
        ax.scatter(xy[~rest, 0], xy[~rest, 1], color=CLASS_COLORS[d], s=size, linewidths=0,
                   rasterized=True)
        title = f"{d}: kNN {per_class[d]:.1%}"
        if per_class[d] < 1:
            title += f", errors → {partner[d]}"
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        ax.set_aspect("equal", adjustable="box")
    fig.tight_layout()
    ctx.figure("tsne_small_multiples", fig)


def plot_thumbnails(ctx: DrawContext, xy: np.ndarray, images: np.ndarray,
                    y: np.ndarray) -> None:
    """The map drawn with the digits themselves, one image per grid cell."""
    thumbs = thumbnail_map(xy, images, y, ctx.cfg.thumb_grid)
    ctx.metric("thumb_columns", thumbs.shape[1] // 28)
    ctx.metric("thumb_rows", thumbs.shape[0] // 28)
    fig, axes = new_figure(8.2, 8.2 * thumbs.shape[0] / thumbs.shape[1])
    axes[0, 0].imshow(thumbs, interpolation="lanczos")
    axes[0, 0].axis("off")
    ctx.figure("tsne_thumbnails", fig)


def map_assets(ctx: DrawContext, xy: np.ndarray, images: np.ndarray, tsne_idx: np.ndarray,
               labels: np.ndarray, n_train: int) -> None:
    """The interactive map's files (points script, sprite sheets) and their sizes as metrics."""
    size = ctx.cfg.sprite_sheet
    m = len(tsne_idx)
    # Points as a script, thumbnails as 4-bit sprite sheets, both in Z-order so that a sheet
    # holds one region of the map.
    z = morton_order(xy)
    map_idx = tsne_idx[z]
    sheets, sheet_bytes = [], 0
    for s, start in enumerate(range(0, m, size)):
        png = sprite_sheet_png(images[map_idx[start:start + size]])
        sheets.append(f"map_sprites_{s}.png")
        ctx.asset(sheets[-1], png)
        sheet_bytes += len(png)
    script = encode_map_data(xy[z], labels[map_idx], map_idx, sheets=sheets, sheet_size=size,
                             n_train=n_train, colors=[hex_color(c) for c in CLASS_COLORS])
    ctx.asset("map_points.js", script)
    ctx.metric("map_points_bytes", len(script.encode()))
    ctx.metric("map_sprite_bytes", sheet_bytes)
    ctx.metric("map_sprite_sheets", len(sheets))
    ctx.metric("map_raw_thumb_bytes", m * 28 * 28)
    ctx.metric("map_bytes_per_thumb", sheet_bytes / m)
    ctx.metric("map_grey_levels", GREY_LEVELS)
    ctx.log(f"map assets: points {len(script) / 1e6:.2f} MB, {len(sheets)} sprite sheets "
            f"{sheet_bytes / 1e6:.2f} MB (raw 8-bit thumbnails would be {m * 784 / 1e6:.1f} MB)")


# --- draw: what each map keeps ------------------------------------------------------------------


def mean_scores(ctx: DrawContext) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-fold kNN accuracies and per-sample trustworthiness of each space, and their means."""
    fold_acc = {key: np.asarray(ctx.results[f"knn_{key}_folds"]) for key in SPACES}
    trust = {key: np.asarray(ctx.results[f"trust_{key}_samples"]) for key in ("pca2", "tsne")}
    for key, acc in fold_acc.items():
        ctx.metric(f"knn_{key}", float(acc.mean()))
    for key, values in trust.items():
        ctx.metric(f"trust_{key}", float(values.mean()))
    return fold_acc, trust


def record_comparisons(ctx: DrawContext, fold_acc: dict[str, np.ndarray],
                       trust: dict[str, np.ndarray]) -> None:
    """Every comparison the prose makes, through report.compare.

    kNN accuracy repeats over cross-validation folds (the same folds in every space).
    Trustworthiness repeats over disjoint samples of images of the two fixed maps: a statement
    about these two maps, not about t-SNE and PCA as methods (that would need maps made with
    other seeds).
    """
    folds = {key: Runs(acc, "fold") for key, acc in fold_acc.items()}
    samples = {key: Runs(values, "sample") for key, values in trust.items()}
    pairs = {"tsne_vs_raw": (folds["tsne"], folds["raw"]),
             "pca50_vs_raw": (folds["pca50"], folds["raw"]),
             "tsne_vs_pca2": (folds["tsne"], folds["pca2"]),
             "trust_tsne_vs_pca2": (samples["tsne"], samples["pca2"])}
    for name, (a, b) in pairs.items():
        ctx.metric(name, compare(a, b).as_metric())


def quality_table(ctx: DrawContext, fold_acc: dict[str, np.ndarray],
                  trust: dict[str, np.ndarray]) -> None:
    """One row per space: dimensions, kNN accuracy over folds, trustworthiness over samples."""
    m = ctx.results
    dims = {"raw": m["n_pixels"], "pca2": 2, "pca50": m["pca_dims"], "tsne": 2}
    ctx.table("knn_quality", [
        {"space": label, "dimensions": dims[key],
         "kNN accuracy": mean_pm_std(fold_acc[key], 100, 2, " %"),
         "trustworthiness": mean_pm_std(trust[key], 1, 4) if key in trust else "not measured"}
        for key, label in space_labels(m["pca_dims"]).items()])


def confusions(ctx: DrawContext, y_tsne: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """The pairs the kNN classifier on the t-SNE map confuses, and its accuracy per digit.

    Returns the per-digit accuracy and, per digit, the digit its errors go to most.
    """
    y = y_tsne[ctx.array("knn_index")]
    tsne = ctx.array("knn_tsne_predictions").astype(np.int64)
    folds = ctx.array("knn_fold_of").astype(np.int64)
    errors = {key: ctx.array(f"knn_confusion_{key}") for key in SPACES}
    pairs = quality.confused_pairs(y, tsne, top=ctx.cfg.confused_pairs)
    tsne_errors = int((tsne != y).sum())
    n_classes = len(errors["tsne"])
    ctx.metric("tsne_errors", tsne_errors)
    ctx.metric("class_pairs", n_classes * (n_classes - 1) // 2)
    ctx.metric("confused_pairs", [list(p) for p in pairs])
    ctx.metric("confused_top_share", sum(p[2] for p in pairs[:3]) / max(tsne_errors, 1))
    ctx.table("confused_pairs", [
        {"pair": f"{a} and {b}", "errors in t-SNE-2": count,
         "share of t-SNE-2 errors": round(count / max(tsne_errors, 1), 4),
         "errors in raw pixels": int(errors["raw"][a, b] + errors["raw"][b, a]),
         "errors in PCA-2": int(errors["pca2"][a, b] + errors["pca2"][b, a])}
        for a, b, count in pairs])

    per_class = per_class_accuracy(y, tsne, n_classes)
    off_diagonal = errors["tsne"].copy()
    np.fill_diagonal(off_diagonal, 0)
    partner = [int(off_diagonal[d].argmax()) for d in range(n_classes)]
    present = np.flatnonzero(~np.isnan(per_class))
    order = present[np.argsort(per_class[present], kind="stable")]  # weakest digit first
    ctx.metric("tsne_class_accuracy", per_class)
    ctx.metric("tsne_confused_with", partner)
    ctx.metric("tsne_worst_class", int(order[0]))
    ctx.metric("tsne_next_worst_class", int(order[1]))
    ctx.metric("tsne_best_class", int(order[-1]))
    ctx.metric("tsne_next_best_class", int(order[-2]))
    by_digit = {d: class_fold_accuracies(y, tsne, folds, d) for d in order[[0, 1, -2, -1]]}
    ctx.metric("tsne_worst_vs_next", compare(Runs(by_digit[order[0]], "fold"),
                                             Runs(by_digit[order[1]], "fold")).as_metric())
    ctx.metric("tsne_best_vs_next", compare(Runs(by_digit[order[-1]], "fold"),
                                            Runs(by_digit[order[-2]], "fold")).as_metric())
    return per_class, partner


def draw(ctx: DrawContext) -> None:
    """Every figure, table and verdict of the section, and the interactive map's files."""
    images, labels = all_images(ctx.data)
    ratio, coords = ctx.array("pca_explained_ratio"), ctx.array("pca_coordinates")
    tsne_idx = ctx.array("tsne_index").astype(np.int64)
    xy = ctx.array("tsne_xy").astype(np.float64)
    y = labels[tsne_idx]

    pca_numbers(ctx, ratio)
    plot_pca_scatter(ctx, coords, ratio, labels)
    plot_pca_3d(ctx, coords, labels)
    plot_pca_variance(ctx, ratio)
    plot_pca_components(ctx, ctx.array("pca_components"), ratio)

    plot_tsne_map(ctx, xy, y)
    plot_tsne_axes(ctx, xy, y)
    fold_acc, trust = mean_scores(ctx)
    record_comparisons(ctx, fold_acc, trust)
    quality_table(ctx, fold_acc, trust)
    per_class, partner = confusions(ctx, y)
    small_multiples(ctx, xy, y, per_class, partner)
    plot_thumbnails(ctx, xy, images[tsne_idx], y)
    map_assets(ctx, xy, images, tsne_idx, labels, len(ctx.data.train_images))
