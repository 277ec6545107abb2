"""The one comparison rule (report/compare.py) and the `claim` filter that words it."""

from __future__ import annotations

import json
import math

import pytest

from report.compare import (AHEAD, BEHIND, BY_SPREAD, NOT_COMPARABLE, NOT_REPEATS, ONE_RUN,
                            UNITS, UNITS_DIFFER, UNSEPARATED, ZERO_SPREAD, Comparison, Runs,
                            Summary, against, compare, failed_run, incomparable, summarize)
from report.render import claim, repeats, why_unseparated

# Three seeds a side: means 0.90 and 0.80, sample standard deviations 0.01.
HIGH = Runs([0.89, 0.90, 0.91], "seed")
LOW = Runs([0.79, 0.80, 0.81], "seed")


def seeds(*values: float) -> Runs:
    return Runs(values, "seed")


def test_summarize() -> None:
    s = summarize([0.89, 0.90, 0.91])
    assert (s.n, s.min, s.max) == (3, 0.89, 0.91)
    assert s.mean == pytest.approx(0.90) and s.std == pytest.approx(0.01)  # n-1 denominator
    assert summarize([0.5]).std == 0.0
    with pytest.raises(ValueError):
        summarize([])


# --- a side says what was repeated -------------------------------------------------------------


def test_runs_hold_finite_values_and_a_known_unit() -> None:
    import numpy as np
    import torch

    assert Runs(np.array([0.1, 0.2]), "fold").values == (0.1, 0.2)
    assert Runs(torch.tensor([0.5, 0.25], dtype=torch.float64), "seed").n == 2
    assert Runs((x for x in [1, 2, 3]), "probe").summary().mean == 2.0
    with pytest.raises(ValueError, match="at least one"):
        Runs([], "seed")
    with pytest.raises(ValueError, match="finite"):
        Runs([0.9, float("nan")], "seed")
    with pytest.raises(ValueError, match="unknown unit 'run'.*seed"):
        Runs([0.9, 0.8], "run")


def test_compare_takes_runs_not_bare_numbers() -> None:
    with pytest.raises(TypeError, match="Runs"):
        compare([0.89, 0.90, 0.91], LOW)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Runs"):
        against([0.5, 0.6], 0.1, "chance")  # type: ignore[arg-type]


def test_every_unit_has_a_plural_and_the_pseudo_repeats_say_why() -> None:
    assert {"seed", "fold", "class", "noise draw", "snapshot"} <= set(UNITS)
    for unit in UNITS.values():
        assert unit.plural and unit.plural != unit.name
        assert bool(unit.why) == (not unit.repeats), unit.name
    assert not UNITS["class"].repeats and not UNITS["noise draw"].repeats
    assert UNITS["seed"].repeats and UNITS["fold"].repeats


# --- the rule ------------------------------------------------------------------------------------


def test_clear_separation_ahead_and_behind() -> None:
    ahead = compare(HIGH, LOW)
    assert ahead.verdict == AHEAD and ahead.separated and ahead.reason == BY_SPREAD
    assert ahead.difference == pytest.approx(0.10)
    assert ahead.margin == pytest.approx(0.02)  # the two spreads added
    behind = compare(LOW, HIGH)
    assert behind.verdict == BEHIND and behind.separated
    assert behind.difference == pytest.approx(-0.10) and behind.margin == pytest.approx(0.02)


def test_overlap_cannot_separate() -> None:
    # Means 0.90 and 0.885, spreads 0.01 each: 0.015 < 0.02.
    result = compare(HIGH, seeds(0.875, 0.885, 0.895))
    assert result.verdict == UNSEPARATED and not result.separated
    assert result.reason == BY_SPREAD
    assert result.difference == pytest.approx(0.015) and result.margin == pytest.approx(0.02)
    assert compare(seeds(0.875, 0.885, 0.895), HIGH).verdict == UNSEPARATED


