"""Pure helpers for fair comparisons: validation split, learning-rate choice, mean ± std, verdicts.

Nothing here trains or touches the test set: the learning rate is chosen from validation scores
only, and the verdict names a winner only when its lead exceeds the spread over seeds.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Split:
    """A training set cut in two: the part to train on and a held-out validation part."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    train_index: torch.Tensor  # indices into the original training set
    val_index: torch.Tensor


def validation_split(images: torch.Tensor, labels: torch.Tensor, n_val: int,
                     generator: torch.Generator, n_train: int = 0) -> Split:
    """Hold `n_val` random images out of a training set; keep `n_train` of the rest (0 = all).

    Both parts are drawn from `images` only, so the validation part can never contain a test
    image, and the two parts are disjoint by construction (one permutation, two slices).
    """
    n = images.shape[0]
    if not 0 < n_val < n:
        raise ValueError(f"n_val={n_val} must be between 1 and {n - 1} (the set has {n} images)")
    if n_train < 0 or n_train > n - n_val:
        raise ValueError(f"n_train={n_train}: only {n - n_val} images remain after validation")
    order = torch.randperm(n, generator=generator)
    val_index = order[:n_val].sort().values
    rest = order[n_val:]
    train_index = (rest[:n_train] if n_train else rest).sort().values
    # Index on the CPU (the generator is a CPU one), then move: same split on every device.
    dev_val, dev_train = val_index.to(images.device), train_index.to(images.device)
    return Split(images[dev_train], labels[dev_train], images[dev_val], labels[dev_val],
                 train_index, val_index)


def subset(images: torch.Tensor, labels: torch.Tensor, n: int,
           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded random subset of `n` examples (0 or n >= len = everything, in order)."""
    if n <= 0 or n >= images.shape[0]:
        return images, labels
    index = torch.randperm(images.shape[0], generator=generator)[:n].sort().values
    index = index.to(images.device)
    return images[index], labels[index]


def log_grid(centre: float, factors: Sequence[float]) -> list[float]:
    """Learning rates centre × factor, rounded to 3 significant digits, ascending."""
    return sorted({float(f"{centre * f:.3g}") for f in factors})


def choose_lr(scores: Mapping[float, float]) -> float:
    """The learning rate with the highest validation score; NaN (a diverged run) never wins.

    Ties go to the smallest learning rate, so the choice does not depend on dict order.
    """
    if not scores:
        raise ValueError("choose_lr needs at least one (lr, score) pair")
    best_lr, best = None, -math.inf
    for lr in sorted(scores):
        score = scores[lr]
        value = -math.inf if score is None or math.isnan(score) else score
        if best_lr is None or value > best:
            best_lr, best = lr, value
    return float(best_lr)


def at_grid_edge(lr: float, grid: Sequence[float]) -> bool:
    """True when `lr` is the smallest or largest value of a grid of more than one value."""
    return len(grid) > 1 and (lr == min(grid) or lr == max(grid))


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (n-1; 0 for a single value), min, max and n."""

    mean: float
    std: float
    min: float
    max: float
    n: int


def summarize(values: Sequence[float]) -> Summary:
    """Mean ± sample std of repeated runs (e.g. test accuracy over seeds)."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        raise ValueError("summarize needs at least one value")
    std = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return Summary(float(array.mean()), std, float(array.min()), float(array.max()),
                   int(array.size))


@dataclass(frozen=True)
class Verdict:
    """Who is best, and whether the lead is larger than the spread over seeds."""

    best: str  # highest mean, whether or not it is a clear winner
    winner: str | None  # `best` when its lead exceeds both spreads, else None
    tied: tuple[str, ...]  # candidates whose mean ± std overlaps the best's (best first)
    ranking: tuple[str, ...]  # all candidates, highest mean first

    @property
    def text(self) -> str:
        """A sentence fragment for prose: 'adam wins' or 'adam, sgd and rmsprop tie'."""
        if self.winner is not None:
            return f"{self.winner} wins"
        names = list(self.tied)
        joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return f"{joined} tie"


def decide(summaries: Mapping[str, Summary]) -> Verdict:
    """Name a winner only if best.mean - best.std > other.mean + other.std for every other.

    Otherwise it is a tie between the best and every candidate whose interval
    [mean - std, mean + std] reaches the best's lower end. Ties in the mean are broken by name.
    """
    if not summaries:
        raise ValueError("decide needs at least one candidate")
    ranking = sorted(summaries, key=lambda k: (-_finite(summaries[k].mean), k))
    best = ranking[0]
    floor = _finite(summaries[best].mean) - summaries[best].std
    tied = tuple(k for k in ranking
                 if k == best or _finite(summaries[k].mean) + summaries[k].std >= floor)
    winner = best if len(tied) == 1 else None
    return Verdict(best, winner, tied, tuple(ranking))


def _finite(value: float) -> float:
    """NaN (a diverged run) ranks last."""
    return -math.inf if value is None or math.isnan(value) else value
