"""The one rule by which the article calls a difference real: ahead, behind or cannot separate.

Every comparative sentence on the page ("X beats Y", "helps", "ties") is rendered from a
`Comparison` made here, and `templates/partials/rule.html` states the same rule to the reader.

The rule: each side is a set of repeated results (seeds, cross-validation folds). Side A is
*ahead* of side B when A's mean minus A's standard deviation is above B's mean plus B's standard
deviation: the difference of the means exceeds the sum of the two spreads. *Behind* is the
mirror image; anything else *cannot separate*. A side with a single result has no measured
spread and borrows the other side's (it is assumed as noisy as the side we measured); with a
single result on both sides nothing is known about the noise, so the answer is always
*cannot separate*. With three seeds a side, the bar (sum of two standard deviations) is about
2.4 standard errors of the difference: strict enough that a tie is the usual answer for small
differences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

AHEAD, BEHIND, UNSEPARATED = "ahead", "behind", "cannot separate"


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (n-1; 0 for a single value), min, max and n."""

    mean: float
    std: float
    min: float
    max: float
    n: int


def summarize(values: Sequence[float]) -> Summary:
    """Mean ± sample std of repeated results (e.g. test accuracy over seeds)."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        raise ValueError("summarize needs at least one value")
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return Summary(float(array.mean()), std, float(array.min()), float(array.max()),
                   int(array.size))


@dataclass(frozen=True)
class Comparison:
    """The verdict on A against B, with what it rests on (for prose and site/data/)."""

    verdict: str  # AHEAD, BEHIND or UNSEPARATED, said of A
    difference: float  # mean(A) - mean(B)
    margin: float  # the spread the difference must exceed: spread(A) + spread(B)
    a: Summary
    b: Summary

    @property
    def separated(self) -> bool:
        """True when the verdict is ahead or behind."""
        return self.verdict != UNSEPARATED

    def as_metric(self) -> dict[str, Any]:
        """A JSON-friendly dict (what `ctx.metric` stores and the prose's `claim` filter reads)."""
        return {"verdict": self.verdict, "difference": self.difference, "margin": self.margin,
                "a": asdict(self.a), "b": asdict(self.b)}


def compare(a: Sequence[float], b: Sequence[float]) -> Comparison:
    """Ahead / behind / cannot separate for results `a` against results `b` (see module doc)."""
    values = [float(v) for v in [*a, *b]]
    if len(a) == 0 or len(b) == 0:
        raise ValueError("compare needs at least one result on each side")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"compare needs finite results, got {values}")
    sa, sb = summarize(a), summarize(b)
    spread_a = sa.std if sa.n > 1 else sb.std
    spread_b = sb.std if sb.n > 1 else sa.std
    difference = sa.mean - sb.mean
    margin = spread_a + spread_b
    if sa.n == 1 and sb.n == 1:
        verdict = UNSEPARATED
    elif difference > margin:
        verdict = AHEAD
    elif -difference > margin:
        verdict = BEHIND
    else:
        verdict = UNSEPARATED
    return Comparison(verdict, difference, margin, sa, sb)
