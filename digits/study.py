"""Fair comparisons of training recipes: validation split, learning-rate grids, the study runner.

The learning rate is chosen from validation scores only, and the test set is passed to the final
runs only to be reported. The choices (`choose_lr`, `choose_best`) are plain rules over validation
scores; `decide`, the verdict between several candidates, applies `report.compare`'s one rule to
every pair and is for reporting only (an analysis's draw stage), never for choosing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from digits.parallel import train_many
from digits.training import WEIGHT_DECAY, History, TrainSpec
from report.compare import AHEAD, UNSEPARATED, Runs, compare, summarize

# Centre of each optimizer's learning-rate grid: its customary rate for a small CNN (PyTorch's
# defaults, except SGD, whose default 0.001 is far too low at momentum 0.5). The grid spans
# centre x factors; a choice at the grid's edge is flagged on the page.
LR_CENTRES: dict[str, float] = {"sgd": 0.1, "rmsprop": 1e-3, "adam": 1e-3, "adamw": 1e-3,
                                "adagrad": 1e-2, "adadelta": 1.0}


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


def choose_best(scores: Mapping[str, Sequence[float]]) -> str:
    """The candidate with the highest mean validation score (e.g. the optimizer carried forward).

    A mean that is NaN (a diverged run) never wins; equal means go to the first name in sorted
    order, as in `decide`'s ranking, so the choice does not depend on dict order. A plain rule
    over validation scores: whether the best is *separated* from the rest is a verdict for the
    page (`decide`), not part of the choice.
    """
    if not scores:
        raise ValueError("choose_best needs at least one candidate")
    means = {k: float(np.mean(np.asarray(v, dtype=float))) for k, v in scores.items()}
    return min(means, key=lambda k: (-means[k] if math.isfinite(means[k]) else math.inf, k))


# --- the study --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudySpec:
    """What a study trains: optimizers, grid, seeds and the procedure shared by every run."""

    optimizers: tuple[str, ...]
    epochs: int
    batch_size: int
    momentum: float  # SGD only
    shared_lr: float  # study (a): one rate for all
    lr_factors: tuple[float, ...]  # study (b): grid = centre x factors
    seeds: int  # runs per optimizer in both studies
    grid_seeds: int  # runs per grid point (their own seeds, never reused for the final runs)
    mode: str = "auto"  # digits.parallel: auto | sequential | concurrent
    group_size: int = 24


@dataclass(frozen=True)
class Run:
    """One training run of the study."""

    study: str  # "shared" (a), "grid" (b: choosing the rate) or "fair" (b: final runs)
    optimizer: str
    lr: float
    seed: int  # index; the same index gives the same initial weights and data order


@dataclass
class StudyResult:
    """Every run's history, the grids, the chosen rates and the per-study summaries."""

    runs: list[Run] = field(default_factory=list)
    histories: list[History] = field(default_factory=list)
    grids: dict[str, list[float]] = field(default_factory=dict)
    grid_scores: dict[str, dict[float, float]] = field(default_factory=dict)  # mean val acc
    chosen_lr: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def select(self, study: str, optimizer: str | None = None) -> list[tuple[Run, History]]:
        """(run, history) pairs of one study, optionally of one optimizer."""
        return [(r, h) for r, h in zip(self.runs, self.histories)
                if r.study == study and (optimizer is None or r.optimizer == optimizer)]

    def final(self, study: str, optimizer: str, key: str) -> list[float]:
        """Last-epoch accuracy on eval set `key` of each seed's run."""
        return [h.eval_acc[key][-1] for _, h in self.select(study, optimizer)]

    def results(self, study: str, key: str = "test") -> dict[str, list[float]]:
        """Last-epoch accuracy of every seed, per optimizer."""
        names = dict.fromkeys(r.optimizer for r in self.runs if r.study == study)
        return {name: self.final(study, name, key) for name in names}

    def records(self) -> list[dict[str, Any]]:
        """Every run as plain numbers (what an analysis records, and `last_epoch` reads back)."""
        return [run_record(r, h) for r, h in zip(self.runs, self.histories)]


