"""Toy analysis independent of the others; it is the only toy that reads ctx.data."""

from __future__ import annotations

from report import Analysis, ComputeContext, DrawContext

ANALYSIS = Analysis(name="delta")


def compute(ctx: ComputeContext) -> None:
    """Record the size of the (toy) dataset."""
    ctx.metric("data_size", len(ctx.data))


def draw(ctx: DrawContext) -> None:
    """Nothing to draw."""
