"""The one comparison rule (report/compare.py) and the `claim` filter that words it."""

from __future__ import annotations

import json
import math

import pytest

from report.compare import AHEAD, BEHIND, UNSEPARATED, Comparison, compare, summarize
from report.render import claim

# Three seeds a side: means 0.90 and 0.80, sample standard deviations 0.01.
HIGH = [0.89, 0.90, 0.91]
LOW = [0.79, 0.80, 0.81]


def test_summarize() -> None:
    s = summarize(HIGH)
    assert (s.n, s.min, s.max) == (3, 0.89, 0.91)
    assert s.mean == pytest.approx(0.90) and s.std == pytest.approx(0.01)  # n-1 denominator
    assert summarize([0.5]).std == 0.0
    with pytest.raises(ValueError):
        summarize([])


def test_clear_separation_ahead_and_behind() -> None:
    ahead = compare(HIGH, LOW)
    assert ahead.verdict == AHEAD and ahead.separated
    assert ahead.difference == pytest.approx(0.10)
    assert ahead.margin == pytest.approx(0.02)  # the two spreads added
    behind = compare(LOW, HIGH)
    assert behind.verdict == BEHIND and behind.separated
    assert behind.difference == pytest.approx(-0.10) and behind.margin == pytest.approx(0.02)


def test_overlap_cannot_separate() -> None:
    # Means 0.90 and 0.885, spreads 0.01 each: 0.015 < 0.02.
    result = compare(HIGH, [0.875, 0.885, 0.895])
    assert result.verdict == UNSEPARATED and not result.separated
    assert result.difference == pytest.approx(0.015) and result.margin == pytest.approx(0.02)
    assert compare([0.875, 0.885, 0.895], HIGH).verdict == UNSEPARATED


def test_the_bar_is_strict_mean_minus_sd_above_mean_plus_sd() -> None:
    # Means 1 and 0, spreads 0.5 each: difference 1 equals the margin, which is not enough.
    assert compare([0.5, 1.0, 1.5], [-0.5, 0.0, 0.5]).verdict == UNSEPARATED
    assert compare([0.5001, 1.0001, 1.5001], [-0.5, 0.0, 0.5]).verdict == AHEAD


def test_one_result_each_side_can_never_be_separated() -> None:
    result = compare([0.99], [0.01])
    assert result.verdict == UNSEPARATED and result.margin == 0.0
    assert result.difference == pytest.approx(0.98)
    assert compare([1e9], [-1e9]).verdict == UNSEPARATED


def test_one_result_borrows_the_other_sides_spread() -> None:
    # LOW has sd 0.01; the single result borrows it: margin 0.02.
    near = compare([0.815], LOW)
    assert near.margin == pytest.approx(0.02) and near.verdict == UNSEPARATED
    far = compare([0.83], LOW)
    assert far.margin == pytest.approx(0.02) and far.verdict == AHEAD
    assert compare(LOW, [0.83]).verdict == BEHIND
    assert compare(LOW, [0.83]).margin == pytest.approx(0.02)
    # Without borrowing (margin 0.01) the first would have been called ahead.
    assert near.difference > 0.01


def test_a_side_with_no_spread_borrows_nothing_from_a_single_result() -> None:
    # Identical repeated results measure a spread of zero: the difference alone decides.
    assert compare([0.5, 0.5], [0.4]).verdict == AHEAD


@pytest.mark.parametrize("a, b", [
    ([0.9, float("nan")], LOW),
    (HIGH, [float("inf")]),
    ([float("-inf")], [0.1]),
])
def test_non_finite_results_are_an_error(a: list, b: list) -> None:
    with pytest.raises(ValueError, match="finite"):
        compare(a, b)


def test_arrays_and_tensors_are_accepted() -> None:
    """Per-seed results often arrive as numpy arrays or tensors (no truth-value ambiguity)."""
    import numpy as np
    import torch

    assert compare(np.array(HIGH), np.array(LOW)).verdict == AHEAD
    assert compare(torch.tensor(LOW, dtype=torch.float64), HIGH).verdict == BEHIND
    assert compare(np.array([0.5]), np.array([0.4])).verdict == UNSEPARATED
    with pytest.raises(ValueError, match="at least one"):
        compare(np.array([]), np.array(LOW))


def test_an_empty_side_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one"):
        compare([], LOW)
    with pytest.raises(ValueError, match="at least one"):
        compare(HIGH, [])


def test_as_metric_round_trips_through_json() -> None:
    result = compare(HIGH, LOW)
    metric = result.as_metric()
    back = json.loads(json.dumps(metric))
    assert back == metric
    assert back["verdict"] == AHEAD
    assert back["a"] == {"mean": result.a.mean, "std": result.a.std, "min": 0.89, "max": 0.91,
                         "n": 3}
    assert math.isclose(back["difference"], result.difference)
    assert Comparison(**{**back, "a": result.a, "b": result.b}) == result


def test_as_metric_survives_the_context(tmp_path) -> None:
    """ctx.metric(..., compare(...).as_metric()) stores what the claim filter reads."""
    import torch

    from report.context import Context

    ctx = Context("sec", None, seed=7, device=torch.device("cpu"), staging=tmp_path,
                  upstream={}, log=lambda m: None)
    ctx.metric("x_vs_y", compare(HIGH, LOW).as_metric())
    stored = json.loads(json.dumps(ctx.metrics))["x_vs_y"]
    assert claim(stored, "X", "Y").startswith("X is ahead of Y by 10.00 percentage points")


# --- the claim filter: three sentences ---------------------------------------------------------


def test_claim_ahead() -> None:
    text = claim(compare(HIGH, LOW).as_metric(), "t-SNE", "raw pixels")
    assert text == ("t-SNE is ahead of raw pixels by 10.00 percentage points, more than their "
                    "combined spread of 2.00 percentage points")


def test_claim_behind_gives_the_size_of_the_difference() -> None:
    text = claim(compare(LOW, HIGH).as_metric(), "SGD", "Adam")
    assert text == ("SGD is behind Adam by 10.00 percentage points, more than their combined "
                    "spread of 2.00 percentage points")


def test_claim_cannot_separate() -> None:
    text = claim(compare(HIGH, [0.875, 0.885, 0.895]).as_metric(), "A", "B")
    assert text == ("A and B cannot be separated: the difference of 1.50 percentage points is "
                    "within their combined spread of 2.00 percentage points")


def test_claim_one_result_each_says_the_noise_is_unknown() -> None:
    text = claim(compare([0.99], [0.01]).as_metric(), "A", "B")
    assert text == ("A and B cannot be separated: one result each, so their noise is unknown "
                    "(difference 98.00 percentage points)")


def test_claim_without_percent_and_with_digits() -> None:
    metric = compare([10.0, 12.0, 14.0], [1.0, 2.0, 3.0]).as_metric()  # sds 2 and 1
    assert claim(metric, "A", "B", percent=False) == (
        "A is ahead of B by 10.00, more than their combined spread of 3.00")
    assert claim(metric, "A", "B", percent=False, digits=1) == (
        "A is ahead of B by 10.0, more than their combined spread of 3.0")


def test_claim_in_prose(tmp_path) -> None:
    """The filter is registered for the prose: `{{ m.x_vs_y | claim("A", "B") }}`."""
    from pathlib import Path

    from report.render import make_environment

    env = make_environment(Path(__file__).resolve().parent.parent / "templates")
    text = env.from_string('{{ m.c | claim("Model 2", "Model 1") }}.').render(
        m={"c": compare(HIGH, LOW).as_metric()})
    assert text.startswith("Model 2 is ahead of Model 1 by 10.00 percentage points")
