"""Shared plotting helpers: one look for every figure, class colours, digit grids."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # headless: figures are only ever written to files

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# tab10: ten distinguishable colours, the matplotlib default for categorical data.
CLASS_COLORS: tuple[str, ...] = tuple(matplotlib.colormaps["tab10"].colors)
STYLE = {
    "figure.dpi": 110, "font.size": 9, "axes.titlesize": 10, "axes.spines.top": False,
    "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3, "legend.frameon": False,
}


def use_article_style() -> None:
    """Make STYLE matplotlib's default for this process (called once by build.py, not at import)."""
    matplotlib.rcParams.update(STYLE)


def new_figure(width: float = 7.0, height: float = 4.0, **subplots) -> tuple[Figure, np.ndarray]:
    """A figure in the article's style with a grid of axes (always returned as an array)."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(figsize=(width, height), squeeze=False, **subplots)
    return fig, axes


def digit_grid(images: np.ndarray, titles: Sequence[str] | None = None, ncols: int = 5,
               cmap: str = "gray_r", size: float = 1.3, vmin: float | None = None,
               vmax: float | None = None) -> Figure:
    """Images [n, 28, 28] in a grid, with an optional title above each."""
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = new_figure(size * ncols, size * nrows + (0.25 * nrows if titles else 0),
                           nrows=nrows, ncols=ncols)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig


def figure_to_rgb(fig: Figure, close: bool = True) -> np.ndarray:
    """Rasterise a figure to an RGB uint8 array (for GIF frames); close it unless `close` is
    False (to redraw the same figure once per frame: far cheaper than a new figure each)."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    rgb = rgba[..., :3].copy()
    if close:
        plt.close(fig)
    return rgb


def label_curve_axes(axes: np.ndarray) -> None:
    """Training-curve panels: accuracy (left) and log-scale loss (right) against whole epochs."""
    axes[0, 0].set_ylabel("accuracy")
    axes[0, 1].set_ylabel("cross-entropy loss")
    axes[0, 1].set_yscale("log")
    for ax in axes.flat:
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
