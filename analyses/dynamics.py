"""Understanding the weights & gradients: distributions in training, gradient flow, good vs bad.

Compute trains Model 2 once with a recorder and stores, as arrays, the per-layer statistics and
what is drawn from the sampled weights and gradients (fixed histogram edges, per-snapshot shares
per bin, shares of exact zeros, percentile bands; never the values themselves), times the
recorder in paired runs, and trains the two deep MLPs of the gradient-flow comparison on several
seeds (their gradient norms as arrays). Draw rebuilds the summary from those arrays and makes
the GIFs, band and flow charts, tables and every verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from digits.gradient_flow import (BAD, GOOD, FlowResult, flow_arrays, flow_results,
                                  geometric_mean, run_flow)
from digits.models import Model2
from digits.plots import CLASS_COLORS, figure_to_rgb, new_figure
from digits.recording import (LOG_FLOOR, TB_PERCENTILES, DistributionRecorder, Recording,
                              RecordingSummary, distribution_summaries, summary_from_arrays)
from digits.sampling import subset
from digits.training import NAMES, WEIGHT_DECAY, TrainSpec, evaluate, train
from report import Analysis, ComputeContext, DrawContext
from report.compare import Runs, against, compare


@dataclass(frozen=True)
class Config:
    """Knobs of the weights-and-gradients section (defaults = full profile)."""

    train_size: int = 60_000  # images of the recorded run (a seeded subset when smaller)
    epochs: int = 5
    frames: int = 100  # snapshots, one GIF frame each
    sample_size: int = 20_000  # values kept per layer and snapshot (fc1 is subsampled)
    bins: int = 60  # histogram bins, fixed over all frames (compute stores the binned shares)
    coverage: float = 0.999  # histogram edges span this pooled quantile (symmetric about 0)
    fps: float = 8.0
    gif_dpi: int = 90  # 6.4 x 4.2 in at 90 dpi = 576 x 378 px frames
    overhead_pairs: int = 5  # short runs with and without the recorder, for its cost
    overhead_steps: int = 60  # steps per short run (at least 5 snapshots' worth)
    flow_depth: int = 8  # hidden layers of the good/bad MLPs
    flow_width: int = 128
    flow_steps: int = 1_000  # SGD steps for each of the two networks
    flow_batch: int = 64
    flow_lr: float = 0.05
    flow_momentum: float = 0.9
    flow_every: int = 5  # record gradient norms every this many steps
    flow_test: int = 10_000  # test images for the two networks' accuracy
    flow_seeds: int = 3  # independent runs of each network (initial weights, batch order)


ANALYSIS = Analysis(
    name="dynamics",
    requires=("dataset", "optimizers"),
    config=Config(),
    # Quick, about a minute on 2 CPU cores: 10k images x 2 epochs (25 s), three timing pairs
    # (6 s each), 2 x 40 frames (5 s) and two seeds of the two small MLPs (400 steps, 1 s each).
    quick={"train_size": 10_000, "epochs": 2, "frames": 40, "overhead_pairs": 3,
           "flow_steps": 400, "flow_test": 2_000, "flow_seeds": 2},
)

# The two networks of the good/bad comparison, by the key their arrays are stored under.
FLOW_NETWORKS = {"bad": BAD, "good": GOOD}


def snapshot_interval(total_steps: int, frames: int) -> int:
    """Steps between snapshots so that about `frames` snapshots cover `total_steps`."""
    return max(1, total_steps // max(frames, 1))


def majority_share(labels: torch.Tensor) -> float:
    """Accuracy of always answering the most common label: what a network that learned nothing
    but the class frequencies scores (a collapsed network predicts one class for every image)."""
    return float(torch.bincount(labels.cpu()).max()) / max(len(labels), 1)


# --- compute: the recorded run, its cost, the two deep networks --------------------------------


def recorded_run_spec(ctx: ComputeContext) -> TrainSpec:
    """The optimizer study's procedure (its batch size, momentum and weight decay) at the rate
    it chose, so that the chosen rate is used on the setup it was chosen for."""
    cfg: Config = ctx.cfg
    optimizer = ctx.metric_of("optimizers", "best_optimizer")
    return TrainSpec(epochs=cfg.epochs, batch_size=int(ctx.metric_of("optimizers", "batch_size")),
                     optimizer=optimizer, lr=float(ctx.metric_of("optimizers", "best_lr")),
                     momentum=float(ctx.metric_of("optimizers", "momentum")),
                     weight_decay=WEIGHT_DECAY.get(optimizer, 0.0))


def fresh_model2(ctx: ComputeContext) -> Model2:
    """Model 2 on [0, 1] pixels, as the optimizer study trained it, with the same initial
    weights every time (one stream, reused on purpose)."""
    ctx.streams.seed_torch_global("init/model2")
    return Model2()


def new_recorder(ctx: ComputeContext, every: int) -> DistributionRecorder:
    """A recorder whose sampled positions come from one stream (the same in every run)."""
    return DistributionRecorder(every=every, sample_size=ctx.cfg.sample_size,
                                seed=ctx.streams.seed("recorder_positions"))


def record_training(ctx: ComputeContext, spec: TrainSpec, images: torch.Tensor,
                    labels: torch.Tensor, every: int) -> tuple[Recording, Model2, dict]:
    """Train Model 2 once with the recorder; return the recording, the model and its timing."""
    model, recorder = fresh_model2(ctx), new_recorder(ctx, every)
    history = train(model, images, labels, spec, generator=ctx.streams.torch("batches/recorded"),
                    callbacks=[recorder], progress=ctx.progress, desc="recording")
    rec = recorder.recording
    ctx.log(f"recorded {len(rec.steps)} snapshots in {history.seconds:.1f} s, "
            f"{rec.seconds:.2f} s of it inside the recorder")
    return rec, model, {"seconds": history.seconds, "hook_seconds": rec.seconds,
                        "hook_share": rec.seconds / history.seconds,
                        "images_per_second": history.images_per_second}


def measure_overhead(ctx: ComputeContext, spec: TrainSpec, images: torch.Tensor,
                     labels: torch.Tensor, every: int) -> dict:
    """Paired short runs with and without the recorder: same weights, same batches.

    The pairs run back to back in alternating order, so that a change in the machine's load
    between two long runs cannot pass for (or hide) the recorder's cost. Run after the recorded
    run, which pays the process's one-off costs (thread pools, allocations; a first pair
    without such a warm-up measured a ratio of 0.17 on 2 CPU cores). Draw compares the times.
    """
    cfg: Config = ctx.cfg
    n = min(images.shape[0], max(cfg.overhead_steps, 5 * every) * spec.batch_size)
    segment = replace(spec, epochs=1)
    times: dict[bool, list[float]] = {False: [], True: []}
    finals: dict[bool, Model2] = {}
    for pair in ctx.progress(range(cfg.overhead_pairs), desc="overhead pairs"):
        for hooked in ((False, True) if pair % 2 == 0 else (True, False)):
            model = fresh_model2(ctx)
            history = train(model, images[:n], labels[:n], segment,
                            generator=ctx.streams.torch("batches/overhead"),
                            callbacks=[new_recorder(ctx, every)] if hooked else [])
            times[hooked].append(history.seconds)
            finals[hooked] = model
    identical = all(torch.equal(a, b) for a, b in zip(finals[True].state_dict().values(),
                                                      finals[False].state_dict().values()))
    ctx.log("paired runs with/without the recorder: "
            + ", ".join(f"{a / b:.3f}" for a, b in zip(times[True], times[False])))
    return {"overhead_images": n, "overhead_seconds_with": times[True],
            "overhead_seconds_without": times[False], "recording_is_passive": identical}


def train_flow_networks(ctx: ComputeContext) -> dict[str, list[FlowResult]]:
    """Both deep MLPs on each of `flow_seeds` seeds.

    Within a seed the two networks share the seed of their initial weights and batch order
    (one stream per seed, used by both on purpose), so that they differ only in design.
    """
    cfg: Config = ctx.cfg
    data = ctx.data
    n = min(cfg.flow_steps * cfg.flow_batch, data.train_images.shape[0])
    images, labels = subset(data.train_images, data.train_labels, n,
                            ctx.streams.torch("flow_subset"))
    spec = TrainSpec(epochs=1, batch_size=cfg.flow_batch, optimizer="sgd", lr=cfg.flow_lr,
                     momentum=cfg.flow_momentum)
    test = (data.test_images[:cfg.flow_test], data.test_labels[:cfg.flow_test])
    shape = {"depth": cfg.flow_depth, "width": cfg.flow_width,
             "mean": ctx.metric_of("dataset", "train_mean"),
             "std": ctx.metric_of("dataset", "train_std")}
    runs: dict[str, list[FlowResult]] = {key: [] for key in FLOW_NETWORKS}
    for i in range(cfg.flow_seeds):
        seed = ctx.streams.seed(f"flow/run{i}")
        for key, config in FLOW_NETWORKS.items():
            runs[key].append(run_flow(config, images, labels, test, spec, **shape, seed=seed,
                                      every=cfg.flow_every, progress=ctx.progress))
    return runs


def compute(ctx: ComputeContext) -> None:
    """Record a training run (its summaries, as arrays), time the recorder, train the good and
    bad networks."""
    cfg: Config = ctx.cfg
    data = ctx.data
    spec = recorded_run_spec(ctx)
    images, labels = subset(data.train_images, data.train_labels, cfg.train_size,
                            ctx.streams.torch("train_subset"))
    total_steps = cfg.epochs * -(-images.shape[0] // spec.batch_size)
    every = snapshot_interval(total_steps, cfg.frames)
    for name, value in {"optimizer": spec.optimizer, "batch_size": spec.batch_size,
                        "lr": spec.lr, "train_images": images.shape[0],
                        "total_steps": total_steps, "every": every}.items():
        ctx.metric(name, value)

    # 1-2. Weights and gradients while training the two-conv network, and what recording costs.
    rec, model, timing = record_training(ctx, spec, images, labels, every)
    overhead = measure_overhead(ctx, spec, images, labels, every)
    for name, value in {**timing, **overhead}.items():
        ctx.metric(name, value)
    ctx.metric("snapshots", len(rec.steps))
    ctx.metric("layers", rec.layers)
    ctx.metric("test_accuracy", evaluate(model, data.test_images, data.test_labels).accuracy)
    # The summaries draw uses, not the sampled values: 0.5 MB instead of 32 MB at 101 snapshots.
    for name, values in distribution_summaries(rec, cfg.bins, cfg.coverage).items():
        ctx.array(f"recording.{name}", values)

    # 3. Good versus bad gradient flow, over several seeds.
    for key, results in train_flow_networks(ctx).items():
        for name, values in flow_arrays(results).items():
            ctx.array(f"flow.{key}.{name}", values)
    ctx.metric("flow_baseline", majority_share(data.test_labels[:cfg.flow_test]))


# --- draw: frames, charts, tables, verdicts ---------------------------------------------------

# The band of the good/bad figure: these quantiles of the recorded steps (all seeds pooled).
FLOW_BAND = (0.1, 0.9)
# Single-batch gradients are noisy: changes over training compare the first and the last fifth
# of the snapshots (20 each at the full profile's 100 frames), not two single snapshots.
FIFTH = 0.2


def first_and_last(values: np.ndarray, share: float = FIFTH) -> tuple[np.ndarray, np.ndarray]:
    """The first and the last `share` of a series (at least one value each)."""
    k = max(1, int(len(values) * share))
    return values[:k], values[-k:]


def change_word(difference: float) -> str:
    """'rose' / 'fell' / 'did not change': the direction of a change in this one run."""
    return "rose" if difference > 0 else ("fell" if difference < 0 else "did not change")


def gradient_changes(rec: RecordingSummary) -> dict[str, dict]:
    """Per layer: compare(last fifth, first fifth) of log10 mean |gradient| over snapshots.

    Gradient sizes spread over orders of magnitude, so they are compared in log10: the
    difference is in decades. The snapshots follow each other in one training run: they are
    not independent repeats (report.compare's unit "snapshot"), so the verdict is always
    "cannot separate", with that reason, and the difference describes this run only.
    """
    out = {}
    for layer in rec.layers:
        logs = np.log10(np.maximum(rec.stat(layer, "g_mean_abs"), 1e-30))
        early, late = first_and_last(logs)
        out[layer] = compare(Runs(late, "snapshot"), Runs(early, "snapshot")).as_metric()
    return out


def gradient_ranking(rec: RecordingSummary) -> dict[str, object]:
    """Layers by mean log10 mean |gradient|, and the comparisons of the top and bottom two.

    Each side's values are the layer's snapshots of one run: not repeats, never separated.
    """
    logs = {layer: np.log10(np.maximum(rec.stat(layer, "g_mean_abs"), 1e-30))
            for layer in rec.layers}
    order = sorted(logs, key=lambda k: -logs[k].mean())
    runs = {layer: Runs(values, "snapshot") for layer, values in logs.items()}
    return {"order": order,
            "largest_vs_next": compare(runs[order[0]], runs[order[1]]).as_metric(),
            "smallest_vs_next": compare(runs[order[-1]], runs[order[-2]]).as_metric()}


def layer_rows(rec: RecordingSummary, changes: dict[str, dict] | None = None) -> list[dict]:
    """Per-layer summary: weight spread and gradient size early and late in the run."""
    changes = changes if changes is not None else gradient_changes(rec)
    rows = []
    for layer in rec.layers:
        w_std, g_mean = rec.stat(layer, "w_std"), rec.stat(layer, "g_mean_abs")
        early, late = first_and_last(g_mean)
        fan_in = int(np.prod(rec.shapes[layer][1:]))
        zeros = rec.zeros["grads"][layer]
        rows.append({"layer": layer, "shape": "×".join(map(str, rec.shapes[layer])),
                     "weights": int(np.prod(rec.shapes[layer])), "fan-in": fan_in,
                     # PyTorch's default initialisation: U(±1/sqrt(fan_in)).
                     "init bound": 1 / np.sqrt(fan_in),
                     "weight std, start": float(w_std[0]), "weight std, end": float(w_std[-1]),
                     "std growth": float(w_std[-1] / w_std[0]),
                     "mean |grad|, first fifth": float(early.mean()),
                     "mean |grad|, last fifth": float(late.mean()),
                     "change, log10": changes[layer]["difference"],
                     "gradient change": change_word(changes[layer]["difference"]),
                     "max |grad|, run": float(rec.stat(layer, "g_max_abs").max()),
                     "zero grads, end": float(zeros[-1])})
    return rows


def histogram_frames(rec: RecordingSummary, kind: str,
                     dpi: int) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """One RGB frame per snapshot: every layer's histogram on axes fixed for the whole run.

    Weights are binned by value; gradients by magnitude (log10 |g|, see digits.recording); the
    edges and shares are compute's (`digits.recording.summarize`).
    """
    import matplotlib.pyplot as plt

    scale = "linear" if kind == "weights" else "log"
    edges, shares, zeros = rec.edges[kind], rec.shares[kind], rec.zeros[kind]
    ncols = min(len(rec.layers), 2)
    nrows = -(-len(rec.layers) // ncols)
    fig, axes = new_figure(6.4, 2.1 * nrows, nrows=nrows, ncols=ncols)
    fig.set_dpi(dpi)
    patches, notes = [], []
    for i, (layer, ax) in enumerate(zip(rec.layers, axes.flat)):
        ax.stairs(shares[layer][0], edges[layer], color="0.55", lw=0.8, label="step 1")
        patches.append(ax.stairs(shares[layer][0], edges[layer], fill=True,
                                 color=CLASS_COLORS[i], alpha=0.75, label="now"))
        ax.set_xlim(edges[layer][0], edges[layer][-1])
        ax.set_ylim(0, 1.08 * shares[layer].max())
        what = "weights" if scale == "linear" else "|gradients|, log10"
        ax.set_title(f"{layer} {what} {tuple(rec.shapes[layer])}", fontsize=8)
        ax.tick_params(labelsize=7)
        if scale == "linear":
            ax.ticklabel_format(axis="x", style="sci", scilimits=(-2, 2))
            ax.xaxis.get_offset_text().set_fontsize(7)
        else:
            notes.append(ax.text(0.02, 0.92, "", transform=ax.transAxes, fontsize=7))
    for ax in axes.flat[len(rec.layers):]:
        ax.axis("off")
    title = fig.suptitle("", fontsize=9, x=0.01, ha="left")
    fig.supylabel("share of values per bin", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.legend(*axes.flat[0].get_legend_handles_labels(), loc="upper right", ncols=2,
               fontsize=7, bbox_to_anchor=(1, 1.005))
    # One figure redrawn once per frame: a new figure per frame would rebuild four axes.
    total = rec.steps[-1]
    frames = []
    for t, (step, epoch) in enumerate(zip(rec.steps, rec.epochs)):
        for layer, patch in zip(rec.layers, patches):
            patch.set_data(shares[layer][t])
        for layer, note in zip(rec.layers, notes):
            note.set_text(f"exact zeros (not shown): {zeros[layer][t]:.1%}")
        title.set_text(f"{kind} · epoch {epoch:.2f} · step {step:,} of {total:,} · "
                       f"frame {t + 1}/{len(rec.steps)}")
        frames.append(figure_to_rgb(fig, close=False))
    plt.close(fig)
    return frames, edges


def bands_figure(rec: RecordingSummary, kind: str):
    """TensorBoard-style distributions: percentile bands of each layer over training."""
    ncols = min(len(rec.layers), 2)
    nrows = -(-len(rec.layers) // ncols)
    fig, axes = new_figure(7, 2.3 * nrows, nrows=nrows, ncols=ncols, sharex=True)
    epochs = np.asarray(rec.epochs)
    half = len(TB_PERCENTILES) // 2
    for i, (layer, ax) in enumerate(zip(rec.layers, axes.flat)):
        bands = rec.bands[kind][layer]
        color = CLASS_COLORS[i]
        for k in range(half):  # outermost band first, each inner one darker
            ax.fill_between(epochs, bands[:, k], bands[:, -1 - k], color=color, lw=0,
                            alpha=0.18 + 0.12 * k)
        ax.plot(epochs, bands[:, half], color=color, lw=1)
        ax.set_title(f"{layer} {kind}", fontsize=9)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    for ax in axes[-1]:
        ax.set_xlabel("epoch")
    fig.tight_layout()
    return fig


def flow_figure(rec: RecordingSummary):
    """Mean and max absolute gradient per layer over training (log scale)."""
    fig, axes = new_figure(7, 2.8, ncols=2, sharex=True)
    epochs = np.asarray(rec.epochs)
    for i, layer in enumerate(rec.layers):
        axes[0, 0].plot(epochs, rec.stat(layer, "g_mean_abs"), color=CLASS_COLORS[i], label=layer)
        axes[0, 1].plot(epochs, rec.stat(layer, "g_max_abs"), color=CLASS_COLORS[i], label=layer)
    for ax, title in zip(axes[0], ("mean |gradient|", "max |gradient|")):
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("epoch")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def good_bad_figure(runs: dict[str, list[FlowResult]]):
    """Per-layer gradient norm of each network (all seeds pooled), and the first/last ratio."""
    fig, axes = new_figure(7.5, 3.0, ncols=2)
    for results, color in zip(runs.values(), (CLASS_COLORS[3], CLASS_COLORS[2])):
        label = results[0].config.label
        norms = np.concatenate([r.grad_norms() for r in results])  # [snapshots x seeds, layers]
        depth = np.arange(1, norms.shape[1] + 1)
        typical = np.exp(np.log(np.maximum(norms, 1e-300)).mean(0))
        lo, hi = np.quantile(norms, FLOW_BAND, axis=0)
        axes[0, 0].fill_between(depth, lo, hi, color=color, alpha=0.2, lw=0)
        axes[0, 0].plot(depth, typical, "o-", color=color, ms=3, label=label)
        for i, result in enumerate(results):  # one thin line per seed
            axes[0, 1].plot(result.snapshot_steps, result.first_last_ratio(), color=color,
                            lw=0.8, alpha=0.8, label=label if i == 0 else None)
    axes[0, 0].set_xlabel("layer (1 = next to the input)")
    axes[0, 0].set_ylabel("gradient norm of the weights")
    axes[0, 0].set_title("gradient norm by depth, {:.0%} to {:.0%} of steps".format(*FLOW_BAND))
    axes[0, 1].set_xlabel("step")
    axes[0, 1].set_title("first-layer / last-layer gradient norm")
    axes[0, 1].axhline(1, color="k", lw=0.6, ls="--")
    for ax in axes[0]:
        ax.set_yscale("log")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def flow_rows(runs: dict[str, list[FlowResult]]) -> list[dict]:
    """One table row per network and seed: gradient ratio and outcome."""
    rows = []
    for results in runs.values():
        for i, result in enumerate(results):
            ratio = result.first_last_ratio()
            rows.append({"network": result.config.label, "seed": i,
                         "ratio (geometric mean)": geometric_mean(ratio),
                         "ratio, first step": float(ratio[0]),
                         "ratio, last step": float(ratio[-1]),
                         "final train loss": result.train_loss,
                         "test accuracy": result.test_accuracy})
    return rows


def flow_metrics(runs: dict[str, list[FlowResult]], depth: int, baseline: float) -> dict:
    """What the prose says of the two networks, each claim from repeated seeds.

    `baseline` is the accuracy of always answering the most common class of the test images
    (compute's `flow_baseline`).
    """
    out: dict[str, object] = {}
    logs = {key: [np.log10(geometric_mean(r.first_last_ratio())) for r in results]
            for key, results in runs.items()}
    accs = {key: [r.test_accuracy for r in results] for key, results in runs.items()}
    for key, results in runs.items():
        # Typical ratio over steps and seeds (geometric), and per layer on the way to the input.
        ratio = float(10 ** np.mean(logs[key]))
        out[f"{key}_ratio"] = ratio
        out[f"{key}_orders"] = float(np.mean(logs[key]))  # log10 of the typical ratio
        out[f"{key}_per_layer_factor"] = ratio ** (1 / depth)
        out[f"{key}_ratio_first"] = geometric_mean([r.first_last_ratio()[0] for r in results])
        out[f"{key}_ratio_last"] = geometric_mean([r.first_last_ratio()[-1] for r in results])
        out[f"{key}_accuracy"] = float(np.mean(accs[key]))
        out[f"{key}_accuracies"] = accs[key]
        out[f"{key}_loss"] = float(np.mean([r.train_loss for r in results]))
        out[f"{key}_label"] = results[0].config.label
    seeds = {key: {"logs": Runs(logs[key], "seed"), "accs": Runs(accs[key], "seed")}
             for key in runs}
    out["flow_ratio_orders"] = compare(seeds["good"]["logs"], seeds["bad"]["logs"]).as_metric()
    out["ratio_orders"] = out["flow_ratio_orders"]["difference"]
    out["good_vs_bad_accuracy"] = compare(seeds["good"]["accs"],
                                          seeds["bad"]["accs"]).as_metric()
    # A fixed number: always answering the most common class of the test images.
    out["bad_vs_baseline"] = against(seeds["bad"]["accs"], baseline,
                                     "the most common class").as_metric()
    out["flow_steps"] = runs["bad"][0].steps
    out["flow_layers"] = depth + 1
    out["flow_runs"] = len(runs["bad"])
    out["flow_band"] = FLOW_BAND
    return out


def record_layer_metrics(ctx: DrawContext, rec: RecordingSummary) -> list[dict]:
    """The per-layer table and what the prose says of it: changes, widening, ranking."""
    changes = gradient_changes(rec)
    rows = layer_rows(rec, changes)
    ctx.metric("layer_summary", {row["layer"]: row for row in rows})
    ctx.metric("grad_changes", changes)
    ctx.metric("fifth_snapshots", len(first_and_last(np.asarray(rec.steps))[0]))
    # Directions in this one run, by the sign of the change: descriptions, not verdicts.
    for word, key in (("fell", "grads_fell"), ("rose", "grads_rose"),
                      ("did not change", "grads_unchanged")):
        ctx.metric(key, [r["layer"] for r in rows if r["gradient change"] == word])
    # Descriptive of this one run: the layer whose weight std grew by the largest factor.
    growth = max(rows, key=lambda r: r["std growth"])
    ctx.metric("fastest_widening", growth["layer"])
    ctx.metric("fastest_widening_factor", growth["std growth"])
    ranking = gradient_ranking(rec)
    ctx.metric("grad_order", ranking["order"])
    ctx.metric("largest_grad_vs_next", ranking["largest_vs_next"])
    ctx.metric("smallest_grad_vs_next", ranking["smallest_vs_next"])
    return rows


def draw_distributions(ctx: DrawContext, rec: RecordingSummary) -> None:
    """The weight and gradient GIFs, their TensorBoard-style bands, and the flow chart."""
    cfg: Config = ctx.cfg
    for kind in ("weights", "grads"):
        with ctx.timer() as t:
            frames, edges = histogram_frames(rec, kind, cfg.gif_dpi)
        ctx.log(f"{len(frames)} {kind} frames in {t.seconds:.1f} s")
        ctx.gif(f"{kind}_gif", frames, fps=cfg.fps, sprite=True)
        ctx.metric(f"{kind}_edges", {layer: [float(e[0]), float(e[-1])]
                                     for layer, e in edges.items()})
        if kind == "grads":  # log10 axes: their widest span in decades
            ctx.metric("grad_decades", max(float(e[-1] - e[0]) for e in edges.values()))
            ctx.metric("grad_log_floor", LOG_FLOOR)
        ctx.figure(f"{kind}_distributions", bands_figure(rec, kind))
    ctx.figure("gradient_flow", flow_figure(rec))


def recorded(ctx: DrawContext) -> RecordingSummary:
    """The recorded run's summary, rebuilt from the arrays compute stored."""
    return summary_from_arrays(lambda name: ctx.array(f"recording.{name}"))


def draw_overhead(ctx: DrawContext) -> None:
    """The paired timings: per-pair ratios, their overall ratio, and the verdict."""
    with_ = np.asarray(ctx.results["overhead_seconds_with"], dtype=float)
    without = np.asarray(ctx.results["overhead_seconds_without"], dtype=float)
    ctx.metric("overhead_ratios", with_ / without)
    ctx.metric("overhead_ratio", float(with_.mean() / without.mean()))
    ctx.metric("overhead_vs_plain", compare(Runs(with_, "timed run"),
                                            Runs(without, "timed run")).as_metric())


def draw_flow(ctx: DrawContext) -> None:
    """The good/bad networks: what the prose says of them, their table and figure."""
    cfg: Config = ctx.cfg
    runs = {key: flow_results(config, lambda name, key=key: ctx.array(f"flow.{key}.{name}"))
            for key, config in FLOW_NETWORKS.items()}
    for name, value in flow_metrics(runs, cfg.flow_depth, ctx.results["flow_baseline"]).items():
        ctx.metric(name, value)
    ctx.table("flow_comparison", flow_rows(runs))
    ctx.figure("good_bad_flow", good_bad_figure(runs))


def draw(ctx: DrawContext) -> None:
    """The recorded run's GIFs, bands, flow chart and table; the recorder's cost; good vs bad."""
    optimizer = ctx.results["optimizer"]
    ctx.metric("optimizer_name", NAMES.get(optimizer, optimizer))
    ctx.metric("tb_bands", [[TB_PERCENTILES[k], TB_PERCENTILES[-1 - k]]
                            for k in range(len(TB_PERCENTILES) // 2)])
    rec = recorded(ctx)
    ctx.table("layer_summary", record_layer_metrics(ctx, rec))
    draw_distributions(ctx, rec)
    draw_overhead(ctx)
    draw_flow(ctx)