def diverged(train_loss: Sequence[float], classes: int = 10) -> bool:
    """Whether a run diverged: its training loss stopped being a finite number, or its last
    epoch's mean loss stayed within 1 % of ln(classes), the loss of a uniform guess.

    A network that blew up and ended predicting one distribution for every image sits there:
    in a quick build three runs at the shared rate ended at 2.301 to 2.303 (ln 10 = 2.303;
    guessing MNIST's class frequencies gives 2.301) with 9 to 12 % accuracy, while the slowest
    run that was still learning ended at 1.96. Descriptive only: no choice reads it.
    """
    if not train_loss:
        return False
    if not all(math.isfinite(v) for v in train_loss):
        return True
    return train_loss[-1] >= 0.99 * math.log(classes)


def run_record(run: Run, history: History) -> dict[str, Any]:
    """One run as plain numbers: what it was, its per-epoch curves, and whether it diverged.

    Accuracies are per epoch on each set the run was evaluated on ("validation"; "test" for the
    final runs of both studies only, never for grid runs); `diverged` is `diverged`'s verdict on
    its training loss (recorded here, where a loss that is not finite is still one: a metric
    keeps it as None).
    """
    record: dict[str, Any] = {"study": run.study, "optimizer": run.optimizer, "lr": run.lr,
                              "seed": run.seed}
    for key, curve in history.eval_acc.items():
        record[key] = list(curve)
    record["train_loss"] = list(history.train_loss)
    record["diverged"] = diverged(history.train_loss)
    return record


def last_epoch(records: Sequence[Mapping[str, Any]], study: str,
               key: str = "test") -> dict[str, list[float]]:
    """Last-epoch accuracy on set `key` of every seed of one study, per optimizer (in the order
    the runs were recorded): `StudyResult.results` read back from `run_record`s."""
    out: dict[str, list[float]] = {}
    for record in records:
        if record["study"] == study:
            out.setdefault(record["optimizer"], []).append(record[key][-1])
    return out


def train_spec(spec: StudySpec, optimizer: str, lr: float) -> TrainSpec:
    """The one procedure every run follows; only the optimizer and its rate change."""
    return TrainSpec(epochs=spec.epochs, batch_size=spec.batch_size, optimizer=optimizer, lr=lr,
                     momentum=spec.momentum, weight_decay=WEIGHT_DECAY.get(optimizer, 0.0))


def stream_names(run: Run) -> tuple[str, str]:
    """(init, data-order) stream names: shared and fair runs pair up, grid runs stand apart."""
    group = "grid" if run.study == "grid" else "final"
    return f"{group}/init/seed{run.seed}", f"{group}/order/seed{run.seed}"


def execute(runs: Sequence[Run], make_model: Callable[[], nn.Module], images: torch.Tensor,
            labels: torch.Tensor, eval_sets: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
            spec: StudySpec, streams: Any, progress: Callable[..., Any] | None = None,
            desc: str = "") -> list[History]:
    """Build each run's model from its named streams and train them all (concurrently where
    faster). `streams` is the analysis's `report.streams.Streams`."""
    models, generators = [], []
    for run in runs:
        init, order = stream_names(run)
        # Initialise on the CPU from its own stream: the same weights on every device and for
        # every optimizer, so optimizers are compared on paired starting points.
        with torch.random.fork_rng(devices=[]):
            streams.seed_torch_global(init)
            models.append(make_model())
        generators.append(streams.torch(order))
    specs = [train_spec(spec, r.optimizer, r.lr) for r in runs]
    return train_many(models, images, labels, specs, generators=generators,
                      eval_sets=dict(eval_sets), mode=spec.mode, group_size=spec.group_size,
                      progress=progress, desc=desc)


