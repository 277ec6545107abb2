"""Comparing optimizers twice: one shared learning rate as in the original, then tuned fairly."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from digits.models import Model2
from digits.parallel import resolve_mode, train_many
from digits.plots import CLASS_COLORS, new_figure
from digits.study import (Split, Summary, Verdict, at_grid_edge, choose_lr, decide, log_grid,
                          subset, summarize, validation_split)
from digits.training import History, TrainSpec
from report import Analysis, Context

# The original notebook's optimizer race (DESIGN.md §6): Model 2, batch 32, seed 7, 10 epochs,
# one run each, test accuracy as it reported it. Its settings were not equal: momentum, eps and
# weight decay differed between optimizers, and Adadelta ran at a tenth of its usual rate.
ORIGINAL: dict[str, Any] = {
    "test_acc": {"sgd": 0.9805, "rmsprop": 0.9847, "adam": 0.9467, "adadelta": 0.9735,
                 "adagrad": 0.9326},
    "epochs": 10,
    "batch_size": 32,
    "seed": 7,
    "runs_per_optimizer": 1,
    "adadelta_lr_fraction": 0.1,  # of Adadelta's usual learning rate, 1.0
}

# Centre of each optimizer's learning-rate grid: its customary rate for a small CNN (PyTorch's
# defaults, except SGD, whose default 0.001 is far too low at momentum 0.5). The grid spans
# centre x cfg.lr_factors; a choice at the grid's edge is flagged in the table and prose.
LR_CENTRES: dict[str, float] = {"sgd": 0.1, "rmsprop": 1e-3, "adam": 1e-3, "adamw": 1e-3,
                                "adagrad": 1e-2, "adadelta": 1.0}
# AdamW's PyTorch default decay; with 0 it would be Adam. Every other optimizer uses none.
WEIGHT_DECAY: dict[str, float] = {"adamw": 0.01}
NAMES: dict[str, str] = {"sgd": "SGD", "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW",
                         "adagrad": "Adagrad", "adadelta": "Adadelta"}


@dataclass(frozen=True)
class Config:
    """Knobs of the optimizer study; defaults are the full profile (GPU, about 60 runs)."""

    optimizers: tuple[str, ...] = ("sgd", "rmsprop", "adam", "adagrad", "adadelta", "adamw")
    epochs: int = 10  # the original's
    batch_size: int = 32  # the original's
    momentum: float = 0.5  # SGD only, the original's model 1/2 setting
    shared_lr: float = 0.01  # study (a): one rate for all, the original's SGD rate
    lr_factors: tuple[float, ...] = (0.1, 0.3, 1.0, 3.0)  # study (b): grid = centre x factors
    validation: int = 5_000  # held out of the 60k training images to choose learning rates
    train_subset: int = 0  # images of the remaining training part to train on (0 = all)
    test_subset: int = 0  # test images to evaluate on (0 = all 10,000)
    seeds: int = 3  # runs per optimizer in both studies
    grid_seeds: int = 1  # runs per grid point (their own seeds, never reused for the final runs)
    mode: str = "auto"  # auto | sequential | concurrent (digits/parallel.py)
    group_size: int = 24  # models trained at once in concurrent mode


ANALYSIS = Analysis(
    name="optimizers",
    title="Comparing optimizers, fairly",
    requires=("dataset",),
    config=Config(),
    # 36 short runs of 1,500 images x 2 epochs: about 2 minutes on 2 idle CPU cores.
    quick={"epochs": 2, "lr_factors": (0.3, 1.0), "validation": 1_000, "train_subset": 1_500,
           "test_subset": 2_000, "seeds": 2},
)


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

    def summaries(self, study: str, key: str = "test") -> dict[str, Summary]:
        """Mean ± std over seeds of the last-epoch accuracy, per optimizer."""
        names = dict.fromkeys(r.optimizer for r in self.runs if r.study == study)
        return {name: summarize(self.final(study, name, key)) for name in names}


def train_spec(cfg: Config, optimizer: str, lr: float) -> TrainSpec:
    """The one procedure every run follows; only the optimizer and its rate change."""
    return TrainSpec(epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=optimizer, lr=lr,
                     momentum=cfg.momentum, weight_decay=WEIGHT_DECAY.get(optimizer, 0.0))


def _seed_offsets(run: Run) -> tuple[int, int]:
    """(init, data-order) seed offsets: shared and fair runs pair up, grid runs stand apart."""
    base = 10_000 if run.study == "grid" else 0
    return base + 2 * run.seed, base + 2 * run.seed + 1


def execute(runs: Sequence[Run], make_model: Callable[[], nn.Module], images: torch.Tensor,
            labels: torch.Tensor, eval_sets: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
            cfg: Config, seed: int, progress: Callable[..., Any] | None = None,
            desc: str = "") -> list[History]:
    """Build each run's model from its seed and train them all (concurrently where faster)."""
    models, generators = [], []
    for run in runs:
        init, order = _seed_offsets(run)
        # Initialise on the CPU from its own seed: the same weights on every device and for
        # every optimizer, so optimizers are compared on paired starting points.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed + init)
            models.append(make_model())
        generators.append(torch.Generator().manual_seed(seed + order))
    specs = [train_spec(cfg, r.optimizer, r.lr) for r in runs]
    return train_many(models, images, labels, specs, generators=generators,
                      eval_sets=dict(eval_sets), mode=cfg.mode, group_size=cfg.group_size,
                      progress=progress, desc=desc)


