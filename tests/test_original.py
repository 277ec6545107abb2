"""digits.original: the original post's facts and its arithmetic."""

from __future__ import annotations

from digits import original


def test_denominator_and_true_accuracy() -> None:
    # 10,000 test images in batches of 32: 313 batches, the last of 16, counted as 32.
    assert original.denominator(10_000) == 10_016
    assert original.denominator(64, 32) == 64
    # Its 98.01 % for model 2 was 9,817 correct of 10,000: 98.17 %.
    assert original.true_accuracy(original.MODEL2_TEST_ACC) == 0.9817
    assert original.true_accuracy(original.MODEL1_TEST_ACC) == 0.9793


def test_facts_are_exposed_by_lower_case_name() -> None:
    facts = original.facts()
    assert facts["model2_test_acc"] == 0.9801 and facts["train_batches"] == 1_875
    assert facts["optimizer_test_acc"]["adam"] == 0.9467
    assert "denominator" not in facts and "facts" not in facts  # functions are not facts
