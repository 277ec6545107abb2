"""Toy analysis at the end of the chain alpha -> beta -> gamma."""

from __future__ import annotations

from report import Analysis, ComputeContext, DrawContext

ANALYSIS = Analysis(name="gamma", requires=("beta",))


def compute(ctx: ComputeContext) -> None:
    """Read beta's metric."""
    ctx.metric("beta_sum_plus_one", ctx.metric_of("beta", "sum") + 1)


def draw(ctx: DrawContext) -> None:
    """Nothing to draw."""