def run_study(make_model: Callable[[], nn.Module], split: Split,
              test: tuple[torch.Tensor, torch.Tensor], cfg: Config, seed: int,
              progress: Callable[..., Any] | None = None,
              log: Callable[[str], None] = print) -> StudyResult:
    """Study (a) at one shared rate, then (b): choose each rate on validation, run the seeds.

    The test set is passed to the final runs of (a) and (b) only, and only to be reported:
    `choose_lr` sees validation accuracies of the grid runs, which never evaluate on it.
    """
    result = StudyResult()
    train_x, train_y = split.train_images, split.train_labels
    validation = (split.val_images, split.val_labels)
    with_test = {"validation": validation, "test": test}

    def phase(runs: list[Run], eval_sets: Mapping[str, Any], what: str) -> list[History]:
        start = time.perf_counter()
        histories = execute(runs, make_model, train_x, train_y, eval_sets, cfg, seed,
                            progress, what)
        result.runs += runs
        result.histories += histories
        result.seconds += time.perf_counter() - start
        log(f"{what}: {len(runs)} runs in {time.perf_counter() - start:.1f} s")
        return histories

    seeds = range(cfg.seeds)
    phase([Run("shared", o, cfg.shared_lr, s) for o in cfg.optimizers for s in seeds],
          with_test, "(a) shared rate")
    result.grids = {o: log_grid(LR_CENTRES[o], cfg.lr_factors) for o in cfg.optimizers}
    grid_runs = [Run("grid", o, lr, s) for o in cfg.optimizers for lr in result.grids[o]
                 for s in range(cfg.grid_seeds)]
    grid_histories = phase(grid_runs, {"validation": validation}, "(b) rate grid")
    for opt in cfg.optimizers:
        scores: dict[float, list[float]] = {}
        for run, history in zip(grid_runs, grid_histories):
            if run.optimizer == opt:
                scores.setdefault(run.lr, []).append(history.eval_acc["validation"][-1])
        result.grid_scores[opt] = {lr: float(np.mean(v)) for lr, v in scores.items()}
        result.chosen_lr[opt] = choose_lr(result.grid_scores[opt])
    phase([Run("fair", o, result.chosen_lr[o], s) for o in cfg.optimizers for s in seeds],
          with_test, "(b) tuned rates")
    return result


# --- figures ---------------------------------------------------------------------------------


def _band(histories: Sequence[History], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over seeds of a per-epoch accuracy curve."""
    curves = np.array([h.eval_acc[key] for h in histories], dtype=float)
    return curves.mean(0), curves.min(0), curves.max(0)


LOGIT_TICKS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998,
               0.999)
FINE_TICKS = (0.4, 0.6, 0.75, 0.85, 0.875, 0.925, 0.96, 0.975, 0.985, 0.9925)  # narrow ranges


def _logit_axis(ax: Any, values: Sequence[float]) -> None:
    """Accuracy on a logit scale (90 %, 99 %, 99.9 % equally spaced), ticks in percent."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    finite = np.array([v for v in values if v is not None and np.isfinite(v)] or [0.5, 0.99])
    clipped = finite.clip(1e-3, 1 - 1e-3)
    logits = np.log(clipped / (1 - clipped))
    low, high = logits.min() - 0.25, logits.max() + 0.25  # a margin in logit units
    low_acc, high_acc = 1 / (1 + np.exp(-low)), 1 / (1 + np.exp(-high))
    ax.set_ylim(low_acc, high_acc)  # first, so the logit scale never sees limits outside (0, 1)
    ax.set_yscale("logit")
    ax.set_ylim(low_acc, high_acc)
    ticks = [t for t in LOGIT_TICKS if low_acc <= t <= high_acc]
    if len(ticks) < 4:
        ticks = sorted(t for t in LOGIT_TICKS + FINE_TICKS if low_acc <= t <= high_acc)
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:g} %"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("accuracy (logit scale)")