def test_the_bar_is_strict_mean_minus_sd_above_mean_plus_sd() -> None:
    # Means 1 and 0, spreads 0.5 each: difference 1 equals the margin, which is not enough.
    assert compare(seeds(0.5, 1.0, 1.5), seeds(-0.5, 0.0, 0.5)).verdict == UNSEPARATED
    assert compare(seeds(0.5001, 1.0001, 1.5001), seeds(-0.5, 0.0, 0.5)).verdict == AHEAD


def test_one_run_on_either_side_never_separates() -> None:
    both = compare(seeds(0.99), seeds(0.01))
    assert both.verdict == UNSEPARATED and both.reason == ONE_RUN
    assert both.difference == pytest.approx(0.98)
    assert compare(seeds(1e9), seeds(-1e9)).verdict == UNSEPARATED
    # One side with one run borrows nothing from the other: its noise is unknown.
    one = compare(seeds(0.99), LOW)
    assert one.verdict == UNSEPARATED and one.reason == ONE_RUN
    assert compare(LOW, seeds(0.99)).reason == ONE_RUN


def test_zero_spread_never_separates() -> None:
    # "Behind by 1.35 points, more than their combined spread of 0.00": not any more.
    flat = against(seeds(0.1035, 0.1035), 0.117, "majority")
    assert flat.verdict == UNSEPARATED and flat.reason == ZERO_SPREAD
    both = compare(seeds(0.5, 0.5), seeds(0.4, 0.4))
    assert both.verdict == UNSEPARATED and both.reason == ZERO_SPREAD


def test_one_flat_side_is_decided_by_the_other_sides_spread() -> None:
    # A network stuck at chance on every seed, beside one that learns: the learning side's
    # spread is the measured noise, and a difference far beyond it is called.
    stuck = seeds(0.1035, 0.1035)
    assert compare(seeds(0.92, 0.93), stuck).verdict == AHEAD
    assert compare(seeds(0.92, 0.93), stuck).reason == BY_SPREAD
    assert compare(stuck, seeds(0.10, 0.12)).verdict == UNSEPARATED  # within that spread


def test_different_units_never_separate() -> None:
    folds = Runs([0.1, 0.12, 0.11], "fold")
    result = compare(HIGH, folds)
    assert result.verdict == UNSEPARATED and result.reason == UNITS_DIFFER
    assert result.as_metric()["b_units"] == "folds"


@pytest.mark.parametrize("unit", ["class", "noise draw", "snapshot"])
def test_pseudo_repeats_are_refused_whatever_the_difference(unit: str) -> None:
    """The ten classes of one model, noise draws of one generator, snapshots of one run."""
    far = compare(Runs([0.9, 0.91, 0.92], unit), Runs([0.1, 0.11, 0.12], unit))
    assert far.verdict == UNSEPARATED and far.reason == NOT_REPEATS
    assert far.as_metric()["why"] == UNITS[unit].why
    assert against(Runs([0.9, 0.91], unit), 0.1, "chance").reason == NOT_REPEATS


def test_against_a_fixed_number() -> None:
    # Ahead when mean - sd clears the number: the number has no spread.
    ahead = against(HIGH, 0.85, "the original's")
    assert ahead.verdict == AHEAD and ahead.margin == pytest.approx(0.01)
    assert ahead.b == Summary(0.85, 0.0, 0.85, 0.85, 1) and ahead.against == "the original's"
    assert against(HIGH, 0.95, "x").verdict == BEHIND
    assert against(HIGH, 0.895, "x").verdict == UNSEPARATED  # within A's own spread
    # A needs two runs of an independent unit with some spread.
    assert against(seeds(0.9), 0.1, "chance").reason == ONE_RUN
    assert against(seeds(0.1035, 0.1035), 0.117, "majority").reason == ZERO_SPREAD
    with pytest.raises(ValueError, match="finite"):
        against(HIGH, float("nan"), "x")


