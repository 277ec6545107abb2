"""Toy root analysis: metrics, an array and a saved object; drawn as a figure and a table.

Its compute imports toy.helpers; its draw imports toy.plots (a presentation module)."""

from __future__ import annotations

from dataclasses import dataclass

from report import Analysis, ComputeContext, DrawContext
from toy import helpers, plots


@dataclass(frozen=True)
class Config:
    """Knobs of the toy."""

    n: int = 4
    label: str = "alpha"


ANALYSIS = Analysis(name="alpha", config=Config(), quick={"n": 2})


def compute(ctx: ComputeContext) -> None:
    """Record n, a sum, a draw and a choice; keep the values as an array and a saved object."""
    cfg: Config = ctx.cfg
    values = list(range(cfg.n))
    ctx.metric("n", cfg.n)
    ctx.metric("total", helpers.double(sum(values)))
    ctx.metric("label", cfg.label)
    ctx.metric("draw", int(ctx.streams.numpy("draw").integers(0, 1_000_000)))
    ctx.choice("threshold", cfg.n // 2)  # a choice the build made, listed in the manifest
    ctx.array("values", values)
    ctx.save("vector", values)


def draw(ctx: DrawContext) -> None:
    """One small figure and a table of the values, and a derived number."""
    values = ctx.array("values")
    ctx.figure("line", plots.line(values), dpi=20)
    ctx.table("values", [{"i": int(i), "square": int(i * i)} for i in values])
    ctx.metric("squares_total", int((values ** 2).sum()))
