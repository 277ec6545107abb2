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


# Text readable on a phone. A figure is shown at the width of the article's column, which on a
# phone (a 390 px wide screen, less the page's margins) is PHONE_COLUMN_PX CSS pixels, so s points
# of text in a figure w inches wide show at s / 72 * PHONE_COLUMN_PX / w pixels, whatever the
# dpi. Figures made here raise their text towards MIN_TEXT_PX there (ReadableFigure): 7.7 points
# in a 5-inch figure, 13.9 in a 9-inch one (about 16 px on a desktop's column). 7.5 px rather
# than 7: the saved image is cropped to what is drawn (bbox_inches "tight"), and a legend or
# title outside the axes can make it several per cent wider than the figure, and its text that
# much smaller on the page.
PHONE_COLUMN_PX = 350
MIN_TEXT_PX = 7.5


def min_font_size(width: float) -> float:
    """The smallest font size (points) that shows at MIN_TEXT_PX or more on a phone in a figure
    `width` inches wide."""
    return MIN_TEXT_PX * 72 * width / PHONE_COLUMN_PX


class ReadableFigure(Figure):
    """A figure that raises its small text to `min_font_size` of its width, where it fits.

    On its first draw (when saved, or rasterised for a GIF frame), each text smaller than the
    floor (titles, axis labels, tick labels, legends, free text, the figure's own titles) is
    raised to it, the layout the drawing code asked for with `tight_layout` is made again for
    the new sizes, and each text that no longer fits its room is brought back down as far as
    needed, never below the size the code gave it: a title within its axes' width, an axis
    label within its axis, tick labels (where the code fixed the ticks) within the spacing of
    their ticks, a legend inside the axes it was placed in (or the figure, if anchored outside),
    free text within its axes. A figure whose text cannot grow there (long titles over narrow
    panels) keeps the sizes its code chose: those need a new layout in their own draw code.
    """

    _layout: dict | None = None  # the arguments of the drawing code's own tight_layout call
    _readable = False  # sizes settled (on the first draw)

    def tight_layout(self, **kwargs) -> None:
        self._layout = kwargs
        super().tight_layout(**kwargs)

    def draw(self, renderer) -> None:
        # Once: savefig draws the figure before cropping it to its tight bounding box, and that
        # first draw settles the sizes (later ones, such as GIF frames, keep them).
        if not self._readable:
            self._readable = True
            self._raise_text(renderer)
        super().draw(renderer)

    def _raise_text(self, renderer) -> None:
        items = list(_text_items(self))
        floor = min_font_size(self.get_figwidth())
        raised = False
        for item in items:
            if item.size < floor:
                item.set(floor)
                raised = True
        if not raised:
            return
        for _ in range(2):  # lay out, then bring back what no longer fits; twice
            if self._layout is not None:
                super().tight_layout(**self._layout)
            for item in items:
                item.fit(renderer)


class _Item:
    """A text (or a group drawn at one size: an axis's tick labels, a legend) and its room."""

    def __init__(self, texts, room, set_size=None):
        # Tick labels get their text when drawn: an empty text still counts here.
        self.texts = [t for t in texts if t is not None and t.get_visible()]
        self.room = room  # (renderer) -> (width, height) in pixels, None for unbounded
        self._set_size = set_size
        self.size = min((t.get_fontsize() for t in self.texts), default=float("inf"))
        self.current = self.size

    def set(self, size: float) -> None:
        self.current = size
        if self._set_size is not None:
            self._set_size(size)
        for text in self.texts:
            text.set_fontsize(size)

    def extent(self, renderer):
        boxes = [t.get_window_extent(renderer) for t in self.texts if t.get_text().strip()]
        if not boxes:
            return 0.0, 0.0
        return max(b.width for b in boxes), max(b.height for b in boxes)

    def fit(self, renderer) -> None:
        if not self.texts or self.current <= self.size:
            return
        width, height = self.extent(renderer)
        room_w, room_h = self.room(renderer)
        scale = min(room_w / width if room_w and width else 1.0,
                    room_h / height if room_h and height else 1.0)
        if scale < 1:
            self.set(max(self.size, self.current * scale * 0.97))


