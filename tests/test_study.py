"""digits.study: validation split, learning-rate and optimizer choices, winner/tie rule (for the
page only), the study runner and its runs as plain records."""

from __future__ import annotations

import math

import pytest
import torch

from torch import nn

from digits.sampling import subset
from digits.study import (LR_CENTRES, Run, StudyResult, StudySpec, at_grid_edge, choose_best,
                          choose_lr, decide, diverged, last_epoch, log_grid, run_record, run_study,
                          stream_names, validation_split)
from digits.training import History
from report.streams import Streams
from synthetic import stripes


def numbered_images(n: int, offset: int = 0) -> torch.Tensor:
    """Uint8 images [n, 28, 28] whose first two pixels spell the image's id (offset + i)."""
    images = torch.zeros(n, 28, 28, dtype=torch.uint8)
    ids = torch.arange(offset, offset + n)
    images[:, 0, 0] = (ids // 256).to(torch.uint8)
    images[:, 0, 1] = (ids % 256).to(torch.uint8)
    return images


def ids(images: torch.Tensor) -> set[int]:
    return set((images[:, 0, 0].long() * 256 + images[:, 0, 1].long()).tolist())


def test_validation_split_is_disjoint_from_train_part_and_test_set() -> None:
    train_x = numbered_images(1_000)
    train_y = torch.arange(1_000) % 10
    test_x = numbered_images(300, offset=5_000)  # ids 5000..5299: never in the training set
    split = validation_split(train_x, train_y, 200, torch.Generator().manual_seed(0))
    val_ids, train_ids = ids(split.val_images), ids(split.train_images)
    assert len(val_ids) == 200 and len(train_ids) == 800
    assert not val_ids & train_ids
    assert val_ids | train_ids == set(range(1_000))  # nothing lost, nothing invented
    assert not val_ids & ids(test_x) and not train_ids & ids(test_x)
    # Labels travel with their images, and the indices describe the same images.
    assert torch.equal(split.val_labels, train_y[split.val_index])
    assert torch.equal(split.train_images, train_x[split.train_index])
    assert not set(split.val_index.tolist()) & set(split.train_index.tolist())


def test_validation_split_train_subset_and_seeding() -> None:
    x, y = numbered_images(500), torch.zeros(500, dtype=torch.long)
    a = validation_split(x, y, 100, torch.Generator().manual_seed(3), n_train=150)
    b = validation_split(x, y, 100, torch.Generator().manual_seed(3), n_train=150)
    c = validation_split(x, y, 100, torch.Generator().manual_seed(4), n_train=150)
    assert a.train_images.shape[0] == 150 and a.val_images.shape[0] == 100
    assert not ids(a.val_images) & ids(a.train_images)
    assert torch.equal(a.val_index, b.val_index) and torch.equal(a.train_index, b.train_index)
    assert not torch.equal(a.val_index, c.val_index)
    with pytest.raises(ValueError):
        validation_split(x, y, 0, torch.Generator())
    with pytest.raises(ValueError):
        validation_split(x, y, 100, torch.Generator(), n_train=401)


def test_subset() -> None:
    x, y = numbered_images(100), torch.arange(100)
    sx, sy = subset(x, y, 30, torch.Generator().manual_seed(0))
    assert sx.shape[0] == 30 and ids(sx) == set(sy.tolist())
    assert subset(x, y, 0, torch.Generator())[0] is x
    assert subset(x, y, 100, torch.Generator())[0] is x


def test_log_grid_and_edges() -> None:
    assert log_grid(1e-3, (0.1, 0.3, 1.0, 3.0)) == [1e-4, 3e-4, 1e-3, 3e-3]
    assert log_grid(0.1, (1.0, 0.3)) == [0.03, 0.1]
    assert at_grid_edge(1e-4, [1e-4, 3e-4, 1e-3]) and at_grid_edge(1e-3, [1e-4, 3e-4, 1e-3])
    assert not at_grid_edge(3e-4, [1e-4, 3e-4, 1e-3])
    assert not at_grid_edge(0.1, [0.1])


def test_choose_lr_best_validation_score_nan_never_wins() -> None:
    assert choose_lr({0.01: 0.90, 0.1: 0.95, 1.0: 0.93}) == 0.1
    assert choose_lr({0.01: 0.90, 0.1: math.nan}) == 0.01
    assert choose_lr({1.0: 0.9, 0.1: 0.9}) == 0.1  # a tie goes to the smaller rate
    with pytest.raises(ValueError):
        choose_lr({})


def test_choose_best_is_the_highest_validation_mean_whatever_the_spread() -> None:
    # b's mean is highest though a's spread overlaps it: a choice needs no separation.
    assert choose_best({"a": [0.90, 0.99], "b": [0.95, 0.951], "c": [0.5]}) == "b"
    assert choose_best({"b": [0.9], "a": [0.9]}) == "a"  # equal means: the first name
    assert choose_best({"a": [math.nan, 0.99], "b": [0.2]}) == "b"  # a diverged mean never wins
    # The same candidate `decide` ranks first, when no mean is NaN.
    scores = {"adam": [0.986, 0.990, 0.994], "sgd": [0.983, 0.985, 0.987]}
    assert choose_best(scores) == decide(scores).best
    with pytest.raises(ValueError):
        choose_best({})


def test_decide_names_a_winner_only_when_compare_separates_it_from_each() -> None:
    clear = {"adam": [0.989, 0.990, 0.991], "sgd": [0.978, 0.980, 0.982],
             "adagrad": [0.966, 0.970, 0.974]}
    verdict = decide(clear)
    assert verdict.winner == "adam" and verdict.tied == ("adam",)
    assert verdict.ranking == ("adam", "sgd", "adagrad")


def test_decide_reports_a_tie_with_every_candidate_it_cannot_separate() -> None:
    overlapping = {"adam": [0.986, 0.990, 0.994], "sgd": [0.983, 0.985, 0.987],
                   "rmsprop": [0.982, 0.984, 0.986], "adagrad": [0.94, 0.95, 0.96]}
    verdict = decide(overlapping)
    assert verdict.winner is None and verdict.best == "adam"
    assert verdict.tied == ("adam", "sgd", "rmsprop")  # adagrad is separated


def test_decide_single_runs_never_separate_and_equal_means_order_by_name() -> None:
    verdict = decide({"b": [0.95], "a": [0.90]})
    assert verdict.best == "b" and verdict.winner is None and verdict.tied == ("b", "a")
    assert decide({"b": [0.9, 0.9], "a": [0.9, 0.9]}).ranking == ("a", "b")
    with pytest.raises(ValueError):
        decide({})


# --- the study runner -------------------------------------------------------------------------

SPEC = StudySpec(optimizers=("sgd", "adam"), epochs=2, batch_size=16, momentum=0.5,
                 shared_lr=0.01, lr_factors=(0.1, 1.0), seeds=2, grid_seeds=1,
                 mode="sequential")




def tiny() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 8), nn.ReLU(), nn.Linear(8, 10))


