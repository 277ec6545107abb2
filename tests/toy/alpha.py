"""Toy root analysis: a figure, a table, metrics and a saved object; imports toy.helpers."""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.figure import Figure

from report import Analysis, Context
from toy import helpers


@dataclass(frozen=True)
class Config:
    """Knobs of the toy."""

    n: int = 4
    label: str = "alpha"


ANALYSIS = Analysis(name="alpha", config=Config(), quick={"n": 2})


def run(ctx: Context) -> None:
    """Record n, a sum, a draw, a choice, one small figure and a table; save a vector for beta."""
    cfg: Config = ctx.cfg
    values = list(range(cfg.n))
    ctx.metric("n", cfg.n)
    ctx.metric("total", helpers.double(sum(values)))
    ctx.metric("label", cfg.label)
    ctx.metric("draw", int(ctx.streams.numpy("draw").integers(0, 1_000_000)))
    ctx.choice("threshold", cfg.n // 2)  # a choice the build made, listed in the manifest
    fig = Figure(figsize=(1, 1))  # no pyplot: nothing global is touched
    fig.add_subplot().plot(values)
    ctx.figure("line", fig, dpi=20)
    ctx.table("values", [{"i": i, "square": i * i} for i in values])
    ctx.save("vector", values)