def _color(optimizer: str, order: Sequence[str]) -> Any:
    return CLASS_COLORS[list(order).index(optimizer) % len(CLASS_COLORS)]


def plot_accuracy(result: StudyResult, optimizers: Sequence[str]) -> Any:
    """Original (one run) vs shared rate vs tuned rates: mean ± std of test accuracy."""
    fig, axes = new_figure(7.5, 3.4)
    ax = axes[0, 0]
    shared, fair = result.summaries("shared"), result.summaries("fair")
    x = np.arange(len(optimizers))
    values = []
    original = [ORIGINAL["test_acc"].get(o, np.nan) for o in optimizers]
    ax.scatter(x - 0.22, original, marker="x", color="0.35", label="original (1 run)", zorder=3)
    for offset, summaries, label, color in ((0.0, shared, "shared rate", CLASS_COLORS[1]),
                                            (0.22, fair, "tuned rate", CLASS_COLORS[0])):
        means = [summaries[o].mean for o in optimizers]
        stds = [summaries[o].std for o in optimizers]
        ax.errorbar(x + offset, means, yerr=stds, fmt="o", capsize=3, color=color, label=label)
        values += means
    _logit_axis(ax, values + [v for v in original if np.isfinite(v)])
    ax.set_xticks(x, [NAMES.get(o, o) for o in optimizers])
    ax.set_ylabel("test accuracy (logit scale)")
    ax.legend(loc="lower left", ncols=3, fontsize=8, bbox_to_anchor=(0, 1.0))
    return fig


