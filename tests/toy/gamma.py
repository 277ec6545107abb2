"""Toy analysis at the end of the chain alpha -> beta -> gamma."""

from __future__ import annotations

from report import Analysis, Context

ANALYSIS = Analysis(name="gamma", requires=("beta",))


def run(ctx: Context) -> None:
    """Read beta's metric."""
    ctx.metric("beta_sum_plus_one", ctx.metric_of("beta", "sum") + 1)