def test_incomparable_sides_are_recorded_with_the_reason() -> None:
    result = incomparable(HIGH, LOW, "different test sets (500 against 10,000 images)")
    assert result.verdict == UNSEPARATED and result.reason == NOT_COMPARABLE
    assert result.difference == pytest.approx(0.10)
    assert result.as_metric()["why"].startswith("different test sets")
    fixed = incomparable(HIGH, 0.99, "another network", "the original's")
    assert fixed.against == "the original's" and fixed.b.n == 1
    with pytest.raises(ValueError, match="reason"):
        incomparable(HIGH, LOW, "")


def test_as_metric_round_trips_through_json() -> None:
    result = compare(HIGH, LOW)
    metric = result.as_metric()
    back = json.loads(json.dumps(metric))
    assert back == metric
    assert back["verdict"] == AHEAD and back["reason"] == BY_SPREAD
    assert (back["unit"], back["units"], back["b_unit"]) == ("seed", "seeds", "seed")
    assert back["a"] == {"mean": result.a.mean, "std": result.a.std, "min": 0.89, "max": 0.91,
                         "n": 3}
    assert math.isclose(back["difference"], result.difference)
    assert against(HIGH, 0.5, "chance").as_metric()["b_unit"] is None


def test_as_metric_survives_the_context(tmp_path) -> None:
    """ctx.metric(..., compare(...).as_metric()) stores what the claim filter reads."""
    import torch

    from report.context import Context

    ctx = Context("sec", None, seed=7, device=torch.device("cpu"), staging=tmp_path,
                  upstream={}, log=lambda m: None)
    ctx.metric("x_vs_y", compare(HIGH, LOW).as_metric())
    stored = json.loads(json.dumps(ctx.metrics))["x_vs_y"]
    assert claim(stored, "X", "Y").startswith("X is ahead of Y by 10.00 percentage points")


def test_comparison_keeps_its_fields() -> None:
    result = compare(HIGH, LOW)
    assert Comparison(**{**{k: getattr(result, k) for k in result.__dataclass_fields__}}) \
        == result


# --- runs that did not train ---------------------------------------------------------------------


def test_failed_run() -> None:
    assert failed_run(0.91, 0.1, 0.3) is None
    assert failed_run(0.103, 0.1, 2.301) == "at chance"
    assert failed_run(0.15, 0.1) == "at chance" and failed_run(0.151, 0.1) is None
    assert failed_run(0.05, 0.1) == "at chance"  # below chance is no better
    assert failed_run(0.9, 0.1, None) == "diverged" and failed_run(0.9, 0.1, math.inf) == "diverged"
    assert failed_run(None, 0.1) == "at chance"


# --- the claim filter: every sentence names what was repeated -----------------------------------


def test_claim_ahead() -> None:
    text = claim(compare(HIGH, LOW).as_metric(), "t-SNE", "raw pixels")
    assert text == ("t-SNE is ahead of raw pixels by 10.00 percentage points over 3 seeds each, "
                    "more than their combined spread of 2.00 percentage points")


def test_claim_behind_gives_the_size_of_the_difference() -> None:
    text = claim(compare(LOW, HIGH).as_metric(), "SGD", "Adam")
    assert text == ("SGD is behind Adam by 10.00 percentage points over 3 seeds each, more "
                    "than their combined spread of 2.00 percentage points")


def test_claim_names_folds_and_unequal_counts() -> None:
    a, b = Runs([0.9, 0.91, 0.92, 0.93, 0.94], "fold"), Runs([0.5, 0.51, 0.52, 0.53, 0.54], "fold")
    assert "over 5 folds each" in claim(compare(a, b).as_metric(), "A", "B")
    assert "over 3 and 2 seeds" in claim(compare(HIGH, seeds(0.1, 0.2)).as_metric(), "A", "B")


def test_claim_cannot_separate() -> None:
    text = claim(compare(HIGH, seeds(0.875, 0.885, 0.895)).as_metric(), "A", "B")
    assert text == ("A and B cannot be separated over 3 seeds each: the difference of 1.50 "
                    "percentage points is within their combined spread of 2.00 percentage "
                    "points")


