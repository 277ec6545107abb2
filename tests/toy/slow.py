"""Toy analysis that can block mid-run, to kill or interrupt a build while it works.

With $TOY_BLOCK_DIR set it writes an array (a partial result in its staging folder), then
`started-<pid>` in that folder, and waits until a file `release` appears there (60 s at most).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from report import Analysis, ComputeContext, DrawContext


@dataclass(frozen=True)
class Config:
    """version: changes the cache key without changing the code."""

    version: int = 1


ANALYSIS = Analysis(name="slow", requires=("alpha",), config=Config())


def compute(ctx: ComputeContext) -> None:
    """Optionally block until released, then record the version."""
    ctx.array("partial", [1])  # written before blocking
    block = os.environ.get("TOY_BLOCK_DIR")
    if block:
        Path(block, f"started-{os.getpid()}").write_text("")
        deadline = time.monotonic() + 60
        while not Path(block, "release").exists():
            if time.monotonic() > deadline:
                raise TimeoutError("the test never released the slow toy")
            time.sleep(0.02)
    ctx.metric("version", ctx.cfg.version)
    ctx.metric("n_alpha", ctx.metric_of("alpha", "n"))


def draw(ctx: DrawContext) -> None:
    """Nothing to draw."""
