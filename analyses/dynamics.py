"""Understanding the weights & gradients: distributions in training, gradient flow, good vs bad."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from analyses.optimizers import NAMES, WEIGHT_DECAY
from digits.gradient_flow import BAD, GOOD, FlowResult, geometric_mean, run_flow
from digits.models import Model2
from digits.plots import CLASS_COLORS, new_figure
from digits.recording import (TB_PERCENTILES, DistributionRecorder, Recording, fixed_edges,
                              histograms, percentile_bands)
from digits.training import TrainSpec, evaluate, train
from report import Analysis, Context


@dataclass(frozen=True)
class Config:
    """Knobs of the weights-and-gradients section (defaults = full profile)."""

    train_size: int = 60_000  # images of the recorded run (a seeded subset when smaller)
    epochs: int = 5
    batch_size: int = 32  # the original's batch size, as in the optimizer study
    momentum: float = 0.5  # used only if SGD wins: the optimizer study's SGD momentum
    frames: int = 100  # snapshots, one GIF frame each
    sample_size: int = 20_000  # values kept per layer and snapshot (fc1 is subsampled)
    bins: int = 60  # histogram bins, fixed over all frames
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


ANALYSIS = Analysis(
    name="dynamics",
    title="Understanding the weights & gradients",
    requires=("dataset", "optimizers"),
    config=Config(),
    # Quick: 10k images x 2 epochs (about 8 s at 2,500 img/s on 2 idle cores), six short
    # timing runs, 2 x 40 frames and the two small MLPs.
    quick={"train_size": 10_000, "epochs": 2, "frames": 40, "flow_steps": 400,
           "flow_test": 2_000},
)


def seeded_subset(images: torch.Tensor, labels: torch.Tensor, n: int,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The first n of a seeded permutation (everything when n >= the set size)."""
    if n >= images.shape[0]:
        return images, labels
    index = torch.randperm(images.shape[0], generator=generator)[:n].to(images.device)
    return images[index], labels[index]


