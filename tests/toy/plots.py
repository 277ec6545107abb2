"""A presentation module of the toy project: only alpha's draw uses it."""

from __future__ import annotations

from matplotlib.figure import Figure


def line(values: object) -> Figure:
    """A tiny line plot (no pyplot: nothing global is touched)."""
    fig = Figure(figsize=(1, 1))
    fig.add_subplot().plot(values)
    return fig
