"""Comparing optimizers twice: one shared learning rate as in the original, then tuned fairly.

Compute trains every run and records it (per epoch: validation and test accuracy, training
loss; whether it diverged), the rates chosen on validation and the optimizer carried into later
sections; draw summarises, compares and plots them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from digits import original
from digits.models import Model2
from digits.parallel import resolve_mode
from digits.plots import CLASS_COLORS, new_figure
from digits.sampling import subset
from digits.study import (LR_CENTRES, Split, StudyResult, StudySpec, Verdict, at_grid_edge,
                          choose_best, decide, last_epoch, run_study, validation_split)
from digits.training import NAMES, WEIGHT_DECAY, TrainSpec, make_optimizer, to_input
from report import Analysis, ComputeContext, DrawContext
from report.compare import AHEAD, BEHIND, Runs, Summary, compare, failed_run, summarize


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
    update_probes: int = 8  # first steps measured per optimizer (fresh weights and batch each)
    mode: str = "auto"  # auto | sequential | concurrent (digits/parallel.py)
    group_size: int = 24  # models trained at once in concurrent mode


ANALYSIS = Analysis(
    name="optimizers",
    config=Config(),
    # What 0 means where it is not a count.
    zero_means={"train_subset": "all", "test_subset": "all"},
    # 36 short runs of 1,500 images x 2 epochs: about 2 minutes on 2 idle CPU cores.
    quick={"epochs": 2, "lr_factors": (0.3, 1.0), "validation": 1_000, "train_subset": 1_500,
           "test_subset": 2_000, "seeds": 2},
)


def study_spec(cfg: Config) -> StudySpec:
    """The study's procedure from this section's config."""
    return StudySpec(optimizers=cfg.optimizers, epochs=cfg.epochs, batch_size=cfg.batch_size,
                     momentum=cfg.momentum, shared_lr=cfg.shared_lr, lr_factors=cfg.lr_factors,
                     seeds=cfg.seeds, grid_seeds=cfg.grid_seeds, mode=cfg.mode,
                     group_size=cfg.group_size)


def first_update_size(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                      spec: TrainSpec) -> float:
    """Mean absolute change of the weights made by the optimizer's first step on one batch."""
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = make_optimizer(spec, model.parameters())
    loss = nn.functional.cross_entropy(model(to_input(images)), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    changes = [(p.detach() - b).abs().sum() for p, b in zip(model.parameters(), before)]
    return float(torch.stack(changes).sum() / sum(b.numel() for b in before))


# --- compute: train, measure, choose ----------------------------------------------------------


def compute(ctx: ComputeContext) -> None:
    """Split, train every run, probe the first steps, choose on validation; record it all."""
    split, test = _data(ctx)
    result = _train(ctx, split, test)
    _record_runs(ctx, split, test, result)
    _measure_first_updates(ctx, split)
    _choose(ctx, result)


def _data(ctx: ComputeContext) -> tuple[Split, tuple[torch.Tensor, torch.Tensor]]:
    """The validation split (held out of the training set) and the test images scored."""
    cfg: Config = ctx.cfg
    data = ctx.data
    split = validation_split(data.train_images, data.train_labels, cfg.validation,
                             ctx.streams.torch("validation_split"), n_train=cfg.train_subset)
    test = subset(data.test_images, data.test_labels, cfg.test_subset,
                  ctx.streams.torch("test_subset"))
    return split, test


def _train(ctx: ComputeContext, split: Split,
           test: tuple[torch.Tensor, torch.Tensor]) -> StudyResult:
    """Both studies: (a) one shared rate; (b) rates chosen on validation, then the seeds."""
    cfg: Config = ctx.cfg
    mode = resolve_mode(cfg.mode, ctx.device)
    n_runs = len(cfg.optimizers) * (2 * cfg.seeds + len(cfg.lr_factors) * cfg.grid_seeds)
    ctx.log(f"{n_runs} runs of {cfg.epochs} epochs on {split.train_images.shape[0]:,} images, "
            f"{mode} training on {ctx.device}")
    ctx.metric("training_mode", mode)
    return run_study(Model2, split, test, study_spec(cfg), ctx.streams,
                     progress=ctx.progress, log=ctx.log)


def _record_runs(ctx: ComputeContext, split: Split, test: tuple, result: StudyResult) -> None:
    """Every run (per-epoch curves, diverged or not), the grids and their scores, the sizes,
    timings and the procedure."""
    cfg: Config = ctx.cfg
    optimizers = list(cfg.optimizers)
    ctx.metric("n_train", split.train_images.shape[0])
    ctx.metric("n_validation", split.val_images.shape[0])
    ctx.metric("n_test", test[0].shape[0])
    ctx.metric("n_runs", len(result.runs))
    # The procedure every run followed, for sections that train with the chosen rate
    # (dynamics reads batch_size and momentum).
    ctx.metric("batch_size", cfg.batch_size)
    ctx.metric("momentum", cfg.momentum)
    ctx.metric("train_seconds", result.seconds)
    images = sum(len(h.epochs) * split.train_images.shape[0] for h in result.histories)
    ctx.metric("images_per_second", images / result.seconds if result.seconds else 0.0)
    ctx.metric("lr_centres", {o: LR_CENTRES[o] for o in optimizers})
    ctx.metric("weight_decay", {o: WEIGHT_DECAY.get(o, 0.0) for o in optimizers})
    ctx.metric("lr_grid", result.grids)
    # Keys are repr(lr): float(repr(x)) == x, so draw reads back the very rates.
    ctx.metric("grid_val_acc", {o: {repr(lr): acc for lr, acc in scores.items()}
                                for o, scores in result.grid_scores.items()})
    ctx.metric("runs", result.records())


def _measure_first_updates(ctx: ComputeContext, split: Split) -> None:
    """How far each optimizer's first step moves the weights at the shared rate.

    Adaptive methods divide each step by a running gradient scale, so at one learning rate
    their first step can be far larger than SGD's; this measures it on the same initial
    weights and batch for every optimizer, over `update_probes` weights and batches, and
    records every probe (draw compares them with SGD's).
    """
    cfg: Config = ctx.cfg
    sizes: dict[str, list[float]] = {o: [] for o in cfg.optimizers}
    for probe in range(cfg.update_probes):
        index = torch.randperm(split.train_images.shape[0],
                               generator=ctx.streams.torch(f"update_probe/batch{probe}"))
        index = index[:cfg.batch_size].to(split.train_images.device)
        images, labels = split.train_images[index], split.train_labels[index]
        for opt in cfg.optimizers:
            with torch.random.fork_rng(devices=[]):
                ctx.streams.seed_torch_global(f"update_probe/init{probe}")
                model = Model2().to(images.device)
            spec = TrainSpec(optimizer=opt, lr=cfg.shared_lr, momentum=cfg.momentum,
                             weight_decay=WEIGHT_DECAY.get(opt, 0.0))
            sizes[opt].append(first_update_size(model, images, labels, spec))
    ctx.metric("first_update_sizes", sizes)


def _choose(ctx: ComputeContext, result: StudyResult) -> None:
    """The choices, on validation data only: each rate by its grid's validation accuracy, the
    optimizer the later sections use by the highest validation mean of the tuned runs."""
    fair_val = result.results("fair", "validation")
    ctx.metric("fair_val_mean", {o: float(np.mean(v)) for o, v in fair_val.items()})
    ctx.choice("chosen_lr", result.chosen_lr)
    best = choose_best(fair_val)
    ctx.choice("best_optimizer", best)
    ctx.choice("best_lr", result.chosen_lr[best])


# --- draw: summaries, verdicts, figures, tables -----------------------------------------------


@dataclass(frozen=True)
class Recorded:
    """The study as compute recorded it: every run, the grid scores and the chosen rates."""

    runs: Sequence[Mapping[str, Any]]  # digits.study.run_record of every run
    grid_scores: dict[str, dict[float, float]]  # mean validation accuracy per grid rate
    chosen_lr: dict[str, float]

    @classmethod
    def from_results(cls, results: Mapping[str, Any]) -> Recorded:
        """Read back from compute's metrics."""
        scores = {o: {float(lr): acc for lr, acc in by_lr.items()}
                  for o, by_lr in results["grid_val_acc"].items()}
        return cls(list(results["runs"]), scores, dict(results["chosen_lr"]))

    def results(self, study: str, key: str = "test") -> dict[str, list[float]]:
        """Last-epoch accuracy of every seed, per optimizer."""
        return last_epoch(self.runs, study, key)

    def summaries(self, study: str, key: str = "test") -> dict[str, Summary]:
        """Mean ± std over seeds of the last-epoch accuracy, per optimizer."""
        return {name: summarize(v) for name, v in self.results(study, key).items()}

    def curves(self, study: str, optimizer: str, key: str) -> np.ndarray:
        """Per-epoch accuracy [seeds, epochs] of one optimizer's runs in one study."""
        return np.array([r[key] for r in self.runs
                         if r["study"] == study and r["optimizer"] == optimizer], dtype=float)


def _band(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over seeds [seeds, epochs] of a per-epoch accuracy curve."""
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


def plot_accuracy(result: Recorded, optimizers: Sequence[str]) -> Any:
    """Original (one run) vs shared rate vs tuned rates: mean ± std of test accuracy."""
    fig, axes = new_figure(7.5, 3.4)
    ax = axes[0, 0]
    shared, fair = result.summaries("shared"), result.summaries("fair")
    x = np.arange(len(optimizers))
    values = []
    # The original's numbers corrected for its denominator (correct / 10,016, not / 10,000).
    original_acc = [original.true_accuracy(original.OPTIMIZER_TEST_ACC[o])
                    if o in original.OPTIMIZER_TEST_ACC else np.nan for o in optimizers]
    ax.scatter(x - 0.22, original_acc, marker="x", color="0.35",
               label="original (1 run, corrected)", zorder=3)
    for offset, summaries, label, color in ((0.0, shared, "shared rate", CLASS_COLORS[1]),
                                            (0.22, fair, "tuned rate", CLASS_COLORS[0])):
        means = [summaries[o].mean for o in optimizers]
        stds = [summaries[o].std for o in optimizers]
        ax.errorbar(x + offset, means, yerr=stds, fmt="o", capsize=3, color=color, label=label)
        values += means
    _logit_axis(ax, values + [v for v in original_acc if np.isfinite(v)])
    ax.set_xticks(x, [NAMES.get(o, o) for o in optimizers])
    ax.set_ylabel("test accuracy (logit scale)")
    ax.legend(loc="lower left", ncols=3, fontsize=8, bbox_to_anchor=(0, 1.0))
    return fig


def plot_curves(result: Recorded, optimizers: Sequence[str]) -> Any:
    """Per-epoch accuracy, mean over seeds with a min-max band, for both studies."""
    fig, axes = new_figure(10, 3.4, ncols=3)
    panels = (("shared", "test", "(a) shared rate: test"),
              ("fair", "validation", "(b) tuned rates: validation"),
              ("fair", "test", "(b) tuned rates: test"))
    values: dict[str, list[float]] = {"shared": [], "fair": []}
    for ax, (study, key, title) in zip(axes[0], panels):
        for opt in optimizers:
            mean, low, high = _band(result.curves(study, opt, key))
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


def plot_grid(result: Recorded, optimizers: Sequence[str], shared_lr: float) -> Any:
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


CHANCE = 1 / 10  # MNIST's ten classes


def run_failure(run: Mapping[str, Any]) -> str | None:
    """Why a run failed to train, or None (report.compare.failed_run): its loss stopped being
    finite ('diverged'), or it ended at chance on validation or test images, or at the loss of a
    uniform guess as compute's `diverged` flag records ('at chance')."""
    losses = run["train_loss"]
    loss = None if any(v is None for v in losses) else losses[-1]
    accuracies = [run[key][-1] for key in ("validation", "test") if key in run]
    why = failed_run(min(accuracies), CHANCE, loss)
    return why or ("at chance" if run["diverged"] else None)


def runs_csv(runs: Sequence[Mapping[str, Any]]) -> str:
    """Every run's last-epoch numbers as CSV (grid runs have no test column: never evaluated);
    `failed` says why a run did not train (diverged, at chance), `diverged` is compute's flag."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["study", "optimizer", "lr", "seed", "validation_acc", "test_acc",
                     "train_loss", "diverged", "failed"])
    for r in runs:
        test = r.get("test", [None])[-1]
        loss = r["train_loss"][-1]  # None once recorded: a loss that was not finite
        writer.writerow([r["study"], r["optimizer"], r["lr"], r["seed"], r["validation"][-1],
                         "" if test is None else test, "nan" if loss is None else loss,
                         "yes" if r["diverged"] else "", run_failure(r) or ""])
    return out.getvalue()


def names_text(optimizers: Sequence[str]) -> str:
    """'Adam', 'Adam and SGD', 'Adam, AdamW and SGD' ('' for none)."""
    names = [NAMES.get(n, n) for n in optimizers]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def verdict_metrics(prefix: str, verdict: Verdict) -> dict[str, Any]:
    """Metrics the prose uses to state a verdict without typing it."""
    tied_text = names_text(verdict.tied)
    return {f"{prefix}best": verdict.best, f"{prefix}winner": verdict.winner,
            f"{prefix}tied": list(verdict.tied), f"{prefix}ranking": list(verdict.ranking),
            f"{prefix}best_name": NAMES.get(verdict.best, verdict.best),
            f"{prefix}winner_name": NAMES.get(verdict.winner, verdict.winner) if verdict.winner
            else None, f"{prefix}tied_text": tied_text}


def draw(ctx: DrawContext) -> None:
    """Summaries over seeds, every verdict, the figures, the tables and runs.csv."""
    study = Recorded.from_results(ctx.results)
    _describe(ctx, study)
    _first_update_verdicts(ctx)
    _summaries_and_verdicts(ctx, study)
    _plot(ctx, study)
    _tables(ctx, study)
    ctx.asset("runs.csv", runs_csv(study.runs))


def _describe(ctx: DrawContext, study: Recorded) -> None:
    """Names, the original's facts, which chosen rates lie at the edge of their grid, and which
    runs diverged."""
    cfg: Config = ctx.cfg
    optimizers = list(cfg.optimizers)
    ctx.metric("names", {o: NAMES.get(o, o) for o in optimizers})
    race = original.OPTIMIZER_TEST_ACC
    ctx.metric("original_best", max(race, key=race.get))
    ctx.metric("original_best_name", NAMES[ctx.metrics["original_best"]])
    ctx.metric("original_true_acc", {o: original.true_accuracy(a) for o, a in race.items()})
    grids = ctx.results["lr_grid"]
    edge = [o for o in optimizers if at_grid_edge(study.chosen_lr[o], grids[o])]
    ctx.metric("chosen_at_edge", edge)
    ctx.metric("chosen_at_edge_names", ", ".join(NAMES.get(o, o) for o in edge))
    best = ctx.results["best_optimizer"]
    ctx.metric("best_optimizer_name", NAMES.get(best, best))
    # The runs compute flagged as diverged, per study, named for the prose.
    ctx.metric("diverged_runs", {
        name: [f"{NAMES.get(r['optimizer'], r['optimizer'])}, seed {r['seed']}"
               for r in study.runs if r["study"] == name and r["diverged"]]
        for name in ("shared", "grid", "fair")})
    # Every run that did not train (diverged, or ended at chance), named by optimizer, rate and
    # seed: its accuracy is in its optimizer's mean, so the prose says so wherever it counts.
    failed = {name: [{"optimizer": r["optimizer"],
                      "name": NAMES.get(r["optimizer"], r["optimizer"]), "lr": r["lr"],
                      "seed": r["seed"], "why": run_failure(r),
                      "validation": r["validation"][-1], "test": r.get("test", [None])[-1]}
                     for r in study.runs if r["study"] == name and run_failure(r)]
              for name in ("shared", "grid", "fair")}
    ctx.metric("failed_runs", failed)
    ctx.metric("failed_optimizers", {name: sorted({r["optimizer"] for r in runs})
                                     for name, runs in failed.items()})
    ctx.metric("failed_optimizers_text", {name: names_text(sorted({r["optimizer"] for r in runs}))
                                          for name, runs in failed.items()})
    ctx.metric("failed_text", {name: "; ".join(
        f"{r['name']} at rate {r['lr']:g}, seed {r['seed']} ({r['why']})" for r in runs)
        for name, runs in failed.items()})


def _first_update_verdicts(ctx: DrawContext) -> None:
    """Each optimizer's mean first step, as a multiple of SGD's and compared with it."""
    sizes: dict[str, list[float]] = ctx.results["first_update_sizes"]
    ctx.metric("first_update", {o: float(np.mean(v)) for o, v in sizes.items()})
    if "sgd" in sizes:
        ctx.metric("first_update_ratio",
                   {o: float(np.mean(v) / np.mean(sizes["sgd"])) for o, v in sizes.items()})
        # Each probe starts from fresh weights and a fresh batch: independent repeats.
        ctx.metric("first_update_vs_sgd",
                   {o: compare(Runs(v, "probe"), Runs(sizes["sgd"], "probe")).as_metric()
                    for o, v in sizes.items() if o != "sgd"})


def _summaries_and_verdicts(ctx: DrawContext, study: Recorded) -> None:
    """Test accuracy over seeds, and the reported verdicts by the one rule of report.compare."""
    cfg: Config = ctx.cfg
    optimizers = list(cfg.optimizers)
    shared, fair = study.results("shared"), study.results("fair")
    for prefix in ("shared", "fair"):
        summaries = study.summaries(prefix)
        ctx.metric(f"{prefix}_test_mean", {o: s.mean for o, s in summaries.items()})
        ctx.metric(f"{prefix}_test_std", {o: s.std for o, s in summaries.items()})
        ctx.metric(f"{prefix}_test_min", {o: s.min for o, s in summaries.items()})
        ctx.metric(f"{prefix}_test_max", {o: s.max for o, s in summaries.items()})
        ctx.metric(f"{prefix}_test_n", {o: s.n for o, s in summaries.items()})
    # Whether the optimizer carried forward (the highest validation mean) is also separated
    # from the others on validation: said on the page, no part of the choice.
    for key, value in verdict_metrics("val_", decide(study.results("fair", "validation"))).items():
        ctx.metric(key, value)
    for key, value in verdict_metrics("", decide(fair)).items():
        ctx.metric(key, value)
    for key, value in verdict_metrics("shared_", decide(shared)).items():
        ctx.metric(key, value)
    gain = {o: compare(Runs(fair[o], "seed"), Runs(shared[o], "seed")).as_metric()
            for o in optimizers}
    ctx.metric("tuning_vs_shared", gain)
    # The largest gain in mean, which the prose calls no more than that unless its verdict does.
    biggest = max(optimizers, key=lambda o: gain[o]["difference"])
    ctx.metric("biggest_gain", biggest)
    ctx.metric("biggest_gain_name", NAMES.get(biggest, biggest))
    ctx.metric("tuning_separated", [o for o in optimizers if gain[o]["verdict"] == AHEAD])
    ctx.metric("tuning_separated_text", names_text(ctx.metrics["tuning_separated"]))
    failed = ctx.metrics["failed_optimizers"]
    # Verdicts that rest on a failed run: every optimizer named in them with one.
    ctx.metric("shared_verdict_failed", [o for o in (ctx.metrics["shared_tied"] or [])
                                         if o in failed["shared"]])
    ctx.metric("fair_verdict_failed", [o for o in (ctx.metrics["tied"] or [])
                                       if o in failed["fair"]])
    ctx.metric("shared_verdict_failed_text", names_text(ctx.metrics["shared_verdict_failed"]))
    race = original.OPTIMIZER_TEST_ACC
    in_original = [o for o in optimizers if o in race]
    ctx.metric("original_ranking", sorted(in_original, key=lambda o: -race[o]))
    ranking = ctx.metrics["ranking"]
    ctx.metric("fair_ranking_of_original", [o for o in ranking if o in race])
    ctx.metric("ranking_changed",
               ctx.metrics["original_ranking"] != ctx.metrics["fair_ranking_of_original"])
    # The original's ranking, pair by pair, against the tuned runs' verdicts: a pair it ranked
    # is confirmed when the one it put first is ahead here, overturned when it is behind, and
    # open when these runs cannot separate them (a mean alone ranks nothing).
    pairs: dict[str, list[list[str]]] = {"confirmed": [], "overturned": [], "open": []}
    order = ctx.metrics["original_ranking"]
    for i, first in enumerate(order):
        for second in order[i + 1:]:
            verdict = compare(Runs(fair[first], "seed"), Runs(fair[second], "seed")).verdict
            key = {AHEAD: "confirmed", BEHIND: "overturned"}.get(verdict, "open")
            pairs[key].append([first, second])
    ctx.metric("original_pairs", pairs)
    ctx.metric("test_best_is_val_best", ctx.metrics["best"] == ctx.results["best_optimizer"])


def _plot(ctx: DrawContext, study: Recorded) -> None:
    """The accuracy dot plot, the per-epoch curves and the learning-rate grid."""
    cfg: Config = ctx.cfg
    optimizers = list(cfg.optimizers)
    ctx.figure("test_accuracy", plot_accuracy(study, optimizers))
    ctx.figure("curves", plot_curves(study, optimizers))
    ctx.figure("lr_grid", plot_grid(study, optimizers, cfg.shared_lr))


def _tables(ctx: DrawContext, study: Recorded) -> None:
    """The comparison table (with the original's numbers as reported and corrected), the grid."""
    cfg: Config = ctx.cfg
    shared, fair = study.summaries("shared"), study.summaries("fair")
    failed = ctx.metrics["failed_runs"]

    def failures(name: str, opt: str) -> str:
        return ", ".join(f"seed {r['seed']} ({r['why']})" for r in failed[name]
                         if r["optimizer"] == opt) or "none"

    rows = []
    for opt in cfg.optimizers:
        reported = original.OPTIMIZER_TEST_ACC.get(opt)
        rows.append({
            "optimizer": NAMES.get(opt, opt),
            "original, reported %": round(100 * reported, 2) if reported is not None else None,
            "original, corrected %": round(100 * original.true_accuracy(reported), 2)
            if reported is not None else None,
            "shared lr": cfg.shared_lr,
            "shared: mean %": round(100 * shared[opt].mean, 2),
            "shared: std": round(100 * shared[opt].std, 2),
            "tuned lr": study.chosen_lr[opt],
            "tuned: mean %": round(100 * fair[opt].mean, 2),
            "tuned: std": round(100 * fair[opt].std, 2),
            "failed runs, shared": failures("shared", opt),
            "failed runs, tuned": failures("fair", opt),
        })
    ctx.table("comparison", rows)
    ctx.table("grid", [
        {"optimizer": NAMES.get(o, o), "learning rate": lr,
         "validation accuracy %": round(100 * acc, 2),
         "chosen": "yes" if lr == study.chosen_lr[o] else "",
         "failed runs": ", ".join(f"seed {r['seed']} ({r['why']})" for r in failed["grid"]
                                  if r["optimizer"] == o and r["lr"] == lr)}
        for o in cfg.optimizers for lr, acc in sorted(study.grid_scores[o].items())])
