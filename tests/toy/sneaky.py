"""Toy analysis that loads from alpha without declaring it in requires: must be refused."""

from __future__ import annotations

from report import Analysis, Context

ANALYSIS = Analysis(name="sneaky")


def run(ctx: Context) -> None:
    """Load an undeclared upstream's object."""
    ctx.metric("vector", ctx.load("alpha", "vector"))
