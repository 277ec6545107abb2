"""Toy analysis that requires delta, whose quick profile is its full one."""

from __future__ import annotations

from report import Analysis, ComputeContext, DrawContext

ANALYSIS = Analysis(name="epsilon", requires=("delta",))


def compute(ctx: ComputeContext) -> None:
    """Double delta's count."""
    ctx.metric("twice_data_size", 2 * ctx.metric_of("delta", "data_size"))


def draw(ctx: DrawContext) -> None:
    """Nothing to draw."""
