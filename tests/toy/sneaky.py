"""Toy analysis that loads from alpha without declaring it in requires: must be refused."""

from __future__ import annotations

from report import Analysis, ComputeContext, DrawContext

ANALYSIS = Analysis(name="sneaky")


def compute(ctx: ComputeContext) -> None:
    """Load an undeclared upstream's object."""
    ctx.metric("vector", ctx.load("alpha", "vector"))


def draw(ctx: DrawContext) -> None:
    """Nothing to draw."""