class _LegendItem(_Item):
    def __init__(self, legend, room):
        super().__init__([*legend.get_texts(), legend.get_title()], room)
        self.legend = legend

    def extent(self, renderer):
        box = self.legend.get_window_extent(renderer)
        return box.width, box.height


def _tick_room(ax, axis):
    """Room for one tick label along the axis: the smallest spacing of its ticks, if the code
    fixed them (an automatic locator thins the ticks itself when their labels grow)."""
    from matplotlib.ticker import FixedLocator

    def room(renderer):
        if not isinstance(axis.get_major_locator(), FixedLocator):
            return None, None
        horizontal = axis is ax.xaxis
        lo, hi = sorted(axis.get_view_interval())
        ticks = [t for t in axis.get_majorticklocs() if lo <= t <= hi]
        if len(ticks) < 2:
            return None, None
        pixels = sorted(axis.get_transform().transform(ticks))
        scale = ax.bbox.width if horizontal else ax.bbox.height
        span = abs(axis.get_transform().transform(hi) - axis.get_transform().transform(lo))
        gaps = np.diff(pixels) * scale / span if span else [0]
        gap = float(min(gaps)) * 0.9
        return (gap, None) if horizontal else (None, gap)
    return room


def _text_items(fig: Figure):
    """Every text of the figure with the room it may fill."""
    def within(box):
        return lambda renderer: (box().width, box().height)

    for ax in fig.axes:
        if getattr(ax, "name", "") == "3d":
            continue  # 3-D axes place their own labels
        axes_box = within(lambda ax=ax: ax.bbox)
        for title in (ax.title, ax._left_title, ax._right_title):
            yield _Item([title], lambda r, ax=ax: (ax.bbox.width, None))
        yield _Item([ax.xaxis.label], lambda r, ax=ax: (ax.bbox.width, None))
        yield _Item([ax.yaxis.label], lambda r, ax=ax: (None, ax.bbox.height))
        if ax.axison:
            for axis in (ax.xaxis, ax.yaxis):
                ticks = axis.get_major_ticks() + axis.get_minor_ticks()
                labels = [t.label1 for t in ticks] + [t.label2 for t in ticks]
                yield _Item(labels, _tick_room(ax, axis),
                            lambda size, axis=axis: axis.set_tick_params(which="both",
                                                                         labelsize=size))
        for text in ax.texts:
            yield _Item([text], axes_box)
        legend = ax.get_legend()
        if legend is not None:
            inside = legend._bbox_to_anchor is None  # placed in its axes, not anchored outside
            yield _LegendItem(legend, axes_box if inside else
                              (lambda r: (fig.bbox.width, None)))
    whole = lambda r: (fig.bbox.width, None)  # noqa: E731
    for text in (getattr(fig, "_suptitle", None), getattr(fig, "_supxlabel", None),
                 getattr(fig, "_supylabel", None), *fig.texts):
        if text is not None:
            yield _Item([text], whole if text is not getattr(fig, "_supylabel", None)
                        else (lambda r: (None, fig.bbox.height)))
    for legend in fig.legends:
        yield _LegendItem(legend, whole)


def use_article_style() -> None:
    """Make STYLE matplotlib's default for this process (called once by build.py, not at import)."""
    matplotlib.rcParams.update(STYLE)


def new_figure(width: float = 7.0, height: float = 4.0, **subplots) -> tuple[Figure, np.ndarray]:
    """A figure in the article's style with a grid of axes (always returned as an array); its
    text is readable on a phone (ReadableFigure)."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(figsize=(width, height), squeeze=False,
                                 FigureClass=ReadableFigure, **subplots)
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