def run_study(make_model: Callable[[], nn.Module], split: Split,
              test: tuple[torch.Tensor, torch.Tensor], spec: StudySpec, streams: Any,
              progress: Callable[..., Any] | None = None,
              log: Callable[[str], None] = print) -> StudyResult:
    """Study (a) at one shared rate, then (b): choose each rate on validation, run the seeds.

    The test set is passed to the final runs of (a) and (b) only, and only to be reported:
    `choose_lr` sees validation accuracies of the grid runs, which never evaluate on it.
    """
    unknown = sorted(set(spec.optimizers) - set(LR_CENTRES))
    if unknown:
        raise ValueError(f"no learning-rate grid centre for {unknown}; known: {sorted(LR_CENTRES)}")
    result = StudyResult()
    train_x, train_y = split.train_images, split.train_labels
    validation = (split.val_images, split.val_labels)
    with_test = {"validation": validation, "test": test}

    def phase(runs: list[Run], eval_sets: Mapping[str, Any], what: str) -> list[History]:
        start = time.perf_counter()
        histories = execute(runs, make_model, train_x, train_y, eval_sets, spec, streams,
                            progress, what)
        result.runs += runs
        result.histories += histories
        result.seconds += time.perf_counter() - start
        log(f"{what}: {len(runs)} runs in {time.perf_counter() - start:.1f} s")
        return histories

    seeds = range(spec.seeds)
    phase([Run("shared", o, spec.shared_lr, s) for o in spec.optimizers for s in seeds],
          with_test, "(a) shared rate")
    result.grids = {o: log_grid(LR_CENTRES[o], spec.lr_factors) for o in spec.optimizers}
    grid_runs = [Run("grid", o, lr, s) for o in spec.optimizers for lr in result.grids[o]
                 for s in range(spec.grid_seeds)]
    grid_histories = phase(grid_runs, {"validation": validation}, "(b) rate grid")
    for opt in spec.optimizers:
        scores: dict[float, list[float]] = {}
        for run, history in zip(grid_runs, grid_histories):
            if run.optimizer == opt:
                scores.setdefault(run.lr, []).append(history.eval_acc["validation"][-1])
        result.grid_scores[opt] = {lr: float(np.mean(v)) for lr, v in scores.items()}
        result.chosen_lr[opt] = choose_lr(result.grid_scores[opt])
    phase([Run("fair", o, result.chosen_lr[o], s) for o in spec.optimizers for s in seeds],
          with_test, "(b) tuned rates")
    return result


# --- verdicts: for the page only (draw), never for a choice ---------------------------------


@dataclass(frozen=True)
class Verdict:
    """Who is best, and whether `report.compare` separates it from every other candidate."""

    best: str  # highest mean, whether or not it is a clear winner
    winner: str | None  # `best` when it is ahead of every other candidate, else None
    tied: tuple[str, ...]  # `best` and every candidate it cannot be separated from (best first)
    ranking: tuple[str, ...]  # all candidates, highest mean first


def decide(results: Mapping[str, Sequence[float]], unit: str = "seed") -> Verdict:
    """Rank candidates by mean; the best wins only if `compare` puts it ahead of each other one.

    Each candidate's values are independent repeats of `unit` (report.compare.UNITS).
    Otherwise it ties with every candidate it cannot be separated from. Equal means are ordered
    by name, so the verdict does not depend on dict order.
    """
    if not results:
        raise ValueError("decide needs at least one candidate")
    summaries = {k: summarize(v) for k, v in results.items()}
    ranking = sorted(summaries, key=lambda k: (-summaries[k].mean, k))
    best = ranking[0]
    verdicts = {k: compare(Runs(results[best], unit), Runs(results[k], unit)).verdict
                for k in ranking[1:]}
    tied = (best, *(k for k in ranking[1:] if verdicts[k] == UNSEPARATED))
    winner = best if all(v == AHEAD for v in verdicts.values()) else None
    return Verdict(best, winner, tied, tuple(ranking))