def test_claim_one_run_says_the_noise_is_unknown() -> None:
    text = claim(compare(seeds(0.99), seeds(0.01)).as_metric(), "A", "B")
    assert text == ("A and B cannot be separated: one seed each, so their noise is unknown "
                    "(difference 98.00 percentage points)")
    text = claim(compare(HIGH, seeds(0.5)).as_metric(), "A", "B")
    assert text == ("A and B cannot be separated: B rests on one seed, so its noise is "
                    "unknown (difference 40.00 percentage points)")


def test_claim_zero_spread_says_so() -> None:
    text = claim(against(seeds(0.1035, 0.1035), 0.117, "x").as_metric(), "the sigmoid network",
                 "always answering the most common class")
    assert text == ("the sigmoid network and always answering the most common class cannot be "
                    "separated: the sigmoid network is the same on all 2 seeds, and a spread of "
                    "zero measures no noise (difference 1.35 percentage points)")
    assert "more than" not in text


def test_claim_different_units_and_pseudo_repeats() -> None:
    text = claim(compare(HIGH, Runs([0.1, 0.2], "fold")).as_metric(), "A", "B")
    assert text.startswith("A and B cannot be separated: one side repeats seeds, the other folds")
    text = claim(compare(Runs([0.9, 0.8], "noise draw"), Runs([0.1, 0.2], "noise draw"))
                 .as_metric(), "its FD", "the original's", percent=False)
    assert text == ("its FD and the original's cannot be separated: the noise draws all come "
                    "from one trained generator, not from independent runs (difference 0.70)")


def test_claim_against_a_number_and_not_comparable() -> None:
    parts = Runs([0.28, 0.29, 0.27, 0.28], "test part")
    text = claim(against(parts, 0.1, "chance").as_metric(), "the classifier", "chance")
    assert text.startswith("the classifier is ahead of chance by 18.00 percentage points over "
                           "4 disjoint test parts, more than its spread of")
    text = claim(incomparable(HIGH, LOW, "different test sets").as_metric(), "A", "B")
    assert text == "A and B are not compared: different test sets"


def test_claim_without_percent_and_with_digits() -> None:
    metric = compare(seeds(10.0, 12.0, 14.0), seeds(1.0, 2.0, 3.0)).as_metric()  # sds 2 and 1
    assert claim(metric, "A", "B", percent=False) == (
        "A is ahead of B by 10.00 over 3 seeds each, more than their combined spread of 3.00")
    assert claim(metric, "A", "B", percent=False, digits=1) == (
        "A is ahead of B by 10.0 over 3 seeds each, more than their combined spread of 3.0")


def test_repeats_and_why_unseparated() -> None:
    assert repeats(compare(HIGH, LOW).as_metric()) == "over 3 seeds each"
    assert repeats(against(HIGH, 0.5, "x").as_metric()) == "over 3 seeds"
    assert why_unseparated(compare(HIGH, LOW).as_metric()) == ""
    assert why_unseparated(compare(seeds(1), seeds(0)).as_metric()) == (
        "one seed each, so the noise is unknown")
    assert "zero" in why_unseparated(compare(seeds(1, 1), seeds(0, 0)).as_metric())
    assert why_unseparated(compare(seeds(1, 1), LOW).as_metric()) == ""  # LOW has spread


def test_claim_in_prose(tmp_path) -> None:
    """The filter is registered for the prose: `{{ m.x_vs_y | claim("A", "B") }}`."""
    from pathlib import Path

    from report.render import make_environment

    env = make_environment(Path(__file__).resolve().parent.parent / "templates")
    text = env.from_string('{{ m.c | claim("Model 2", "Model 1") }}.').render(
        m={"c": compare(HIGH, LOW).as_metric()})
    assert text.startswith("Model 2 is ahead of Model 1 by 10.00 percentage points over 3 seeds")
