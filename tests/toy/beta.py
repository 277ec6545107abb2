"""Toy analysis that requires alpha and loads its saved object; can fail or be interrupted."""

from __future__ import annotations

from dataclasses import dataclass

from report import Analysis, ComputeContext, DrawContext
from report.errors import UserError


@dataclass(frozen=True)
class Config:
    """fail: raise after writing a partial result; interrupt: raise KeyboardInterrupt;
    user_error: raise a UserError (a mistake the user fixes: no traceback); draw_fail: compute
    succeeds, draw raises."""

    fail: bool = False
    interrupt: bool = False
    user_error: bool = False
    draw_fail: bool = False


ANALYSIS = Analysis(name="beta", requires=("alpha",), config=Config())


def compute(ctx: ComputeContext) -> None:
    """Sum alpha's vector; optionally fail half-way."""
    vector = ctx.load("alpha", "vector")
    ctx.array("partial", [1])
    if ctx.cfg.fail:
        raise RuntimeError("beta broke on purpose")
    if ctx.cfg.interrupt:
        raise KeyboardInterrupt
    if ctx.cfg.user_error:
        raise UserError("beta needs the toy files; pass --data-dir TOY")
    ctx.metric("sum", sum(vector))
    ctx.metric("alpha_total", ctx.metric_of("alpha", "total"))


def draw(ctx: DrawContext) -> None:
    """A table and an asset; optionally fail after writing them."""
    ctx.table("partial", [{"x": int(v)} for v in ctx.array("partial")])
    ctx.asset("partial.txt", "written before any failure")
    if ctx.cfg.draw_fail:
        raise RuntimeError("beta's drawing broke on purpose")
