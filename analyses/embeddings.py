"""Dimensionality reduction: PCA and t-SNE of the 70,000 digits, measured and explorable."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from digits import embedding_quality as quality
from digits.data import MNIST
from digits.metrics import confusion_matrix, per_class_accuracy
from digits.plots import CLASS_COLORS, new_figure
from digits.sampling import disjoint_subsets, subset_index
from report import Analysis, Context
from report.compare import compare, summarize

if TYPE_CHECKING:
    from sklearn.decomposition import PCA


@dataclass(frozen=True)
class Config:
    """Knobs of the embeddings section; defaults embed all 70,000 train + test images."""

    tsne_points: int = 70_000  # images embedded by t-SNE (a seeded subset when < 70,000)
    pca_dims: int = 50  # PCA dimensions t-SNE starts from (also the "PCA-50" kNN space)
    perplexity: float = 30.0  # openTSNE's default
    # "fft": interpolation-based gradients, O(n), the choice for 70,000 points; "bh":
    # Barnes-Hut, O(n log n) but cheaper below a few thousand points (the FFT grid has a fixed
    # cost: 45 ms per iteration for 500 points on 2 busy cores against ~1 ms with BH).
    tsne_gradients: str = "fft"
    # Threads for openTSNE and kNN; 0 = os.cpu_count() (openTSNE's own default is 1). On a
    # machine shared with other jobs, 1 can be several times faster for small runs.
    threads: int = 0
    knn_k: int = 10  # neighbours of the kNN classifier that scores each space
    knn_folds: int = 5  # stratified cross-validation folds for that classifier
    knn_points: int = 70_000  # images scored by kNN (a seeded subset of the t-SNE points)
    trust_points: int = 2_000  # trustworthiness needs n x n distances: 2,000 -> 32 MB
    # Trustworthiness is measured on this many disjoint random samples of trust_points images
    # (shrunk to fit when the map has fewer than trust_repeats x trust_points), so that the
    # two maps are compared against the spread between samples.
    trust_repeats: int = 5
    trust_k: int = 10  # neighbourhood size of trustworthiness
    confused_pairs: int = 8  # rows of the confused-pairs table
    components_shown: int = 12  # principal components drawn as 28 x 28 images
    scatter3d_points: int = 8_000  # points in the 3-D PCA view (more is an unreadable blob)
    thumb_grid: int = 32  # the thumbnail map is thumb_grid x thumb_grid cells
    sprite_sheet: int = 10_000  # thumbnails per sprite sheet PNG of the interactive map


ANALYSIS = Analysis(
    name="embeddings",
    requires=("dataset",),
    config=Config(),
    # t-SNE dominates: about 30 s for 5,000 points on 2 shared CPU cores, against minutes
    # for all 70,000 (and kNN on raw pixels grows with n^2). Five disjoint trustworthiness
    # samples of 1,000 fit in the 5,000 embedded points.
    quick={"tsne_points": 5_000, "knn_points": 5_000, "trust_points": 1_000},
)

VARIANCE_LEVELS = (0.9, 0.95, 0.99)  # cumulative explained variance the PCA figure marks
SHEET_COLUMNS = 100  # thumbnails per row of a sprite sheet: a 10,000 sheet is 2,800 px square
GREY_LEVELS = 16  # thumbnails keep 16 grey levels (4-bit PNG): 6.8 MB instead of 11.6 MB for 70k
MAP_KEY = "tsne"
MAP_GLOBAL = "mnistMapData"


# --- the interactive map's data files ---------------------------------------------------------


def quantize_xy(xy: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """uint16 coordinates [n, 2] on one common scale (keeps the aspect), and [x0, y0, span]."""
    xy = np.asarray(xy, dtype=np.float64)
    lo = xy.min(axis=0)
    span = float((xy.max(axis=0) - lo).max()) or 1.0
    q = np.rint((xy - lo) / span * 65535).clip(0, 65535).astype(np.uint16)
    return q, [float(lo[0]), float(lo[1]), span]


def morton_order(xy: np.ndarray) -> np.ndarray:
    """Indices that sort points along a Z-order curve, so that nearby points stay together.

    The map stores points (and their thumbnails) in this order: each sprite sheet then covers
    a compact region, so pointing at one island loads one sheet instead of all of them.
    """
    q, _ = quantize_xy(xy)

    def spread(v: np.ndarray) -> np.ndarray:  # 16 bits -> every other bit of 32
        v = v.astype(np.uint64)
        for shift, mask in ((8, 0x00FF00FF), (4, 0x0F0F0F0F), (2, 0x33333333),
                            (1, 0x55555555)):
            v = (v | (v << np.uint64(shift))) & np.uint64(mask)
        return v

    code = spread(q[:, 0]) | (spread(q[:, 1]) << np.uint64(1))
    return np.argsort(code, kind="stable")


def encode_map_data(xy: np.ndarray, labels: np.ndarray, index: np.ndarray, *,
                    sheets: list[str], sheet_size: int, n_train: int,
                    colors: list[str]) -> str:
    """The map's points as a script that stores them in `window.mnistMapData.tsne`.

    A script, not JSON, because browsers refuse fetch() of local files (file:// pages).
    Binary part, little-endian, base64: index uint32[n] (position in train + test), then
    x uint16[n], y uint16[n], label uint8[n]: 9 bytes per point, every array aligned.
    """
    n = len(xy)
    q, bounds = quantize_xy(xy)
    blob = (np.asarray(index, dtype="<u4").tobytes() + q[:, 0].astype("<u2").tobytes()
            + q[:, 1].astype("<u2").tobytes() + np.asarray(labels, dtype=np.uint8).tobytes())
    header = {"version": 1, "n": n, "bounds": bounds, "n_train": n_train, "colors": colors,
              "sheets": sheets, "sheet_size": sheet_size, "sheet_columns": SHEET_COLUMNS,
              "thumb": 28, "data": base64.b64encode(blob).decode("ascii")}
    body = json.dumps(header, separators=(",", ":"))
    return (f"window.{MAP_GLOBAL}=window.{MAP_GLOBAL}||{{}};"
            f"window.{MAP_GLOBAL}[{json.dumps(MAP_KEY)}]={body};\n")


def decode_map_data(text: str) -> dict:
    """Inverse of encode_map_data: header fields plus index, xy (de-quantised) and labels."""
    match = re.search(r"\]=(\{.*\});\s*$", text, re.S)
    if not match:
        raise ValueError("not a map data script")
    header = json.loads(match.group(1))
    n = header["n"]
    blob = base64.b64decode(header.pop("data"))
    if len(blob) != 9 * n:
        raise ValueError(f"map data holds {len(blob)} bytes, expected {9 * n}")
    index = np.frombuffer(blob, "<u4", n, 0)
    qx = np.frombuffer(blob, "<u2", n, 4 * n)
    qy = np.frombuffer(blob, "<u2", n, 6 * n)
    labels = np.frombuffer(blob, np.uint8, n, 8 * n)
    x0, y0, span = header["bounds"]
    xy = np.stack([x0 + qx / 65535 * span, y0 + qy / 65535 * span], axis=1)
    return {**header, "index": index.copy(), "xy": xy, "labels": labels.copy()}


def sprite_sheet_png(images: np.ndarray) -> bytes:
    """Images uint8 [m, 28, 28] as one 4-bit grey PNG, SHEET_COLUMNS per row, ink dark on white."""
    m, h, w = images.shape
    rows = -(-m // SHEET_COLUMNS)
    sheet = np.zeros((rows * h, SHEET_COLUMNS * w), np.uint8)
    tiles = images.reshape(m, h, w)
    for i in range(m):
        r, c = divmod(i, SHEET_COLUMNS)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = tiles[i]
    levels = (sheet.astype(np.uint16) * (GREY_LEVELS - 1) + 127) // 255  # nearest of 16 levels
    from PIL import Image

    image = Image.fromarray(levels.astype(np.uint8), "P")
    # Palette index 0 = white paper ... 15 = black ink.
    step = 255 // (GREY_LEVELS - 1)
    image.putpalette([255 - i * step for i in range(GREY_LEVELS) for _ in range(3)])
    buffer = io.BytesIO()
    image.save(buffer, "PNG", optimize=True, bits=4)
    return buffer.getvalue()


def decode_sprite_sheet(png: bytes, count: int, size: int = 28) -> np.ndarray:
    """Inverse of sprite_sheet_png: uint8 ink images [count, size, size] (16 levels, 0..255)."""
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("L"))
    ink = 255 - rgb
    out = np.empty((count, size, size), np.uint8)
    for i in range(count):
        r, c = divmod(i, SHEET_COLUMNS)
        out[i] = ink[r * size:(r + 1) * size, c * size:(c + 1) * size]
    return out


def hex_color(rgb: tuple[float, ...]) -> str:
    """A matplotlib RGB tuple in [0, 1] as '#rrggbb'."""
    return "#" + "".join(f"{round(255 * v):02x}" for v in rgb[:3])


# --- figures ----------------------------------------------------------------------------------


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


# --- the analysis -----------------------------------------------------------------------------


class TsneLogger:
    """openTSNE callback: a log line every `every` iterations with KL divergence and time."""

    def __init__(self, ctx: Context, total: int, every: int):
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




# --- PCA --------------------------------------------------------------------------------------


def fit_pca(ctx: Context, pixels: np.ndarray) -> tuple[PCA, np.ndarray]:
    """PCA of all images and its metrics; returns the fitted PCA and the first pca_dims columns."""
    from sklearn.decomposition import PCA

    cfg: Config = ctx.cfg
    ctx.log(f"PCA of {len(pixels):,} images x {pixels.shape[1]} pixels")
    # Cheap: the eigenvectors of the 784 x 784 covariance (a second or two for 70,000 images).
    with ctx.timer() as t_pca:
        pca = PCA(svd_solver="covariance_eigh").fit(pixels)
        projected = pca.transform(pixels)[:, :cfg.pca_dims].astype(np.float32)
    ratio = pca.explained_variance_ratio_
    counts = quality.cumulative_variance_counts(ratio, VARIANCE_LEVELS)
    ctx.log(f"PCA done in {t_pca.seconds:.1f} s; components for {VARIANCE_LEVELS} of the "
            f"variance: {list(counts.values())}")
    ctx.metric("pca_seconds", t_pca.seconds)
    ctx.metric("pca_levels", list(VARIANCE_LEVELS))
    for level, count in counts.items():
        ctx.metric(f"pca_n{round(100 * level)}", count)  # pca_n90, pca_n95, pca_n99
    ctx.metric("pca_var_pc1", float(ratio[0]))
    ctx.metric("pca_var_pc2", float(ratio[1]))
    ctx.metric("pca_var_2", float(ratio[:2].sum()))
    ctx.metric("pca_var_3", float(ratio[:3].sum()))
    ctx.metric("pca_var_50", float(ratio[:cfg.pca_dims].sum()))
    ctx.metric("n_pixels", pixels.shape[1])
    return pca, projected


def plot_pca_scatter(ctx: Context, projected: np.ndarray, ratio: np.ndarray,
                     labels: np.ndarray) -> None:
    """Every image on the first two principal components."""
    order = ctx.streams.numpy("pca_scatter_order").permutation(len(projected))
    fig, axes = new_figure(7, 5.6)
    class_scatter(axes[0, 0], projected[:, :2], labels, order)
    axes[0, 0].set_xlabel(f"PC1 ({ratio[0]:.1%} of the variance)")
    axes[0, 0].set_ylabel(f"PC2 ({ratio[1]:.1%})")
    ctx.figure("pca_scatter", fig)


def plot_pca_3d(ctx: Context, projected: np.ndarray, labels: np.ndarray) -> None:
    """A random sample on the first three principal components, from two angles."""
    from matplotlib.lines import Line2D

    cfg: Config = ctx.cfg
    sample = subset_index(len(projected), cfg.scatter3d_points, ctx.streams.torch("pca_3d_points"))
    ctx.metric("scatter3d_points", len(sample))
    fig, axes = new_figure(9, 4.1, ncols=2)
    p = projected[sample, :3]
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


def plot_pca_variance(ctx: Context, ratio: np.ndarray) -> None:
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


def plot_pca_components(ctx: Context, pca: PCA) -> None:
    """The first principal components as images."""
    shown = ctx.cfg.components_shown
    side = int(round(np.sqrt(pca.components_.shape[1])))
    rows = -(-shown // 6)
    fig, axes = new_figure(1.35 * 6, 1.5 * rows, nrows=rows, ncols=6)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < shown:
            comp = pca.components_[i].reshape(side, side)
            limit = float(np.abs(comp).max())
            ax.imshow(comp, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
            ax.set_title(f"PC{i + 1}: {pca.explained_variance_ratio_[i]:.1%}", fontsize=8)
    fig.tight_layout()
    ctx.figure("pca_components", fig)


# --- t-SNE ------------------------------------------------------------------------------------


def fit_tsne(ctx: Context, projected: np.ndarray, threads: int) -> tuple[np.ndarray, np.ndarray]:
    """openTSNE of (a seeded subset of) the images from PCA-50: indices and 2-D embedding."""
    from openTSNE import TSNE

    cfg: Config = ctx.cfg
    if cfg.tsne_gradients not in ("fft", "bh"):
        raise ValueError(f"embeddings.tsne_gradients must be 'fft' or 'bh', not "
                         f"{cfg.tsne_gradients!r}")
    tsne_idx = subset_index(len(projected), cfg.tsne_points, ctx.streams.torch("tsne_points"))
    m = len(tsne_idx)
    iterations = 250 + 500  # openTSNE: early exaggeration, then the normal phase
    ctx.log(f"t-SNE of {m:,} images from {cfg.pca_dims} PCA dims on {threads} threads "
            f"({cfg.tsne_gradients.upper()} gradients)")
    tsne = TSNE(perplexity=cfg.perplexity, initialization="pca",
                negative_gradient_method=cfg.tsne_gradients, n_jobs=threads,
                random_state=ctx.streams.seed("tsne"), verbose=False,
                callbacks=TsneLogger(ctx, iterations, 50), callbacks_every_iters=50)
    with ctx.timer() as t_tsne:
        embedding = np.asarray(tsne.fit(projected[tsne_idx]), dtype=np.float64)
    ctx.log(f"t-SNE done in {t_tsne.seconds:.1f} s")
    ctx.metric("tsne_points", m)
    ctx.metric("tsne_all", m == len(projected))
    ctx.metric("tsne_seconds", t_tsne.seconds)
    ctx.metric("tsne_iterations", iterations)
    return tsne_idx, embedding


def plot_tsne_map(ctx: Context, embedding: np.ndarray, y: np.ndarray) -> None:
    """The t-SNE map coloured by digit (the static stand-in for the interactive map)."""
    order = ctx.streams.numpy("tsne_scatter_order").permutation(len(embedding))
    fig, axes = new_figure(7, 6.2)
    class_scatter(axes[0, 0], embedding, y, order)
    axes[0, 0].set_xlabel("t-SNE 1")
    axes[0, 0].set_ylabel("t-SNE 2")
    ctx.figure("tsne_map", fig)


def plot_tsne_axes(ctx: Context, images: np.ndarray, embedding: np.ndarray,
                   y: np.ndarray) -> None:
    """Each embedding axis stacked by digit, next to the raw pixel values (as the original)."""
    hist = np.bincount(images.reshape(-1), minlength=256)
    ctx.metric("pixel_zero_share", float(hist[0] / hist.sum()))
    fig, axes = new_figure(10, 3.0, ncols=3)
    axes[0, 0].bar(np.arange(256), hist / hist.sum(), width=1.0, color="0.3")
    axes[0, 0].set_yscale("log")
    axes[0, 0].set_xlabel("raw pixel value (all images)")
    axes[0, 0].set_ylabel("share of pixels")
    bins = np.linspace(embedding.min(), embedding.max(), 61)
    for k in range(2):
        ax = axes[0, k + 1]
        ax.hist([embedding[y == d, k] for d in range(10)], bins=bins, stacked=True,
                color=CLASS_COLORS, label=[str(d) for d in range(10)])
        ax.set_xlabel(f"t-SNE axis {k + 1}")
        ax.set_ylabel("images")
    axes[0, 2].legend(title="digit", fontsize=7, ncols=2, loc="upper left",
                      bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    ctx.figure("tsne_axes", fig)


# --- measured quality -------------------------------------------------------------------------


def space_labels(cfg: Config) -> dict[str, str]:
    """Metric key -> the name the page gives each space the kNN classifier scores."""
    return {"raw": "raw pixels", "pca2": "PCA-2", "pca50": f"PCA-{cfg.pca_dims}",
            "tsne": "t-SNE-2"}


def score_knn(ctx: Context, pixels: np.ndarray, projected: np.ndarray, tsne_idx: np.ndarray,
              embedding: np.ndarray, y: np.ndarray, threads: int
              ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray]:
    """kNN accuracy of four spaces on the same stratified folds of a seeded subset.

    Returns the subset (positions in the t-SNE points), the out-of-fold predictions and the
    per-fold accuracies of each space, and the fold of each scored image.
    """
    cfg: Config = ctx.cfg
    pos = subset_index(len(tsne_idx), cfg.knn_points, ctx.streams.torch("knn_points"))
    knn_y = y[pos]
    spaces = {"raw": pixels[tsne_idx[pos]], "pca2": projected[tsne_idx[pos], :2],
              "pca50": projected[tsne_idx[pos]], "tsne": embedding[pos]}
    # One seed for every space: the same folds, so the per-fold accuracies are comparable.
    seed = ctx.streams.seed("knn_folds")
    folds = quality.stratified_folds(knn_y, cfg.knn_folds, seed)
    labels = space_labels(cfg)
    predictions, fold_acc = {}, {}
    with ctx.timer() as t_knn:
        for key, features in ctx.progress(spaces.items(), desc="kNN", total=len(spaces)):
            with ctx.timer() as t:
                predictions[key] = quality.knn_cv_predict(
                    features, knn_y, k=cfg.knn_k, folds=cfg.knn_folds, seed=seed,
                    n_jobs=threads)
            fold_acc[key] = quality.fold_accuracies(knn_y, predictions[key], folds)
            ctx.log(f"kNN in {labels[key]}: {fold_acc[key].mean():.2%} ± "
                    f"{fold_acc[key].std(ddof=1):.2%} over folds ({t.seconds:.1f} s)")
    ctx.metric("knn_seconds", t_knn.seconds)
    ctx.metric("knn_points", len(pos))
    for key, acc in fold_acc.items():
        ctx.metric(f"knn_{key}", float(acc.mean()))
        ctx.metric(f"knn_{key}_folds", acc)
    return pos, predictions, fold_acc, folds


def score_trust(ctx: Context, pixels: np.ndarray, projected: np.ndarray, tsne_idx: np.ndarray,
                embedding: np.ndarray) -> dict[str, np.ndarray]:
    """Trustworthiness of PCA-2 and t-SNE-2 on disjoint random samples of the t-SNE points."""
    cfg: Config = ctx.cfg
    samples = disjoint_subsets(len(tsne_idx), cfg.trust_points, cfg.trust_repeats,
                                       ctx.streams.torch("trust_samples"))
    trust = {"pca2": [], "tsne": []}
    with ctx.timer() as t_trust:
        for pos in samples:
            high = pixels[tsne_idx[pos]]
            trust["pca2"].append(quality.trustworthiness(
                high, projected[tsne_idx[pos], :2], k=cfg.trust_k))
            trust["tsne"].append(quality.trustworthiness(high, embedding[pos], k=cfg.trust_k))
    trust = {key: np.array(values) for key, values in trust.items()}
    ctx.log(f"trustworthiness on {len(samples)} x {len(samples[0]):,} images: "
            f"PCA-2 {trust['pca2'].mean():.3f}, t-SNE-2 {trust['tsne'].mean():.3f} "
            f"({t_trust.seconds:.1f} s)")
    ctx.metric("trust_points", len(samples[0]))
    ctx.metric("trust_repeats", len(samples))
    ctx.metric("trust_seconds", t_trust.seconds)
    for key, values in trust.items():
        ctx.metric(f"trust_{key}", float(values.mean()))
        ctx.metric(f"trust_{key}_samples", values)
    return trust


def record_comparisons(ctx: Context, fold_acc: dict[str, np.ndarray],
                       trust: dict[str, np.ndarray]) -> None:
    """Every comparison the prose makes, through report.compare (which takes lists)."""
    pairs = {"tsne_vs_raw": (fold_acc["tsne"], fold_acc["raw"]),
             "pca50_vs_raw": (fold_acc["pca50"], fold_acc["raw"]),
             "tsne_vs_pca2": (fold_acc["tsne"], fold_acc["pca2"]),
             "trust_tsne_vs_pca2": (trust["tsne"], trust["pca2"])}
    for name, (a, b) in pairs.items():
        ctx.metric(name, compare(list(a), list(b)).as_metric())


def mean_pm_std(values: np.ndarray, scale: float = 1.0, digits: int = 4, unit: str = "") -> str:
    """'mean ± sample std' of repeated results, as a table cell."""
    summary = summarize(np.asarray(values, dtype=float))
    return f"{scale * summary.mean:.{digits}f} ± {scale * summary.std:.{digits}f}{unit}"


def quality_table(ctx: Context, n_pixels: int, fold_acc: dict[str, np.ndarray],
                  trust: dict[str, np.ndarray]) -> None:
    """One row per space: dimensions, kNN accuracy over folds, trustworthiness over samples."""
    cfg: Config = ctx.cfg
    dims = {"raw": n_pixels, "pca2": 2, "pca50": cfg.pca_dims, "tsne": 2}
    ctx.table("knn_quality", [
        {"space": label, "dimensions": dims[key],
         "kNN accuracy": mean_pm_std(fold_acc[key], 100, 2, " %"),
         "trustworthiness": mean_pm_std(trust[key], 1, 4) if key in trust else "not measured"}
        for key, label in space_labels(cfg).items()])


def class_fold_accuracies(y: np.ndarray, predictions: np.ndarray, folds: np.ndarray,
                          digit: int) -> np.ndarray:
    """Per-fold accuracy on the images of one digit."""
    mask = y == digit
    return quality.fold_accuracies(y[mask], predictions[mask], folds[mask])


def confusions(ctx: Context, y: np.ndarray, predictions: dict[str, np.ndarray],
               folds: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """The pairs the kNN classifier on the t-SNE map confuses, and its accuracy per digit.

    Returns the per-digit accuracy and, per digit, the digit its errors go to most.
    """
    cfg: Config = ctx.cfg
    tsne = predictions["tsne"]
    pairs = quality.confused_pairs(y, tsne, top=cfg.confused_pairs)
    errors = {key: confusion_matrix(y, p) for key, p in predictions.items()}
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
    ctx.metric("tsne_worst_vs_next",
               compare(list(by_digit[order[0]]), list(by_digit[order[1]])).as_metric())
    ctx.metric("tsne_best_vs_next",
               compare(list(by_digit[order[-1]]), list(by_digit[order[-2]])).as_metric())
    return per_class, partner


# --- the map, drawn -----------------------------------------------------------------------------


def small_multiples(ctx: Context, embedding: np.ndarray, y: np.ndarray,
                    per_class: np.ndarray, partner: list[int]) -> None:
    """The map once per digit, that digit in colour over the grey rest."""
    fig, axes = new_figure(10, 4.6, nrows=2, ncols=5)
    size = point_size(len(embedding)) * 0.6
    pad = 0.03 * (embedding.max(axis=0) - embedding.min(axis=0))
    lo, hi = embedding.min(axis=0) - pad, embedding.max(axis=0) + pad
    for d, ax in enumerate(axes.flat):
        rest = y != d
        ax.scatter(embedding[rest, 0], embedding[rest, 1], c="0.82", s=size, linewidths=0,
                   rasterized=True)
        ax.scatter(embedding[~rest, 0], embedding[~rest, 1], color=CLASS_COLORS[d], s=size,
                   linewidths=0, rasterized=True)
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


def plot_thumbnails(ctx: Context, embedding: np.ndarray, images: np.ndarray,
                    y: np.ndarray) -> None:
    """The map drawn with the digits themselves, one image per grid cell."""
    thumbs = thumbnail_map(embedding, images, y, ctx.cfg.thumb_grid)
    ctx.metric("thumb_columns", thumbs.shape[1] // 28)
    ctx.metric("thumb_rows", thumbs.shape[0] // 28)
    fig, axes = new_figure(8.2, 8.2 * thumbs.shape[0] / thumbs.shape[1])
    axes[0, 0].imshow(thumbs, interpolation="lanczos")
    axes[0, 0].axis("off")
    ctx.figure("tsne_thumbnails", fig)


def map_assets(ctx: Context, embedding: np.ndarray, images: np.ndarray, tsne_idx: np.ndarray,
               labels: np.ndarray, n_train: int) -> None:
    """The interactive map's files (points script, sprite sheets) and their sizes as metrics."""
    cfg: Config = ctx.cfg
    m, y = len(tsne_idx), labels[tsne_idx]
    # Points as a script, thumbnails as 4-bit sprite sheets, both in Z-order so that a sheet
    # holds one region of the map.
    z = morton_order(embedding)
    map_idx = tsne_idx[z]
    sheets, sheet_bytes = [], 0
    for s, start in enumerate(ctx.progress(range(0, m, cfg.sprite_sheet), desc="sprites",
                                            total=-(-m // cfg.sprite_sheet))):
        png = sprite_sheet_png(images[map_idx[start:start + cfg.sprite_sheet]])
        name = f"map_sprites_{s}.png"
        ctx.asset(name, png)
        sheets.append(name)
        sheet_bytes += len(png)
    script = encode_map_data(embedding[z], y[z], map_idx, sheets=sheets,
                             sheet_size=cfg.sprite_sheet, n_train=n_train,
                             colors=[hex_color(c) for c in CLASS_COLORS])
    ctx.asset("map_points.js", script)
    ctx.metric("map_points_bytes", len(script.encode()))
    ctx.metric("map_sprite_bytes", sheet_bytes)
    ctx.metric("map_sprite_sheets", len(sheets))
    ctx.metric("map_raw_thumb_bytes", m * 28 * 28)
    ctx.metric("map_bytes_per_thumb", sheet_bytes / m)
    ctx.metric("map_grey_levels", GREY_LEVELS)
    ctx.log(f"map assets: points {len(script) / 1e6:.2f} MB, {len(sheets)} sprite sheets "
            f"{sheet_bytes / 1e6:.2f} MB (raw 8-bit thumbnails would be {m * 784 / 1e6:.1f} MB)")


def all_images(data: MNIST) -> tuple[np.ndarray, np.ndarray]:
    """Train then test images (uint8 [n, 28, 28]) and labels (int64), as numpy arrays."""
    images = torch.cat([data.train_images, data.test_images]).cpu().numpy()
    labels = torch.cat([data.train_labels, data.test_labels]).cpu().numpy().astype(np.int64)
    return images, labels


def run(ctx: Context) -> None:
    """PCA and t-SNE of every image, their figures, kNN and trustworthiness, the map's data."""
    cfg: Config = ctx.cfg
    images, labels = all_images(ctx.data)
    pixels = images.reshape(len(images), -1).astype(np.float32) / 255
    threads = cfg.threads or os.cpu_count() or 1
    ctx.metric("n_images", len(images))
    ctx.metric("threads", threads)

    pca, projected = fit_pca(ctx, pixels)
    plot_pca_scatter(ctx, projected, pca.explained_variance_ratio_, labels)
    plot_pca_3d(ctx, projected, labels)
    plot_pca_variance(ctx, pca.explained_variance_ratio_)
    plot_pca_components(ctx, pca)

    tsne_idx, embedding = fit_tsne(ctx, projected, threads)
    y = labels[tsne_idx]
    plot_tsne_map(ctx, embedding, y)
    plot_tsne_axes(ctx, images, embedding, y)

    knn_pos, predictions, fold_acc, folds = score_knn(ctx, pixels, projected, tsne_idx,
                                                      embedding, y, threads)
    trust = score_trust(ctx, pixels, projected, tsne_idx, embedding)
    record_comparisons(ctx, fold_acc, trust)
    quality_table(ctx, pixels.shape[1], fold_acc, trust)
    per_class, partner = confusions(ctx, y[knn_pos], predictions, folds)

    small_multiples(ctx, embedding, y, per_class, partner)
    plot_thumbnails(ctx, embedding, images[tsne_idx], y)
    map_assets(ctx, embedding, images, tsne_idx, labels, len(ctx.data.train_images))