def study(test_labels: torch.Tensor | None = None) -> StudyResult:
    images, labels = stripes(160, 0, classes=4)
    test_x, test_y = stripes(60, 1, classes=4)
    split = validation_split(images, labels, 40, torch.Generator().manual_seed(0))
    test = (test_x, test_y if test_labels is None else test_labels)
    return run_study(tiny, split, test, SPEC, Streams(11, "study"), log=lambda m: None)


def test_study_structure_and_reproducibility() -> None:
    a, b = study(), study()
    assert [r.study for r in a.runs].count("shared") == 4  # 2 optimizers x 2 seeds
    assert [r.study for r in a.runs].count("grid") == 4  # 2 optimizers x 2 rates
    assert [r.study for r in a.runs].count("fair") == 4
    assert a.grids == {"sgd": [0.01, 0.1], "adam": [1e-4, 1e-3]}
    for opt in SPEC.optimizers:
        assert a.chosen_lr[opt] in a.grids[opt]
        assert a.grid_scores[opt][a.chosen_lr[opt]] == max(a.grid_scores[opt].values())
    # Named streams make runs reproducible on the CPU: every curve is bit-identical.
    assert a.chosen_lr == b.chosen_lr
    assert [h.eval_acc for h in a.histories] == [h.eval_acc for h in b.histories]
    assert [h.train_loss for h in a.histories] == [h.train_loss for h in b.histories]
    fair = a.results("fair")
    assert set(fair) == {"sgd", "adam"} and all(len(v) == 2 for v in fair.values())


def test_records_hold_every_run_and_read_back_like_the_result() -> None:
    result = study()
    records = result.records()
    assert len(records) == len(result.runs) == 12
    for record, run, history in zip(records, result.runs, result.histories):
        assert (record["study"], record["optimizer"], record["lr"], record["seed"]) == (
            run.study, run.optimizer, run.lr, run.seed)
        assert record["validation"] == history.eval_acc["validation"]  # every epoch
        assert len(record["train_loss"]) == SPEC.epochs
        assert record["diverged"] is diverged(history.train_loss)
    for study_name, key in (("shared", "test"), ("fair", "test"), ("fair", "validation"),
                            ("grid", "validation")):
        assert last_epoch(records, study_name, key) == result.results(study_name, key)


def test_a_run_whose_loss_is_not_finite_or_stays_at_chance_diverged() -> None:
    assert diverged([2.3, math.nan, 2.2]) and diverged([math.inf])
    assert diverged([189.1, 2.303]) and diverged([3.1, 2.301])  # ended at a uniform guess
    assert not diverged([2.237, 1.976]) and not diverged([1.2, 0.3]) and not diverged([])
    assert not diverged([1.2], classes=4) and diverged([1.38], classes=4)  # ln 4 = 1.386
    history = History(epochs=[1, 2], train_loss=[2.3, math.nan],
                      eval_acc={"validation": [0.3, 0.1]})
    record = run_record(Run("grid", "adadelta", 3.0, 0), history)
    assert record["diverged"] is True and "test" not in record
    history.train_loss = [2.3, 0.4]
    assert run_record(Run("grid", "adadelta", 3.0, 0), history)["diverged"] is False