def snapshot_interval(total_steps: int, frames: int) -> int:
    """Steps between snapshots so that about `frames` snapshots cover `total_steps`."""
    return max(1, total_steps // max(frames, 1))


# --- figures ----------------------------------------------------------------------------------


def _frame_rgb(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def histogram_frames(rec: Recording, kind: str, bins: int, coverage: float,
                     dpi: int) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """One RGB frame per snapshot: every layer's histogram on axes fixed for the whole run.

    Weights are binned by value; gradients by magnitude (log10 |g|, see digits.recording).
    """
    import matplotlib.pyplot as plt

    scale = "linear" if kind == "weights" else "log"
    values = {layer: rec.values(kind, layer) for layer in rec.layers}
    edges = {layer: fixed_edges(values[layer], bins, coverage, scale) for layer in rec.layers}
    shares = {layer: histograms(values[layer], edges[layer], scale) for layer in rec.layers}
    zeros = {layer: (values[layer] == 0).mean(axis=1) for layer in rec.layers}
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
    total = rec.steps[-1]
    frames = []
    for t, (step, epoch) in enumerate(zip(rec.steps, rec.epochs)):
        for layer, patch in zip(rec.layers, patches):
            patch.set_data(shares[layer][t])
        for layer, note in zip(rec.layers, notes):
            note.set_text(f"exact zeros (not shown): {zeros[layer][t]:.1%}")
        title.set_text(f"{kind} · epoch {epoch:.2f} · step {step:,} of {total:,} · "
                       f"frame {t + 1}/{len(rec.steps)}")
        frames.append(_frame_rgb(fig))
    plt.close(fig)
    return frames, edges


def bands_figure(rec: Recording, kind: str):
    """TensorBoard-style distributions: percentile bands of each layer over training."""
    ncols = min(len(rec.layers), 2)
    nrows = -(-len(rec.layers) // ncols)
    fig, axes = new_figure(7, 2.3 * nrows, nrows=nrows, ncols=ncols, sharex=True)
    epochs = np.asarray(rec.epochs)
    half = len(TB_PERCENTILES) // 2
    for i, (layer, ax) in enumerate(zip(rec.layers, axes.flat)):
        bands = percentile_bands(rec.values(kind, layer))
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


def flow_figure(rec: Recording):
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


def good_bad_figure(results: list[FlowResult]):
    """Per-layer gradient norm of each network, and the first/last ratio over training."""
    fig, axes = new_figure(7.5, 3.0, ncols=2)
    for result, color in zip(results, (CLASS_COLORS[3], CLASS_COLORS[2])):
        norms = result.grad_norms()
        depth = np.arange(1, norms.shape[1] + 1)
        typical = np.exp(np.log(np.maximum(norms, 1e-300)).mean(0))
        lo, hi = np.quantile(norms, [0.1, 0.9], axis=0)
        axes[0, 0].fill_between(depth, lo, hi, color=color, alpha=0.2, lw=0)
        axes[0, 0].plot(depth, typical, "o-", color=color, ms=3, label=result.config.label)
        steps = np.asarray(result.recording.steps)
        axes[0, 1].plot(steps, result.first_last_ratio(), color=color, lw=1,
                        label=result.config.label)
    axes[0, 0].set_xlabel("layer (1 = next to the input)")
    axes[0, 0].set_ylabel("gradient norm of the weights")
    axes[0, 0].set_title("gradient norm by depth (10-90 % of steps)")
    axes[0, 1].set_xlabel("step")
    axes[0, 1].set_title("first-layer / last-layer gradient norm")
    axes[0, 1].axhline(1, color="k", lw=0.6, ls="--")
    for ax in axes[0]:
        ax.set_yscale("log")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# --- the run ----------------------------------------------------------------------------------


def layer_rows(rec: Recording) -> list[dict]:
    """Per-layer summary: weight spread and gradient size early and late in the run."""
    rows = []
    for layer in rec.layers:
        w_std, g_mean = rec.stat(layer, "w_std"), rec.stat(layer, "g_mean_abs")
        fifth = max(1, len(g_mean) // 5)  # single-batch gradients are noisy: average 20 %
        fan_in = int(np.prod(rec.shapes[layer][1:]))
        zeros = (rec.values("grads", layer) == 0).mean(axis=1)
        rows.append({"layer": layer, "shape": "×".join(map(str, rec.shapes[layer])),
                     "weights": int(np.prod(rec.shapes[layer])), "fan-in": fan_in,
                     # PyTorch's default initialisation: U(±1/sqrt(fan_in)).
                     "init bound": 1 / np.sqrt(fan_in),
                     "weight std, start": float(w_std[0]), "weight std, end": float(w_std[-1]),
                     "std growth": float(w_std[-1] / w_std[0]),
                     "mean |grad|, first 20 %": float(g_mean[:fifth].mean()),
                     "mean |grad|, last 20 %": float(g_mean[-fifth:].mean()),
                     "max |grad|, run": float(rec.stat(layer, "g_max_abs").max()),
                     "zero grads, end": float(zeros[-1])})
    return rows


def record_training(ctx: Context, spec: TrainSpec, images: torch.Tensor, labels: torch.Tensor,
                    every: int) -> tuple[Recording, Model2, dict]:
    """Train Model2 with the recorder; time it against plain training on paired short runs."""
    cfg: Config = ctx.cfg
    mean = ctx.metric_of("dataset", "train_mean")
    std = ctx.metric_of("dataset", "train_std")

    def fresh() -> Model2:
        torch.manual_seed(ctx.seed + 1)  # the same initial weights for every run
        return Model2(mean, std)

    def recorder() -> DistributionRecorder:
        return DistributionRecorder(every=every, sample_size=cfg.sample_size, seed=ctx.seed)

    # Overhead: pairs of short runs with and without the recorder, same weights, same batches,
    # back to back in alternating order, so that a change in the machine's load between two
    # long runs cannot pass for (or hide) the recorder's cost. The median ratio is reported.
    n = min(images.shape[0], max(cfg.overhead_steps, 5 * every) * spec.batch_size)
    segment = replace(spec, epochs=1)
    # Untimed warm-up: the first training in a process pays for thread pools and allocations
    # (a first pair without it measured 0.17 on 2 CPU cores).
    warm = min(n, 20 * spec.batch_size)
    train(fresh(), images[:warm], labels[:warm], segment, generator=ctx.generator(3),
          callbacks=[recorder()])
    times: dict[bool, list[float]] = {False: [], True: []}
    finals: dict[bool, Model2] = {}
    for pair in ctx.progress(range(cfg.overhead_pairs), desc="overhead pairs"):
        for hooked in ((False, True) if pair % 2 == 0 else (True, False)):
            model = fresh()
            history = train(model, images[:n], labels[:n], segment, generator=ctx.generator(2),
                            callbacks=[recorder()] if hooked else [])
            times[hooked].append(history.seconds)
            finals[hooked] = model
    ratios = np.array(times[True]) / np.array(times[False])
    identical = all(torch.equal(a, b) for a, b in zip(finals[True].state_dict().values(),
                                                      finals[False].state_dict().values()))

    model, rec_hook = fresh(), recorder()
    history = train(model, images, labels, spec, generator=ctx.generator(2),
                    callbacks=[rec_hook], progress=ctx.progress, desc="recording")
    rec = rec_hook.recording
    timing = {"seconds": history.seconds, "hook_seconds": rec.seconds,
              "hook_share": rec.seconds / history.seconds,
              "images_per_second": history.images_per_second,
              "overhead_images": n, "overhead_ratios": ratios,
              "hook_overhead": float(np.median(ratios)) - 1,
              # All pairs on the same side of 1, or does the noise exceed the cost?
              "overhead_consistent": bool((ratios > 1).all() or (ratios < 1).all()),
              "recording_is_passive": identical}
    ctx.log(f"recorded {len(rec.steps)} snapshots in {history.seconds:.1f} s, "
            f"{rec.seconds:.2f} s of it inside the recorder; paired runs with/without: "
            f"{', '.join(f'{r:.3f}' for r in ratios)}")
    return rec, model, timing


def run(ctx: Context) -> None:
    """Record a training run, draw its distributions, then compare good and bad gradient flow."""
    cfg: Config = ctx.cfg
    data = ctx.data
    optimizer = ctx.metric_of("optimizers", "best_optimizer")
    lr = float(ctx.metric_of("optimizers", "best_lr"))
    images, labels = seeded_subset(data.train_images, data.train_labels, cfg.train_size,
                                   ctx.generator(1))
    # The optimizer study's procedure (its momentum and weight decay) at its chosen rate.
    spec = TrainSpec(epochs=cfg.epochs, batch_size=cfg.batch_size, optimizer=optimizer, lr=lr,
                     momentum=cfg.momentum, weight_decay=WEIGHT_DECAY.get(optimizer, 0.0))
    total_steps = cfg.epochs * -(-images.shape[0] // cfg.batch_size)
    every = snapshot_interval(total_steps, cfg.frames)
    for name, value in {"optimizer": optimizer, "optimizer_name": NAMES.get(optimizer, optimizer),
                        "lr": lr, "train_images": images.shape[0],
                        "total_steps": total_steps, "every": every}.items():
        ctx.metric(name, value)

    # 1-2. Weights and gradients while training the two-conv network.
    rec, model, timing = record_training(ctx, spec, images, labels, every)
    for name, value in timing.items():
        ctx.metric(name, value)
    ctx.metric("snapshots", len(rec.steps))
    ctx.metric("layers", rec.layers)
    ctx.metric("test_accuracy", evaluate(model, data.test_images, data.test_labels).accuracy)
    rows = layer_rows(rec)
    ctx.table("layer_summary", rows, caption="Each layer's weights: their spread at the first "
              "and the last snapshot of the recorded run, and the mean absolute gradient over "
              "the first and the last fifth of the snapshots.")
    ctx.metric("layer_summary", {row["layer"]: row for row in rows})
    growth = max(rows, key=lambda r: r["std growth"])
    early, late = "mean |grad|, first 20 %", "mean |grad|, last 20 %"
    ctx.metric("grads_fell", [r["layer"] for r in rows if r[late] < r[early]])
    ctx.metric("grads_rose", [r["layer"] for r in rows if r[late] >= r[early]])
    ctx.metric("fastest_widening", growth["layer"])
    ctx.metric("fastest_widening_factor", growth["std growth"])

    what = {"weights": "weights", "grads": "gradient magnitudes, log10 |g|,"}
    note = {"weights": "", "grads": " The share of exact zeros, which a log axis cannot show, is "
            "printed in each panel."}
    for kind in ("weights", "grads"):
        word = "weight" if kind == "weights" else "gradient"
        with ctx.timer() as t:
            frames, edges = histogram_frames(rec, kind, cfg.bins, cfg.coverage, cfg.gif_dpi)
        ctx.log(f"{len(frames)} {word} frames in {t.seconds:.1f} s")
        ctx.gif(f"{kind}_gif", frames, fps=cfg.fps, sprite=True,
                caption=f"Histograms of each layer's {what[kind]} at {len(frames)} moments "
                f"of training ({cfg.bins} bins fixed over the whole run; grey: step 1)."
                f"{note[kind]}",
                alt=f"Animated histograms of the four layers' {word}s changing during training.")
        ctx.metric(f"{kind}_edges", {layer: [float(e[0]), float(e[-1])]
                                     for layer, e in edges.items()})
        ctx.figure(f"{kind}_distributions", bands_figure(rec, kind),
                   caption=f"The {word} distribution of each layer over training, in the style "
                   "of TensorBoard's distributions: bands between the 0/100, 7/93, 16/84 and "
                   "31/69 percentiles (darker = closer to the median line).",
                   alt=f"Four band charts of {word} percentiles against epochs.")
    ctx.figure("gradient_flow", flow_figure(rec),
               caption="Mean and maximum absolute gradient of each layer's weights over "
               "training (log scale).", alt="Two line charts of gradient magnitude per layer.")
    g_mean = {layer: rec.stat(layer, "g_mean_abs") for layer in rec.layers}
    ctx.metric("largest_mean_grad_layer", max(g_mean, key=lambda k: g_mean[k].mean()))
    ctx.metric("smallest_mean_grad_layer", min(g_mean, key=lambda k: g_mean[k].mean()))

    # 3. Good versus bad gradient flow.
    mean = ctx.metric_of("dataset", "train_mean")
    std = ctx.metric_of("dataset", "train_std")
    n = min(cfg.flow_steps * cfg.flow_batch, data.train_images.shape[0])
    flow_x, flow_y = seeded_subset(data.train_images, data.train_labels, n, ctx.generator(4))
    flow_spec = TrainSpec(epochs=1, batch_size=cfg.flow_batch, optimizer="sgd", lr=cfg.flow_lr,
                          momentum=cfg.flow_momentum)
    test = (data.test_images[:cfg.flow_test], data.test_labels[:cfg.flow_test])
    results = [run_flow(config, flow_x, flow_y, test, flow_spec, depth=cfg.flow_depth,
                        width=cfg.flow_width, mean=mean, std=std, seed=ctx.seed + 5,
                        every=cfg.flow_every, progress=ctx.progress) for config in (BAD, GOOD)]
    table = []
    for key, result in zip(("bad", "good"), results):
        ratio = result.first_last_ratio()
        row = {"network": result.config.label, "ratio (geometric mean)": geometric_mean(ratio),
               "ratio, first step": float(ratio[0]), "ratio, last step": float(ratio[-1]),
               "final train loss": result.train_loss, "test accuracy": result.test_accuracy}
        table.append(row)
        ctx.metric(f"{key}_ratio", row["ratio (geometric mean)"])
        ctx.metric(f"{key}_ratio_first", row["ratio, first step"])
        ctx.metric(f"{key}_ratio_last", row["ratio, last step"])
        ctx.metric(f"{key}_accuracy", result.test_accuracy)
        ctx.metric(f"{key}_loss", result.train_loss)
        ctx.metric(f"{key}_label", result.config.label)
    ctx.metric("flow_steps", results[0].recording.steps[-1])
    ctx.metric("flow_layers", cfg.flow_depth + 1)
    # The typical factor by which each layer shrinks the gradient norm on its way to the input.
    for key, row in zip(("bad", "good"), table):
        ctx.metric(f"{key}_per_layer_factor", row["ratio (geometric mean)"] ** (1 / cfg.flow_depth))
    ctx.metric("ratio_orders", float(np.log10(table[1]["ratio (geometric mean)"]
                                              / table[0]["ratio (geometric mean)"])))
    ctx.table("flow_comparison", table, caption="Gradient flow of the two deep networks: the "
              "ratio of the first layer's to the last layer's gradient norm, and the outcome.")
    ctx.figure("good_bad_flow", good_bad_figure(results),
               caption=f"Gradient norm of each layer's weights in two {cfg.flow_depth + 1}-layer "
               "networks trained with the same SGD settings: its typical value over the run "
               "(line, geometric mean; band: 10th to 90th percentile of the steps), and the "
               "ratio of the first layer's to the last layer's at each recorded step.",
               alt="Left: gradient norm against depth, flat for ReLU with batch norm and falling "
               "by orders of magnitude toward the input for sigmoid. Right: their ratio over "
               "training.")
