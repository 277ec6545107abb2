"""digits.study: the validation split, learning-rate choice, mean ± std and the winner/tie rule."""

from __future__ import annotations

import math

import pytest
import torch

from digits.study import (Summary, at_grid_edge, choose_lr, decide, log_grid, subset, summarize,
                          validation_split)


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


def test_summarize_uses_sample_std() -> None:
    s = summarize([0.97, 0.98, 0.99])
    assert s.mean == pytest.approx(0.98) and s.std == pytest.approx(0.01)
    assert (s.min, s.max, s.n) == (0.97, 0.99, 3)
    assert summarize([0.5]).std == 0.0


def test_decide_names_a_winner_only_when_it_clears_the_spreads() -> None:
    clear = {"adam": Summary(0.990, 0.001, 0, 0, 3), "sgd": Summary(0.980, 0.002, 0, 0, 3),
             "adagrad": Summary(0.970, 0.004, 0, 0, 3)}
    verdict = decide(clear)
    assert verdict.winner == "adam" and verdict.tied == ("adam",)
    assert verdict.ranking == ("adam", "sgd", "adagrad")
    assert verdict.text == "adam wins"


def test_decide_reports_a_tie_when_spreads_overlap() -> None:
    # adam is highest on average, but 0.990 - 0.004 < 0.985 + 0.002: sgd overlaps it.
    overlapping = {"adam": Summary(0.990, 0.004, 0, 0, 3), "sgd": Summary(0.985, 0.002, 0, 0, 3),
                   "rmsprop": Summary(0.984, 0.002, 0, 0, 3),
                   "adagrad": Summary(0.950, 0.010, 0, 0, 3)}
    verdict = decide(overlapping)
    assert verdict.best == "adam" and verdict.winner is None
    assert verdict.tied == ("adam", "sgd", "rmsprop")  # adagrad's interval is far below
    assert verdict.text == "adam, sgd and rmsprop tie"


def test_decide_boundary_and_nan() -> None:
    # Exactly touching intervals count as overlapping: no winner.
    touching = {"a": Summary(0.90, 0.01, 0, 0, 2), "b": Summary(0.88, 0.01, 0, 0, 2)}
    assert decide(touching).winner is None
    # A diverged optimizer (NaN mean) ranks last and never ties.
    diverged = {"a": Summary(0.90, 0.01, 0, 0, 2), "b": Summary(math.nan, 0.0, 0, 0, 2)}
    verdict = decide(diverged)
    assert verdict.winner == "a" and verdict.ranking == ("a", "b")
    # One seed (std 0): any strict difference in the mean separates.
    assert decide({"a": Summary(0.9, 0, 0, 0, 1), "b": Summary(0.89, 0, 0, 0, 1)}).winner == "a"