def plot_curves(result: StudyResult, optimizers: Sequence[str]) -> Any:
    """Per-epoch accuracy, mean over seeds with a min-max band, for both studies."""
    fig, axes = new_figure(10, 3.4, ncols=3)
    panels = (("shared", "test", "(a) shared rate: test"),
              ("fair", "validation", "(b) tuned rates: validation"),
              ("fair", "test", "(b) tuned rates: test"))
    values: dict[str, list[float]] = {"shared": [], "fair": []}
    for ax, (study, key, title) in zip(axes[0], panels):
        for opt in optimizers:
            histories = [h for _, h in result.select(study, opt)]
            mean, low, high = _band(histories, key)
            epochs = np.arange(1, len(mean) + 1)
            color = _color(opt, optimizers)
            ax.plot(epochs, mean, marker="o", ms=3, color=color, label=NAMES.get(opt, opt))
            ax.fill_between(epochs, low, high, color=color, alpha=0.2, lw=0)
            values[study] += list(low) + list(high)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_xticks(epochs)
    # (a) may hold diverged runs near 10 %: its own axis; the two (b) panels share one.
    for ax, (study, _, _) in zip(axes[0], panels):
        _logit_axis(ax, values[study])
    axes[0, 2].set_ylabel("")
    axes[0, 2].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def plot_grid(result: StudyResult, optimizers: Sequence[str], shared_lr: float) -> Any:
    """Validation accuracy against learning rate per optimizer; the chosen rate circled."""
    fig, axes = new_figure(7.5, 3.4)
    ax = axes[0, 0]
    values = []
    for opt in optimizers:
        lrs = sorted(result.grid_scores[opt])
        accs = [result.grid_scores[opt][lr] for lr in lrs]
        color = _color(opt, optimizers)
        ax.plot(lrs, accs, marker="o", ms=3, color=color, label=NAMES.get(opt, opt))
        chosen = result.chosen_lr[opt]
        ax.scatter([chosen], [result.grid_scores[opt][chosen]], s=80, facecolors="none",
                   edgecolors=color, lw=1.5)
        values += accs
    ax.axvline(shared_lr, color="0.4", ls=":", lw=1)
    ax.annotate("shared rate of (a)", (shared_lr, 0.02), xycoords=("data", "axes fraction"),
                fontsize=8, color="0.3", ha="left", xytext=(3, 0), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    _logit_axis(ax, values)
    ax.set_ylabel("validation accuracy (logit scale)")
    ax.legend(loc="lower left", ncols=3, fontsize=8, bbox_to_anchor=(0, 1.0))
    return fig


def runs_csv(result: StudyResult) -> str:
    """Every run's last-epoch numbers as CSV (grid runs have no test column: never evaluated)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["study", "optimizer", "lr", "seed", "validation_acc", "test_acc",
                     "train_loss"])
    for r, h in zip(result.runs, result.histories):
        test = h.eval_acc.get("test", [None])[-1]
        writer.writerow([r.study, r.optimizer, r.lr, r.seed, h.eval_acc["validation"][-1],
                         "" if test is None else test, h.train_loss[-1]])
    return out.getvalue()


# --- the section ------------------------------------------------------------------------------


def verdict_metrics(prefix: str, verdict: Verdict) -> dict[str, Any]:
    """Metrics the prose uses to state a result without typing it."""
    names = [NAMES.get(n, n) for n in verdict.tied]
    tied_text = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return {f"{prefix}best": verdict.best, f"{prefix}winner": verdict.winner,
            f"{prefix}tied": list(verdict.tied), f"{prefix}ranking": list(verdict.ranking),
            f"{prefix}best_name": NAMES.get(verdict.best, verdict.best),
            f"{prefix}winner_name": NAMES.get(verdict.winner, verdict.winner) if verdict.winner
            else None, f"{prefix}tied_text": tied_text}


def run(ctx: Context) -> None:
    """Split, train every run, choose rates on validation, report test accuracy over seeds."""
    cfg: Config = ctx.cfg
    data = ctx.data
    unknown = sorted(set(cfg.optimizers) - set(LR_CENTRES))
    if unknown:
        raise ValueError(f"no learning-rate grid centre for {unknown}; known: {sorted(LR_CENTRES)}")
    split = validation_split(data.train_images, data.train_labels, cfg.validation,
                             ctx.generator(1), n_train=cfg.train_subset)
    test = subset(data.test_images, data.test_labels, cfg.test_subset, ctx.generator(2))
    mean, std = ctx.metric_of("dataset", "train_mean"), ctx.metric_of("dataset", "train_std")
    mode = resolve_mode(cfg.mode, ctx.device)
    n_runs = len(cfg.optimizers) * (2 * cfg.seeds + len(cfg.lr_factors) * cfg.grid_seeds)
    ctx.log(f"{n_runs} runs of {cfg.epochs} epochs on {split.train_images.shape[0]:,} images, "
            f"{mode} training on {ctx.device}")
    result = run_study(lambda: Model2(mean, std), split, test, cfg, ctx.seed,
                       progress=ctx.progress, log=ctx.log)
    optimizers = list(cfg.optimizers)

    ctx.metric("n_train", split.train_images.shape[0])
    ctx.metric("n_validation", split.val_images.shape[0])
    ctx.metric("n_test", test[0].shape[0])
    ctx.metric("n_runs", len(result.runs))
    ctx.metric("training_mode", mode)
    ctx.metric("train_seconds", result.seconds)
    images = sum(len(h.epochs) * split.train_images.shape[0] for h in result.histories)
    ctx.metric("images_per_second", images / result.seconds if result.seconds else 0.0)
    ctx.metric("original", ORIGINAL)
    full = Config()
    ctx.metric("full_profile", {"epochs": full.epochs, "seeds": full.seeds,
                                "validation": full.validation, "grid": len(full.lr_factors)})
    ctx.metric("original_best", max(ORIGINAL["test_acc"], key=ORIGINAL["test_acc"].get))
    ctx.metric("original_best_name", NAMES[ctx.metrics["original_best"]])
    ctx.metric("lr_centres", {o: LR_CENTRES[o] for o in optimizers})
    ctx.metric("weight_decay", {o: WEIGHT_DECAY.get(o, 0.0) for o in optimizers})
    ctx.metric("names", {o: NAMES.get(o, o) for o in optimizers})

    shared, fair = result.summaries("shared"), result.summaries("fair")
    fair_val = result.summaries("fair", "validation")
    for prefix, summaries in (("shared", shared), ("fair", fair)):
        ctx.metric(f"{prefix}_test_mean", {o: s.mean for o, s in summaries.items()})
        ctx.metric(f"{prefix}_test_std", {o: s.std for o, s in summaries.items()})
        ctx.metric(f"{prefix}_test_min", {o: s.min for o, s in summaries.items()})
        ctx.metric(f"{prefix}_test_max", {o: s.max for o, s in summaries.items()})
    ctx.metric("fair_val_mean", {o: s.mean for o, s in fair_val.items()})
    ctx.metric("lr_grid", result.grids)
    ctx.metric("grid_val_acc", {o: {repr(lr): acc for lr, acc in scores.items()}
                                for o, scores in result.grid_scores.items()})
    ctx.metric("chosen_lr", result.chosen_lr)
    edge = [o for o in optimizers if at_grid_edge(result.chosen_lr[o], result.grids[o])]
    ctx.metric("chosen_at_edge", edge)
    ctx.metric("chosen_at_edge_names", ", ".join(NAMES.get(o, o) for o in edge))

    fair_verdict, shared_verdict = decide(fair), decide(shared)
    for key, value in verdict_metrics("", fair_verdict).items():
        ctx.metric(key, value)
    for key, value in verdict_metrics("shared_", shared_verdict).items():
        ctx.metric(key, value)
    ctx.metric("best_optimizer", fair_verdict.best)
    ctx.metric("best_lr", result.chosen_lr[fair_verdict.best])
    # How far tuning moved each optimizer from its shared-rate result, and the biggest mover.
    gain = {o: fair[o].mean - shared[o].mean for o in optimizers}
    ctx.metric("gain_from_tuning", gain)
    biggest = max(gain, key=gain.get)
    ctx.metric("biggest_gain", biggest)
    ctx.metric("biggest_gain_name", NAMES.get(biggest, biggest))
    ctx.metric("biggest_gain_value", gain[biggest])
    in_original = [o for o in optimizers if o in ORIGINAL["test_acc"]]
    ctx.metric("original_ranking", sorted(in_original, key=lambda o: -ORIGINAL["test_acc"][o]))
    ctx.metric("fair_ranking_of_original",
               [o for o in fair_verdict.ranking if o in ORIGINAL["test_acc"]])
    ctx.metric("ranking_changed",
               ctx.metrics["original_ranking"] != ctx.metrics["fair_ranking_of_original"])

    ctx.figure("test_accuracy", plot_accuracy(result, optimizers),
               caption="Test accuracy per optimizer: the original's single run (×), our runs "
               "at one shared learning rate and at each optimizer's tuned rate (mean ± std "
               "over seeds).",
               alt="Dot plot with error bars of test accuracy for each optimizer in three "
               "settings: original, shared learning rate, tuned learning rate.")
    ctx.figure("curves", plot_curves(result, optimizers),
               caption="Accuracy after each epoch, mean over seeds with the min-max band: "
               "(a) test accuracy at the shared rate, (b) validation and test accuracy at the "
               "tuned rates.",
               alt="Three panels of accuracy curves per optimizer over epochs with shaded bands.")
    ctx.figure("lr_grid", plot_grid(result, optimizers, cfg.shared_lr),
               caption="Choosing the learning rate: validation accuracy at each grid point "
               f"(mean of {cfg.grid_seeds} run(s) per point); the circled point is the rate "
               "each optimizer keeps. The dotted line is the shared rate of study (a).",
               alt="Validation accuracy against learning rate on a log axis, one line per "
               "optimizer, with the chosen rate circled.")

    rows = []
    for opt in optimizers:
        original = ORIGINAL["test_acc"].get(opt)
        rows.append({
            "optimizer": NAMES.get(opt, opt),
            "original %": round(100 * original, 2) if original is not None else None,
            "shared lr": cfg.shared_lr,
            "shared: mean %": round(100 * shared[opt].mean, 2),
            "shared: std": round(100 * shared[opt].std, 2),
            "tuned lr": result.chosen_lr[opt],
            "tuned: mean %": round(100 * fair[opt].mean, 2),
            "tuned: std": round(100 * fair[opt].std, 2),
        })
    ctx.table("comparison", rows, caption="Test accuracy (%): the original's single run after "
              f"{ORIGINAL['epochs']} epochs (its settings differed per optimizer; it did not "
              f"run AdamW), ours at one shared learning rate and at each optimizer's rate "
              f"tuned on validation, mean and std over {cfg.seeds} seeds of {cfg.epochs} "
              "epoch(s).")
    ctx.table("grid", [
        {"optimizer": NAMES.get(o, o), "learning rate": lr,
         "validation accuracy %": round(100 * acc, 2),
         "chosen": "yes" if lr == result.chosen_lr[o] else ""}
        for o in optimizers for lr, acc in sorted(result.grid_scores[o].items())],
        caption="Every grid point: validation accuracy (held-out training images) after the "
        "last epoch. The test set plays no part in this choice.")
    ctx.asset("runs.csv", runs_csv(result))
    ctx.save("study", {"runs": [r.__dict__ for r in result.runs],
                       "histories": [h.as_dict() for h in result.histories],
                       "chosen_lr": result.chosen_lr})
