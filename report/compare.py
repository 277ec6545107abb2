"""The one rule by which the article calls a difference real: ahead, behind or cannot separate.

Every comparative sentence on the page ("X beats Y", "helps", "ties") is rendered from a
`Comparison` made here, and `templates/partials/rule.html` states the same rule to the reader.

A side of a comparison is `Runs(values, unit)`: independent repeats of one measurement and what
was repeated (`UNITS`: seeds, cross-validation folds, ...). Side A is *ahead* of side B when A's
mean minus A's standard deviation is above B's mean plus B's standard deviation: the difference
of the means exceeds the sum of the two spreads. *Behind* is the mirror image; anything else
*cannot separate*. The answer is also *cannot separate*, whatever the difference, when the
spreads do not measure the noise:

- a side has a single run: its noise is unknown (nothing is borrowed from the other side);
- the runs of both sides are all equal (or, against a fixed number, the side's runs are): a
  combined spread of zero measures no noise and would make any difference "separated". One
  flat side beside a side with spread is decided by that spread (a network stuck at chance on
  every seed is still behind one that learns, when the learning side's noise says so);
- the two sides repeat different units (seeds against folds): their spreads measure
  different noises;
- the unit is not an independent repeat at all (`Unit.repeats` is False): the ten classes of
  one model, noise draws of one trained generator, snapshots of one training run.

`against(a, value, label)` asks the other question, a set of runs against a fixed number
(chance level, the original post's published accuracy): the number has no spread, so A is ahead
when mean(A) - sd(A) > value, under the same conditions on A. `incomparable(a, b, why)` records
that two sides are not compared at all (different training or test sets), with the reason.

With three seeds a side, the bar (sum of two standard deviations) is about 2.4 standard errors
of the difference: strict enough that a tie is the usual answer for small differences.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

AHEAD, BEHIND, UNSEPARATED = "ahead", "behind", "cannot separate"

# What decided a comparison: the spreads (BY_SPREAD), or why they could not (the others, all
# UNSEPARATED).
BY_SPREAD = "spreads"
ONE_RUN = "one run"
ZERO_SPREAD = "zero spread"
UNITS_DIFFER = "different units"
NOT_REPEATS = "not repeats"
NOT_COMPARABLE = "not comparable"


@dataclass(frozen=True)
class Unit:
    """What one value of a side is: its name, its plural, and whether values are independent
    repeats (`repeats`); `why` says, for the others, why they are not."""

    name: str
    plural: str
    repeats: bool = True
    why: str = ""


# The closed vocabulary of what may be repeated. A sample-level unit ("test part", "sample",
# "image") repeats the measurement of one fixed, trained model: a sentence resting on it is
# about that model, not about the method that trained it (that needs seeds).
UNITS: dict[str, Unit] = {u.name: u for u in (
    Unit("seed", "seeds"),  # independent training runs, each with its own seed
    Unit("fold", "folds"),  # cross-validation folds
    Unit("probe", "probes"),  # independent measurements, each from fresh weights and a batch
    Unit("timed run", "timed runs"),  # repeated timings of the same work
    Unit("test part", "disjoint test parts"),  # one fitted model scored on disjoint test parts
    Unit("sample", "disjoint samples"),  # one fixed map scored on disjoint samples of images
    Unit("image", "images"),  # one fixed model measured image by image
    Unit("class", "classes", repeats=False,
         why="the ten classes are different digits measured on one trained model, not "
             "independent runs"),
    Unit("noise draw", "noise draws", repeats=False,
         why="the noise draws all come from one trained generator, not from independent "
             "runs"),
    Unit("snapshot", "snapshots", repeats=False,
         why="snapshots of one training run follow each other, they are not independent "
             "runs"),
)}


def unit_of(name: str) -> Unit:
    """The unit called `name` (ValueError naming the vocabulary for any other)."""
    try:
        return UNITS[name]
    except KeyError:
        raise ValueError(f"unknown unit {name!r}: say what was repeated, one of "
                         f"{sorted(UNITS)}") from None


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


@dataclass(frozen=True, init=False)
class Runs:
    """One side of a comparison: the values of independent repeats and what was repeated."""

    values: tuple[float, ...]
    unit: str

    def __init__(self, values: Iterable[float], unit: str) -> None:
        found = tuple(float(v) for v in values)
        if not found:
            raise ValueError("Runs needs at least one value")
        if not all(math.isfinite(v) for v in found):
            raise ValueError(f"Runs needs finite values, got {list(found)}")
        unit_of(unit)  # a known unit, or ValueError
        object.__setattr__(self, "values", found)
        object.__setattr__(self, "unit", unit)

    @property
    def n(self) -> int:
        """How many runs."""
        return len(self.values)

    def summary(self) -> Summary:
        """Mean, spread, range and n of the values."""
        return summarize(self.values)


@dataclass(frozen=True)
class Comparison:
    """The verdict on A against B, with what it rests on (for prose and site/data/)."""

    verdict: str  # AHEAD, BEHIND or UNSEPARATED, said of A
    difference: float  # mean(A) - mean(B)
    margin: float  # the spread the difference must exceed: spread(A) + spread(B)
    a: Summary
    b: Summary
    unit: str = "seed"  # what A's values repeat (B's too, unless the reason is UNITS_DIFFER)
    reason: str = BY_SPREAD  # why the verdict is what it is (see the module's constants)
    b_unit: str | None = None  # B's unit: None when B is a fixed number (`against`)
    against: str | None = None  # the label of the fixed number B, for `against`
    why: str = ""  # NOT_COMPARABLE: why the two sides are not compared

    @property
    def separated(self) -> bool:
        """True when the verdict is ahead or behind."""
        return self.verdict != UNSEPARATED

    def as_metric(self) -> dict[str, Any]:
        """A JSON-friendly dict (what `ctx.metric` stores and the prose's `claim` filter reads):
        the verdict, the two sides, and what was repeated (name, plural, n on each side)."""
        a_unit = UNITS[self.unit]
        b_unit = UNITS[self.b_unit] if self.b_unit else None
        return {"verdict": self.verdict, "difference": self.difference, "margin": self.margin,
                "a": asdict(self.a), "b": asdict(self.b), "reason": self.reason,
                "unit": a_unit.name, "units": a_unit.plural,
                "b_unit": b_unit.name if b_unit else None,
                "b_units": b_unit.plural if b_unit else None,
                "against": self.against, "why": self.why or (
                    a_unit.why if self.reason == NOT_REPEATS else "")}


def _check(side: Any, name: str) -> Runs:
    if not isinstance(side, Runs):
        raise TypeError(f"compare: side {name} must be Runs(values, unit), saying what was "
                        f"repeated; got {type(side).__name__}")
    return side


def _unseparable(a: Runs, b: Runs | None) -> str | None:
    """Why the spreads cannot decide between `a` and `b` (None: they can); b None = a number."""
    if b is not None and a.unit != b.unit:
        return UNITS_DIFFER
    if not UNITS[a.unit].repeats:
        return NOT_REPEATS
    sides = (a,) if b is None else (a, b)
    if any(s.n < 2 for s in sides):
        return ONE_RUN
    if all(max(s.values) == min(s.values) for s in sides):
        return ZERO_SPREAD
    return None


def _verdict(difference: float, margin: float, reason: str | None) -> str:
    """The rule itself: separated only when nothing rules it out and the difference of means
    exceeds the margin (the spreads that apply)."""
    if reason is None and difference > margin:
        return AHEAD
    if reason is None and -difference > margin:
        return BEHIND
    return UNSEPARATED


def compare(a: Runs, b: Runs) -> Comparison:
    """Ahead / behind / cannot separate for runs `a` against runs `b` (see module doc)."""
    a, b = _check(a, "a"), _check(b, "b")
    sa, sb = a.summary(), b.summary()
    difference, margin = sa.mean - sb.mean, sa.std + sb.std
    reason = _unseparable(a, b)
    return Comparison(_verdict(difference, margin, reason), difference, margin, sa, sb, a.unit,
                      reason or BY_SPREAD, b_unit=b.unit)


def against(a: Runs, value: float, label: str) -> Comparison:
    """Runs `a` against a fixed number (chance, a published result) called `label`.

    The number has no spread: A is ahead when mean(A) - sd(A) > value, behind when
    mean(A) + sd(A) < value; A needs two or more runs of an independent unit, not all equal
    (the number brings no spread, so A's must be measured).
    """
    a = _check(a, "a")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"against needs a finite number, got {value}")
    sa = a.summary()
    fixed = Summary(value, 0.0, value, value, 1)
    difference, margin = sa.mean - value, sa.std
    reason = _unseparable(a, None)
    return Comparison(_verdict(difference, margin, reason), difference, margin, sa, fixed, a.unit,
                      reason or BY_SPREAD, against=label)


def incomparable(a: Runs, b: Runs | float, why: str, label: str | None = None) -> Comparison:
    """Two sides that are not compared, because `why` (e.g. different training and test
    sets): the verdict is UNSEPARATED with reason NOT_COMPARABLE, the means still recorded.
    `b` is runs, or a fixed number called `label` (as for `against`)."""
    a = _check(a, "a")
    if not why:
        raise ValueError("incomparable needs the reason the sides are not compared")
    sa = a.summary()
    if isinstance(b, Runs):
        sb = b.summary()
        return Comparison(UNSEPARATED, sa.mean - sb.mean, sa.std + sb.std, sa, sb, a.unit,
                          NOT_COMPARABLE, b_unit=b.unit, why=why)
    value = float(b)
    return Comparison(UNSEPARATED, sa.mean - value, sa.std, sa,
                      Summary(value, 0.0, value, value, 1), a.unit, NOT_COMPARABLE,
                      against=label or "a fixed number", why=why)


# --- runs that did not train ------------------------------------------------------------------

# A run is "at chance" when its final accuracy is at most this many times chance level (with
# ten classes: 15 % or less), i.e. within half of chance above it.
AT_CHANCE = 1.5


def failed_run(accuracy: float | None, chance: float, loss: float | None = 0.0) -> str | None:
    """Why a training run failed, or None: 'diverged' when its loss is not a finite number
    (None, as JSON keeps NaN), 'at chance' when its final accuracy is at most AT_CHANCE x
    chance (a network that learned nothing, or only the class frequencies)."""
    if loss is None or not math.isfinite(loss):
        return "diverged"
    if accuracy is None or not math.isfinite(accuracy) or accuracy <= AT_CHANCE * chance:
        return "at chance"
    return None
