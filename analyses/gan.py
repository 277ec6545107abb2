"""A conditional GAN, measured: the original's setup reproduced, then corrected step by step.

`compute` trains every recipe side by side and records raw results: each measurement (every
metric, overall and per class) of every run at every measured epoch and of the final generators,
the loss histories, and the generated digits the page shows (uint8). `draw` summarises them into
the ablation, the verdicts and every figure, without running a network.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from digits import original
from digits.gan import (
    OPTIMIZERS,
    RECIPES,
    AdamSetting,
    Discriminator,
    GanHistory,
    Generator,
    Recipe,
    generate,
    optimizers_named,
    recorded_epochs,
    to_unit,
    train_gan,
)
from digits.generative_metrics import (
    conditional_accuracy,
    diversity,
    frechet_distance,
    inception_score,
    judge_outputs,
    one_nn_accuracy,
    per_class,
    precision_recall,
)
from digits.models import BestCNN
from digits.plots import CLASS_COLORS, figure_to_rgb, new_figure
from digits.sampling import balanced_index, subset, subset_index
from report import Analysis, ComputeContext, DrawContext
from report.compare import Runs, compare


@dataclass(frozen=True)
class Config:
    """Knobs of the GAN section; defaults are the full profile (a GPU)."""

    train_subset: int = 0  # 0 = all 60,000 training images; else a seeded random subset
    # The original's settings: z of 100, its number of epochs, and its optimizer (Adam at 2e-4,
    # torch's default betas, batches of 100).
    epochs: int = original.GAN_EPOCHS
    z_dim: int = original.GAN_Z
    # Names of digits.gan.OPTIMIZERS. One: every run trains with it. Several: before the runs
    # the page reports, every recipe trains `trial_epochs` epochs with each, on streams of
    # their own, and the build keeps the one its judge prefers (see `choose_optimizer`).
    optimizers: tuple[str, ...] = ("original",)
    trial_epochs: int = 4
    # Hidden widths of the fully connected layers (the common conditional-GAN layout).
    g_widths: tuple[int, ...] = (256, 512, 1024)
    d_widths: tuple[int, ...] = (1024, 512, 256)
    # Recipes trained side by side (names of digits.gan.RECIPES), each adding one change to the
    # one before: the first is the original's setup, the last is "the corrected run".
    runs: tuple[str, ...] = ("original", "range", "dropout", "smoothing", "spectral")
    record_every: int = 10  # epochs between measurements (and GIF frames)
    samples_per_class: int = 500  # generated digits per class for each measurement
    reference_per_class: int = 500  # real test digits per class (and as many training digits)
    k: int = 3  # neighbours defining the precision/recall manifolds (Kynkäänniemi et al.: 3)
    fid_batches: int = 5  # independent generated sets at the end, for the spread of FID
    collapse_recall: float = 0.1  # a class counts as collapsed when its recall is below this
    explode_limit: float = 100.0  # an epoch-mean loss above this stops a run as exploded
    walk_steps: int = 10  # images along each walk through z
    copy_check: int = 100  # generated and test digits per class compared with the train set
    fps: float = 4.0


ANALYSIS = Analysis(
    name="gan",
    requires=("dataset", "classifiers"),
    config=Config(),
    zero_means={"train_subset": "all"},  # what 0 means where it is not a count
    # 2 CPU cores. With the original's optimizer (Adam 2e-4, beta1 0.9, batches of 100), 320
    # steps at half widths and 1,920 at quarter widths left conditional accuracy at chance;
    # Adam 2e-4 with beta1 0.5 stayed at chance for 1,750 steps of 64. Those were hand trials,
    # judged by the conditional accuracy the page reports, so the quick profile no longer fixes
    # a setting: it names three, declared before any trial of this build (the original's,
    # DCGAN's and a tenfold step), and the build chooses among them on a criterion the page
    # does not report, in trial runs whose generators it does not show. 4 trial epochs of 8,000
    # images each (248 to 500 steps) took 14 s of training on two cores; mean cross-entropies
    # 16.5 (original), 11.7 (DCGAN) and 4.8 (tenfold step), which was kept. Quarter widths, 20
    # epochs of 8,000 images measured every 4; the faithful run, the range fix and the
    # corrected run. The whole section took 66.7 s on two cores, 29 s of it training the
    # reported runs; on an H200 (before the trials) they trained in 1.6 s.
    quick={"train_subset": 8_000, "epochs": 20, "record_every": 4,
           "optimizers": ("original", "dcgan", "large-step"),
           "g_widths": (64, 128, 256), "d_widths": (256, 128, 64),
           "runs": ("original", "range", "smoothing"), "samples_per_class": 100,
           "reference_per_class": 100, "fid_batches": 3, "copy_check": 30},
)

# What one measurement of a set of digits holds: these overall, and PER_CLASS also per class.
METRICS = ("cond_acc", "fid", "precision", "recall", "one_nn", "inception", "diversity")
PER_CLASS = ("cond_acc", "precision", "recall", "one_nn", "diversity")
N_CLASSES = 10
GRID_PER_CLASS = 10  # the fixed-noise grids: 10 digits of each class, one row per class
PIXEL_BINS = 80  # histogram bins over [-1, 1]: 0.025 wide, with an edge at 0


# --- helpers of compute (pure, tested in tests/test_gan.py) ------------------------------------


def recipes_named(names: Sequence[str]) -> list[Recipe]:
    """The recipes of digits.gan.RECIPES named in `names`, in the order given (two at least)."""
    unknown = [n for n in names if n not in RECIPES]
    if unknown or len(names) < 2:
        raise ValueError(f"runs must name at least two of {sorted(RECIPES)}, got {names!r}")
    return [RECIPES[n] for n in names]


def class_labels(per_class: int, device: torch.device, n_classes: int = N_CLASSES
                 ) -> torch.Tensor:
    """0, 0, ..., 1, 1, ...: `per_class` of each class in order."""
    return torch.arange(n_classes, device=device).repeat_interleave(per_class)


def measure(features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
            reference: dict[str, Any], k: int) -> dict[str, Any]:
    """Every metric of one generated (or real) set against the real test reference."""
    ref_features, ref_labels = reference["features"], reference["labels"]
    pr = per_class(lambda r, f: precision_recall(r, f, k), ref_features, ref_labels,
                   features, labels)
    one_nn = per_class(one_nn_accuracy, ref_features, ref_labels, features, labels)
    div = per_class(lambda r, f: diversity(f) / max(diversity(r), 1e-12), ref_features,
                    ref_labels, features, labels)
    predictions = logits.argmax(1).cpu()
    cond = np.array([float((predictions[labels.cpu() == c] == c).float().mean())
                     for c in range(N_CLASSES)])
    return {"cond_acc": conditional_accuracy(logits, labels), "cond_acc_per_class": cond,
            "fid": frechet_distance(ref_features, features),
            "precision": float(pr[:, 0].mean()), "recall": float(pr[:, 1].mean()),
            "precision_per_class": pr[:, 0], "recall_per_class": pr[:, 1],
            "one_nn": float(one_nn.mean()), "one_nn_per_class": one_nn,
            "inception": inception_score(logits), "diversity": float(div.mean()),
            "diversity_per_class": div}


def pack(measurements: Sequence[dict[str, Any] | None]) -> tuple[np.ndarray, np.ndarray]:
    """Measurements as float64 arrays: [N, len(METRICS)] and [N, len(PER_CLASS), 10].

    None (a run that stopped, or made a non-finite digit) becomes a row of NaN. float64 keeps
    every value exactly as measured, so the numbers draw derives are those compute saw.
    """
    overall = np.full((len(measurements), len(METRICS)), np.nan)
    classes = np.full((len(measurements), len(PER_CLASS), N_CLASSES), np.nan)
    for i, m in enumerate(measurements):
        if m is not None:
            overall[i] = [m[key] for key in METRICS]
            classes[i] = [m[f"{key}_per_class"] for key in PER_CLASS]
    return overall, classes


def unpack(overall: np.ndarray, classes: np.ndarray) -> dict[str, Any]:
    """One measurement from its rows of `pack`'s arrays (the dict `measure` returned)."""
    out: dict[str, Any] = {key: float(v) for key, v in zip(METRICS, overall, strict=True)}
    out.update({f"{key}_per_class": classes[j] for j, key in enumerate(PER_CLASS)})
    return out


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Images in [0, 1] (NaN as 0) as uint8 on the CPU: all a figure needs, a quarter of float32."""
    return (images.nan_to_num(0.0).clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def nearest_distances(queries: torch.Tensor, bank: torch.Tensor,
                      chunk: int = 1_000) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-space (Euclidean, [0, 1] scale) distance of each query to its nearest bank image."""
    bank = bank.reshape(bank.shape[0], -1).float()
    bank = bank / 255 if bank.max() > 1.5 else bank
    q = queries.reshape(queries.shape[0], -1).float()
    best_d, best_i = [], []
    for start in range(0, q.shape[0], chunk):
        d = torch.cdist(q[start:start + chunk], bank)
        value, index = d.min(dim=1)
        best_d.append(value)
        best_i.append(index)
    return torch.cat(best_d).cpu(), torch.cat(best_i).cpu()


# --- compute -----------------------------------------------------------------------------------


def compute(ctx: ComputeContext) -> None:
    """Train the recipes side by side, measuring every few epochs; record what draw needs."""
    cfg: Config = ctx.cfg
    recipes = recipes_named(cfg.runs)
    judge = load_judge(ctx)
    train_images, train_labels, train_index = training_set(ctx)
    reference = real_reference(ctx, judge)
    noise = fixed_noise(ctx)
    optimizer = choose_optimizer(ctx, recipes, judge, train_images, train_labels)
    generator, history = train_all(ctx, recipes, optimizer, judge, reference, noise,
                                   train_images, train_labels)
    final_measurements(ctx, recipes, generator, judge, reference, history)
    final_samples(ctx, recipes, generator, noise)
    pixel_values(ctx, recipes, generator, noise)
    latent_walk(ctx, recipes, generator)
    copy_check(ctx, recipes, generator, train_images, train_index)


def load_judge(ctx: ComputeContext) -> BestCNN:
    """The classifiers section's stronger CNN, in eval mode, on the device."""
    saved = ctx.load("classifiers", "best")
    judge = BestCNN(saved["mean"], saved["std"], dropout=saved["dropout"])
    judge.load_state_dict(saved["state_dict"])
    return judge.to(ctx.device).eval()


def training_set(ctx: ComputeContext) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The GAN's training images and labels (uint8, on the device): all, or a seeded subset;
    and their positions in the full training set."""
    data = ctx.data
    images, labels = subset(data.train_images, data.train_labels, ctx.cfg.train_subset,
                            ctx.streams.torch("train_subset"))
    # The same draw from the same stream, as positions: the copy check names training images
    # by their place in the full set, which draw can show from the dataset.
    index = subset_index(data.train_images.shape[0], ctx.cfg.train_subset,
                         ctx.streams.torch("train_subset"))
    ctx.metric("n_train_used", int(images.shape[0]))
    return images, labels, index


def real_reference(ctx: ComputeContext, judge: BestCNN) -> dict[str, Any]:
    """Judge features of balanced real test digits; every metric of real training digits.

    Each metric of a generated set is taken against the test digits; the same metric of the
    training digits against the test digits is its real-data reference (a floor or ceiling),
    recorded as the arrays `real` and `real_per_class`.
    """
    cfg: Config = ctx.cfg
    data = ctx.data
    test_index = torch.from_numpy(balanced_index(data.test_labels, cfg.reference_per_class,
                                                 ctx.streams.torch("reference/test"))
                                  ).to(ctx.device)
    train_index = torch.from_numpy(balanced_index(data.train_labels, cfg.reference_per_class,
                                                  ctx.streams.torch("reference/train"))
                                   ).to(ctx.device)
    test_features, test_logits = judge_outputs(judge, data.test_images[test_index])
    train_features, train_logits = judge_outputs(judge, data.train_images[train_index])
    reference = {"features": test_features.cpu(), "labels": data.test_labels[test_index].cpu()}
    real = measure(train_features.cpu(), train_logits.cpu(), data.train_labels[train_index].cpu(),
                   reference, cfg.k)
    # The ceiling of conditional accuracy is the judge's accuracy on the test digits themselves.
    real["cond_acc"] = conditional_accuracy(test_logits, data.test_labels[test_index])
    real["inception"] = inception_score(test_logits)
    overall, classes = pack([real])
    ctx.array("real", overall[0])
    ctx.array("real_per_class", classes[0])
    ctx.metric("n_reference", int(reference["labels"].shape[0]))
    return reference


def fixed_noise(ctx: ComputeContext) -> dict[str, torch.Tensor]:
    """The noise every measurement and grid reuses, so that frames differ only by training."""
    cfg: Config = ctx.cfg
    n = cfg.samples_per_class * N_CLASSES
    grid = GRID_PER_CLASS * N_CLASSES
    return {"metric_z": torch.randn(n, cfg.z_dim, generator=ctx.streams.torch("metric_noise"))
            .to(ctx.device),
            "metric_labels": class_labels(cfg.samples_per_class, ctx.device),
            "grid_z": torch.randn(grid, cfg.z_dim, generator=ctx.streams.torch("grid_noise"))
            .to(ctx.device),
            "grid_labels": class_labels(GRID_PER_CLASS, ctx.device)}


def new_networks(ctx: ComputeContext, runs: int, init_stream: str
                 ) -> tuple[Generator, Discriminator]:
    """A generator and a discriminator of `runs` runs, initialised from stream `init_stream`
    (every run starts from the same weights)."""
    ctx.streams.seed_torch_global(init_stream)
    return (Generator(runs, ctx.cfg.z_dim, widths=ctx.cfg.g_widths),
            Discriminator(runs, widths=ctx.cfg.d_widths))


def judged_runs(judge: BestCNN, output: torch.Tensor, history: GanHistory
                ) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
    """The judge's (features, logits) of each run's digits `output` [R, N, 28, 28]; None for a
    run that stopped or made a non-finite digit, which is not judged."""
    return [None if history.stopped[r] is not None or not torch.isfinite(output[r]).all()
            else judge_outputs(judge, output[r]) for r in range(output.shape[0])]


def trial_score(cross_entropies: Sequence[float | None]) -> float:
    """A trial's criterion: the mean of its recipes' cross-entropies; inf if any run failed."""
    if any(v is None or not np.isfinite(v) for v in cross_entropies):
        return float("inf")
    return float(np.mean(cross_entropies))


def choose_optimizer(ctx: ComputeContext, recipes: list[Recipe], judge: BestCNN,
                     images: torch.Tensor, labels: torch.Tensor) -> AdamSetting:
    """The optimizer setting every run trains with: the config's only one, or the trials' choice.

    With several named, every recipe trains side by side for `trial_epochs` epochs with each
    setting, from fresh weights, on batch orders, noise and dropout masks of streams of their
    own, so the runs the page reports are new runs and the trials' luck does not carry into
    them. The criterion is the judge's cross-entropy of each run's generated digits against the
    class asked for (a smooth relative of conditional accuracy; the page reports it for no
    reported run), on noise of its own, averaged over recipes; lowest wins, ties go to the
    setting named first, and a setting with a stopped run or a non-finite digit cannot win.
    No test digit is used. Recorded: `optimizer_name`, and per trial (`optimizer_trials`) its
    cross-entropies, steps and seconds.
    """
    cfg: Config = ctx.cfg
    candidates = optimizers_named(cfg.optimizers)
    trials: list[dict[str, Any]] = []
    seconds = 0.0
    if len(candidates) > 1:
        asked = class_labels(cfg.samples_per_class, ctx.device)
        asked_cpu = asked.cpu()
        z = torch.randn(asked.shape[0], cfg.z_dim, generator=ctx.streams.torch("trial/noise"))
        for setting in candidates:
            generator, discriminator = new_networks(ctx, len(recipes), "trial/init")
            ctx.streams.seed_torch_global("trial/train")
            history = train_gan(generator, discriminator, recipes, images, labels,
                                epochs=cfg.trial_epochs, batch_size=setting.batch_size,
                                lr=setting.lr, beta1=setting.beta1,
                                generator_order=ctx.streams.torch("trial/batch_order"),
                                explode_limit=cfg.explode_limit, progress=ctx.progress)
            output = to_unit(generate(generator, z.to(ctx.device), asked), recipes)
            losses = [None if judged is None
                      else float(F.cross_entropy(judged[1].float().cpu(), asked_cpu))
                      for judged in judged_runs(judge, output, history)]
            trials.append({"name": setting.name, "cross_entropy": losses,
                           "steps": history.steps})
            seconds += history.seconds
            ctx.log(f"optimizer trial {setting.name}: judge cross-entropy "
                    + " ".join("stopped" if v is None else f"{v:.3f}" for v in losses))
    chosen = candidates[int(np.argmin([trial_score(t["cross_entropy"]) for t in trials]))
                        if trials else 0]
    ctx.metric("optimizer_name", chosen.name)
    ctx.metric("optimizer_trials", trials)
    # Wall-clock time varies between builds; only metrics named for it may (see API notes).
    ctx.metric("trial_seconds", seconds)
    return chosen


def train_all(ctx: ComputeContext, recipes: list[Recipe], optimizer: AdamSetting,
              judge: BestCNN, reference: dict[str, Any], noise: dict[str, torch.Tensor],
              images: torch.Tensor, labels: torch.Tensor) -> tuple[Generator, GanHistory]:
    """Train every recipe side by side; at each measured epoch, measure every run on the fixed
    noise and keep the fixed-noise grids of the faithful and corrected runs (the GIF's)."""
    cfg: Config = ctx.cfg
    generator, discriminator = new_networks(ctx, len(recipes), "init")
    ctx.metric("d_dropout", discriminator.p)
    ctx.metric("g_widths", [layer.weight.shape[2] for layer in generator.layers[:-1]])
    ctx.metric("d_widths", [layer.weight.shape[2] for layer in discriminator.layers[:-1]])
    epochs: list[int] = []
    measured: list[dict[str, Any] | None] = []  # [epoch * runs + run]
    frames: list[np.ndarray] = []  # [2, 100, 28, 28] uint8 per measured epoch
    metric_labels = noise["metric_labels"].cpu()  # the classes asked for, as `measure` takes them

    def on_record(epoch: int, history: GanHistory) -> None:
        output = to_unit(generate(generator, noise["metric_z"], noise["metric_labels"]), recipes)
        epochs.append(epoch)
        measured.extend(None if judged is None
                        else measure(judged[0].cpu(), judged[1].cpu(), metric_labels,
                                     reference, cfg.k)
                        for judged in judged_runs(judge, output, history))
        grid = to_unit(generate(generator, noise["grid_z"], noise["grid_labels"]), recipes)
        # Only the two runs the GIF shows: 78 KB a frame, 22 frames in the full profile.
        frames.append(to_uint8(grid[[0, len(recipes) - 1]]))
        ctx.log(f"epoch {epoch}: conditional accuracy "
                + " ".join(f"{m['cond_acc']:.2f}" if m else "stopped"
                           for m in measured[-len(recipes):]))

    ctx.streams.seed_torch_global("train")  # noise, fake classes and dropout masks
    history = train_gan(generator, discriminator, recipes, images, labels, epochs=cfg.epochs,
                        batch_size=optimizer.batch_size, lr=optimizer.lr,
                        beta1=optimizer.beta1,
                        generator_order=ctx.streams.torch("batch_order"),
                        explode_limit=cfg.explode_limit, on_record=on_record,
                        record=recorded_epochs(cfg.epochs, cfg.record_every),
                        progress=ctx.progress)
    overall, classes = pack(measured)
    ctx.metric("recorded_epochs", epochs)
    ctx.array("measured", overall.reshape(len(epochs), len(recipes), *overall.shape[1:]))
    ctx.array("measured_per_class",
              classes.reshape(len(epochs), len(recipes), *classes.shape[1:]))
    ctx.array("grid_frames", np.stack(frames))
    # Wall-clock time varies between builds; only metrics named for it may (see API notes).
    ctx.metric("histories", {k: v for k, v in history.as_dict().items() if k != "seconds"})
    ctx.metric("train_seconds", history.seconds)
    return generator, history


def final_measurements(ctx: ComputeContext, recipes: list[Recipe], generator: Generator,
                       judge: BestCNN, reference: dict[str, Any], history: GanHistory) -> None:
    """Every metric of each run's final generator on `fid_batches` fresh generated sets.

    Recorded per set (`final` [sets, runs, metrics], `final_per_class`), with `final_measured`
    saying which runs finished with finite digits; draw takes the means and the spreads.
    """
    cfg: Config = ctx.cfg
    labels = class_labels(cfg.samples_per_class, ctx.device)
    stream = ctx.streams.torch("final_noise")
    sets = []
    for _ in range(cfg.fid_batches):
        z = torch.randn(labels.shape[0], cfg.z_dim, generator=stream).to(ctx.device)
        sets.append(to_unit(generate(generator, z, labels), recipes))
    finished = [history.stopped[r] is None
                and all(bool(torch.isfinite(s[r]).all()) for s in sets)
                for r in range(len(recipes))]
    measured: list[dict[str, Any] | None] = []  # [set * runs + run]
    for output in sets:
        for r in range(len(recipes)):
            if not finished[r]:
                measured.append(None)
                continue
            features, logits = judge_outputs(judge, output[r])
            measured.append(measure(features.cpu(), logits.cpu(), labels.cpu(), reference,
                                    cfg.k))
    overall, classes = pack(measured)
    ctx.metric("final_measured", finished)
    ctx.array("final", overall.reshape(len(sets), len(recipes), *overall.shape[1:]))
    ctx.array("final_per_class", classes.reshape(len(sets), len(recipes), *classes.shape[1:]))


def final_samples(ctx: ComputeContext, recipes: list[Recipe], generator: Generator,
                  noise: dict[str, torch.Tensor]) -> None:
    """Every run's final fixed-noise grid, and the corrected run's digits on fresh noise."""
    grid = to_unit(generate(generator, noise["grid_z"], noise["grid_labels"]), recipes)
    ctx.array("samples", to_uint8(grid))  # [runs, 100, 28, 28]
    z = torch.randn(GRID_PER_CLASS * N_CLASSES, ctx.cfg.z_dim,
                    generator=ctx.streams.torch("sample_noise"))
    fake = to_unit(generate(generator, z.to(ctx.device),
                            class_labels(GRID_PER_CLASS, ctx.device)), recipes)
    ctx.array("fresh_samples", to_uint8(fake[-1]))


def pixel_values(ctx: ComputeContext, recipes: list[Recipe], generator: Generator,
                 noise: dict[str, torch.Tensor]) -> None:
    """Histograms (counts) of generated pixels on each run's data scale and of real test pixels;
    the share of generated pixels below zero and of real pixels exactly zero."""
    raw = generate(generator, noise["metric_z"], noise["metric_labels"]).cpu()
    real = ctx.data.test_images.float().cpu().flatten() / 255
    bins = np.linspace(-1, 1, PIXEL_BINS + 1)
    counts, shares = [], {}
    for i, recipe in enumerate(recipes):
        # Each run on the scale its real data had: [-1, 1] runs mapped back to [0, 1].
        values = raw[i].flatten()
        values = (values + 1) / 2 if recipe.signed_range else values
        values = values[torch.isfinite(values)]
        shares[recipe.name] = float((values < 0).float().mean()) if values.numel() else None
        counts.append(np.histogram(values.numpy(), bins=bins)[0])
    ctx.array("pixel_counts", np.stack(counts))  # [runs, PIXEL_BINS]
    ctx.array("real_pixel_counts", np.histogram(real.numpy(), bins=bins)[0])
    ctx.metric("negative_pixel_share", shares)
    ctx.metric("real_zero_share", float((real == 0).float().mean()))


def latent_walk(ctx: ComputeContext, recipes: list[Recipe], generator: Generator) -> None:
    """The corrected G along a straight line in z between two draws, `walk_steps` per class."""
    steps = ctx.cfg.walk_steps
    stream = ctx.streams.torch("walk_noise")
    ends = torch.randn(2, N_CLASSES, ctx.cfg.z_dim, generator=stream)
    t = torch.linspace(0, 1, steps)[:, None, None]
    z = ((1 - t) * ends[0] + t * ends[1]).transpose(0, 1).reshape(-1, ctx.cfg.z_dim)
    labels = torch.arange(N_CLASSES).repeat_interleave(steps)
    images = to_unit(generate(generator, z.to(ctx.device), labels.to(ctx.device)), recipes)
    ctx.array("walk", to_uint8(images[-1]))  # [10 * steps, 28, 28], class by class


def copy_check(ctx: ComputeContext, recipes: list[Recipe], generator: Generator,
               train_images: torch.Tensor, train_index: np.ndarray) -> None:
    """Is G copying? Distance of generated and of real test digits to their nearest training image.

    Both sets are measured against the images the GAN trained on; a generator that memorised
    would sit closer to them than unseen real digits do. Recorded: both sets' distances
    (float32), each generated digit's nearest training image (its position in the full
    training set), and the first generated digit of each class (the figure's).
    """
    cfg: Config = ctx.cfg
    labels = class_labels(cfg.copy_check, ctx.device)
    z = torch.randn(labels.shape[0], cfg.z_dim, generator=ctx.streams.torch("copy_noise"))
    fake = to_unit(generate(generator, z.to(ctx.device), labels), recipes)[-1].nan_to_num(0.0)
    data = ctx.data
    index = torch.from_numpy(balanced_index(data.test_labels, cfg.copy_check,
                                            ctx.streams.torch("copy_test")))
    test = data.test_images[index.to(ctx.device)].float() / 255
    fake_d, fake_i = nearest_distances(fake, train_images)
    test_d, _ = nearest_distances(test, train_images)
    ctx.array("copy_fake_distance", fake_d.numpy())
    ctx.array("copy_test_distance", test_d.numpy())
    ctx.array("copy_nearest_index", train_index[fake_i.numpy()].astype(np.int32))
    ctx.array("copy_shown", to_uint8(fake[::cfg.copy_check]))  # the first of each class


# --- draw: numbers and verdicts ----------------------------------------------------------------


def draw(ctx: DrawContext) -> None:
    """The ablation, every derived number and verdict, the figures and the GIF."""
    cfg: Config = ctx.cfg
    recipes = recipes_named(cfg.runs)
    history = ctx.results["histories"]
    real = unpack(ctx.array("real"), ctx.array("real_per_class"))
    final = final_summaries(ctx)
    describe_runs(ctx, recipes)
    record_reference(ctx, real)
    record_training(ctx, recipes, history)
    record_finals(ctx, recipes, final, real)
    ablation_tables(ctx, recipes, final, real, history)
    plot_losses(ctx, recipes, history)
    plot_metrics(ctx, recipes, real)
    grid_gif(ctx, recipes)
    plot_samples(ctx, recipes)
    plot_real_vs_generated(ctx, recipes)
    plot_pixel_histogram(ctx, recipes)
    plot_walk(ctx)
    plot_copies(ctx)


def changes(before: Recipe, after: Recipe) -> list[str]:
    """What `after` does differently from `before`, in words (for the ablation table)."""
    out = []
    if after.signed_range != before.signed_range:
        out.append("real images in [-1, 1]" if after.signed_range else "real images in [0, 1]")
    if after.dropout_in_g_step != before.dropout_in_g_step:
        out.append("D's dropout only while D trains" if not after.dropout_in_g_step
                   else "D's dropout also in G's step")
    if after.real_target != before.real_target:
        out.append(f"D's target for real images {after.real_target:g}")
    if after.spectral_norm != before.spectral_norm:
        out.append("spectral normalisation in D" if after.spectral_norm
                   else "no spectral normalisation")
    return out or ["nothing"]


def summarise(sets: list[dict[str, Any]], collapse_recall: float) -> dict[str, Any]:
    """A run's final measurement: means over the generated sets, each set's value in "batches",
    the classes whose recall is below `collapse_recall` ("collapsed"), and among them those
    whose precision is below it as well ("missed": the generator does not make that digit at
    all, which is not mode collapse: a collapsed class keeps its precision)."""
    summary: dict[str, Any] = {key: float(np.mean([s[key] for s in sets])) for key in METRICS}
    summary["batches"] = {key: [s[key] for s in sets] for key in METRICS}
    for key in PER_CLASS:
        summary[f"{key}_per_class"] = np.mean([s[f"{key}_per_class"] for s in sets], 0)
    low_recall = summary["recall_per_class"] < collapse_recall
    low_precision = summary["precision_per_class"] < collapse_recall
    summary["collapsed"] = [int(c) for c in np.flatnonzero(low_recall)]
    summary["missed"] = [int(c) for c in np.flatnonzero(low_recall & low_precision)]
    summary["narrow"] = [int(c) for c in np.flatnonzero(low_recall & ~low_precision)]
    return summary


def final_summaries(ctx: DrawContext) -> list[dict[str, Any] | None]:
    """Each run's summarised final measurement (None for a run that did not finish)."""
    overall, classes = ctx.array("final"), ctx.array("final_per_class")
    return [summarise([unpack(overall[s, r], classes[s, r]) for s in range(overall.shape[0])],
                      ctx.cfg.collapse_recall) if finished else None
            for r, finished in enumerate(ctx.results["final_measured"])]


def _per_class_claim(a: dict | None, b: dict | None, key: str) -> dict | None:
    """compare() of a per-class metric, or None if a run stopped. The ten classes are not
    repeats (report.compare's unit "class"): each recipe is one trained generator, so the
    verdict is always "cannot separate", with that reason, and the means are recorded."""
    if a is None or b is None:
        return None
    return compare(Runs(a[f"{key}_per_class"], "class"),
                   Runs(b[f"{key}_per_class"], "class")).as_metric()


def _last_finite(values: list[float | None]) -> float | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return finite[-1] if finite else None


def describe_runs(ctx: DrawContext, recipes: list[Recipe]) -> None:
    """The runs and the settings the prose names."""
    cfg: Config = ctx.cfg
    ctx.metric("runs", [r.name for r in recipes])
    ctx.metric("n_runs", len(recipes))
    ctx.metric("corrected_name", recipes[-1].name)
    ctx.metric("corrected_changes", changes(recipes[0], recipes[-1]))
    ctx.metric("intermediate_runs", [r.name for r in recipes[1:-1]])
    ctx.metric("n_generated", cfg.samples_per_class * N_CLASSES)
    ctx.metric("n_frames", len(ctx.results["recorded_epochs"]))
    ctx.metric("chance", 1 / N_CLASSES)
    ctx.metric("indistinguishable", 0.5)  # 1-NN accuracy when real and generated are alike
    # The setting the runs trained with, the full profile's (the original's), and the trials.
    chosen = OPTIMIZERS[ctx.results["optimizer_name"]]
    ctx.metric("optimizer", asdict(chosen))
    ctx.metric("original_optimizer", chosen.name == "original")
    ctx.metric("full_optimizer", asdict(OPTIMIZERS[Config().optimizers[0]]))
    trials = []
    for t in ctx.results["optimizer_trials"]:
        score = trial_score(t["cross_entropy"])  # inf (shown as none) when a run failed
        trials.append({**asdict(OPTIMIZERS[t["name"]]), "steps": t["steps"],
                       "cross_entropy": score if np.isfinite(score) else None,
                       "failed": [recipes[r].name for r, v in enumerate(t["cross_entropy"])
                                  if v is None]})
    ctx.metric("trials", trials)
    ctx.metric("n_trials", len(trials))


def record_reference(ctx: DrawContext, real: dict[str, Any]) -> None:
    """Every metric of real training digits against test digits: the references."""
    for key in METRICS:
        ctx.metric(f"real_{key}", real[key])
    ctx.metric("real_collapsed",
               int((real["recall_per_class"] < ctx.cfg.collapse_recall).sum()))


def record_training(ctx: DrawContext, recipes: list[Recipe], history: dict[str, Any]) -> None:
    """Steps, speed, which runs stopped, and the first and last losses of the two roles."""
    seconds = ctx.results["train_seconds"]
    ctx.metric("steps", history["steps"])
    ctx.metric("cuda_graph", history["cuda_graph"])
    ctx.metric("seconds_per_epoch", seconds / max(len(history["epochs"]), 1))
    ctx.metric("gan_images_per_second",
               history["steps"] * OPTIMIZERS[ctx.results["optimizer_name"]].batch_size
               / max(seconds, 1e-9))
    ctx.metric("original_seconds_ratio", original.GAN_SECONDS / max(seconds, 1e-9))
    stopped = [[r.name, history["stopped"][i], history["stopped_epoch"][i]]
               for i, r in enumerate(recipes) if history["stopped"][i] is not None]
    ctx.metric("stopped_runs", stopped)
    ctx.metric("n_stopped", len(stopped))
    for role, i in (("original", 0), ("corrected", len(recipes) - 1)):
        ctx.metric(f"{role}_stopped", history["stopped"][i])
        ctx.metric(f"{role}_stopped_epoch", history["stopped_epoch"][i])
        ctx.metric(f"{role}_d_loss_first", history["d_loss"][i][0])
        ctx.metric(f"{role}_d_loss_last", _last_finite(history["d_loss"][i]))
        ctx.metric(f"{role}_g_loss_first", history["g_loss"][i][0])
        ctx.metric(f"{role}_g_loss_last", _last_finite(history["g_loss"][i]))


def record_finals(ctx: DrawContext, recipes: list[Recipe], final: list[dict[str, Any] | None],
                  real: dict[str, Any]) -> None:
    """Final metrics of the faithful and corrected runs, and the comparisons the prose states."""
    # Below twice chance, the judge reads the corrected run's output as no digit in particular.
    ctx.metric("learnt_digits", final[-1] is not None and final[-1]["cond_acc"] > 2 / N_CLASSES)
    for role, f in (("original", final[0]), ("corrected", final[-1])):
        for key in METRICS:
            ctx.metric(f"{role}_{key}", None if f is None else f[key])
        ctx.metric(f"{role}_collapsed", None if f is None else f["collapsed"])
        ctx.metric(f"{role}_n_collapsed", None if f is None else len(f["collapsed"]))
        ctx.metric(f"{role}_worst_recall_class",
                   None if f is None else int(np.argmin(f["recall_per_class"])))
        ctx.metric(f"{role}_worst_recall",
                   None if f is None else float(np.min(f["recall_per_class"])))
    a, b = final[-1], final[0]
    ctx.metric("both_finished", a is not None and b is not None)
    for key in ("cond_acc", "precision", "recall", "one_nn", "diversity"):
        ctx.metric(f"corrected_vs_original_{key}", _per_class_claim(a, b, key))
    # The generated sets are noise draws of one trained generator: not repeats of a recipe.
    ctx.metric("corrected_vs_original_fid", None if a is None or b is None else compare(
        Runs(a["batches"]["fid"], "noise draw"),
        Runs(b["batches"]["fid"], "noise draw")).as_metric())
    ctx.metric("corrected_vs_original_inception", None if a is None or b is None else compare(
        Runs(a["batches"]["inception"], "noise draw"),
        Runs(b["batches"]["inception"], "noise draw")).as_metric())
    # How far the corrected run is from real data: its per-class recall against real digits'.
    ctx.metric("corrected_vs_real_recall", None if a is None else compare(
        Runs(a["recall_per_class"], "class"), Runs(real["recall_per_class"], "class")
    ).as_metric())
    ctx.metric("corrected_vs_real_cond_acc", None if a is None else compare(
        Runs(a["cond_acc_per_class"], "class"), Runs(real["cond_acc_per_class"], "class")
    ).as_metric())
    for role, f in (("original", b), ("corrected", a)):
        for kind in ("missed", "narrow"):
            ctx.metric(f"{role}_{kind}", None if f is None else f[kind])


def _ablation_values(m: dict[str, Any] | None) -> dict[str, Any]:
    """One measurement's cells of the ablation table (None everywhere for a stopped run)."""
    if m is None:
        return dict.fromkeys(("conditional accuracy (%)", "FD", "precision", "recall",
                              "diversity", "1-NN (%)", "IS"))
    return {"conditional accuracy (%)": round(100 * m["cond_acc"], 1),
            "FD": round(m["fid"], 2), "precision": round(m["precision"], 3),
            "recall": round(m["recall"], 3), "diversity": round(m["diversity"], 3),
            "1-NN (%)": round(100 * m["one_nn"], 1), "IS": round(m["inception"], 2)}


def ablation_tables(ctx: DrawContext, recipes: list[Recipe], final: list, real: dict[str, Any],
                    history: dict[str, Any]) -> None:
    """The ablation (one row per recipe, with what its change did) and per-class recall."""
    rows = [{"run": "real training digits (reference)", "change": "—",
             **_ablation_values(real), "recall change": None,
             "cond. acc. change (points)": None, "stopped": "—"}]
    verdicts = []
    for i, recipe in enumerate(recipes):
        f = final[i]
        before = final[i - 1] if i else None
        recall_vs = _per_class_claim(f, before, "recall") if i else None
        cond_vs = _per_class_claim(f, before, "cond_acc") if i else None
        verdicts.append({"run": recipe.name, "recall": recall_vs and recall_vs["verdict"],
                         "cond_acc": cond_vs and cond_vs["verdict"]})
        stopped, epoch = history["stopped"][i], history["stopped_epoch"][i]
        # The change from the run above, as a difference only: one trained generator per
        # recipe gives no spread to call it by (the verdicts, all "cannot separate", say why).
        rows.append({"run": recipe.name,
                     "change": "the original's setup" if i == 0
                     else "+ " + ", ".join(changes(recipes[i - 1], recipe)),
                     **_ablation_values(f),
                     "recall change": round(recall_vs["difference"], 3) if recall_vs else None,
                     "cond. acc. change (points)": (round(100 * cond_vs["difference"], 1)
                                                    if cond_vs else None),
                     "stopped": f"{stopped} at epoch {epoch}" if stopped else "no"})
    ctx.table("ablation", rows)
    ctx.metric("ablation_verdicts", verdicts[1:])
    ctx.metric("steps_ahead_recall", [v["run"] for v in verdicts[1:] if v["recall"] == "ahead"])
    ctx.metric("steps_behind_recall", [v["run"] for v in verdicts[1:] if v["recall"] == "behind"])
    per_class_rows = []
    for digit in range(N_CLASSES):
        row: dict[str, Any] = {"digit": digit,
                               "real recall": round(float(real["recall_per_class"][digit]), 3)}
        for i, recipe in enumerate(recipes):
            f = final[i]
            row[f"{recipe.name} recall"] = (None if f is None
                                            else round(float(f["recall_per_class"][digit]), 3))
            row[f"{recipe.name} precision"] = (
                None if f is None else round(float(f["precision_per_class"][digit]), 3))
        per_class_rows.append(row)
    ctx.table("per_class", per_class_rows)


# --- draw: figures -----------------------------------------------------------------------------


def _color(i: int, n: int) -> Any:
    """The faithful run red-ish, the corrected one blue, the steps between in other colours."""
    palette = [CLASS_COLORS[3], CLASS_COLORS[1], CLASS_COLORS[4], CLASS_COLORS[2],
               CLASS_COLORS[0]]
    return CLASS_COLORS[0] if i == n - 1 else palette[i % (len(palette) - 1)]


def tile(images: np.ndarray, rows: int, cols: int, pad: int = 1) -> np.ndarray:
    """Images [rows * cols, 28, 28] as one [rows * 29 - 1, cols * 29 - 1] mosaic, light gaps."""
    h, w = images.shape[1:]
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), 0.15, dtype=np.float32)
    for i, image in enumerate(images[:rows * cols]):
        r, c = divmod(i, cols)
        out[r * (h + pad):r * (h + pad) + h, c * (w + pad):c * (w + pad) + w] = image
    return out


def _unit(images: np.ndarray) -> np.ndarray:
    """uint8 images as floats in [0, 1]."""
    return images.astype(np.float32) / 255


def plot_losses(ctx: DrawContext, recipes: list[Recipe], history: dict[str, Any]) -> None:
    """D and G losses per epoch, one line per run; a dotted line where a run stopped."""
    fig, axes = new_figure(8, 3.2, ncols=2)
    epochs = history["epochs"]
    for i, recipe in enumerate(recipes):
        for ax, values in ((axes[0, 0], history["d_loss"][i]), (axes[0, 1], history["g_loss"][i])):
            values = [np.nan if v is None else v for v in values]  # JSON keeps NaN as None
            ax.plot(epochs, values, "-", color=_color(i, len(recipes)), lw=1.2,
                    marker="o" if len(epochs) <= 12 else None, ms=3, label=recipe.name)
            if history["stopped"][i] is not None:
                ax.axvline(history["stopped_epoch"][i], color=_color(i, len(recipes)), ls=":")
    for ax, title in ((axes[0, 0], "discriminator loss"), (axes[0, 1], "generator loss")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0, 0].set_ylabel("binary cross-entropy (epoch mean)")
    axes[0, 1].legend(fontsize=7)
    fig.tight_layout()
    ctx.figure("losses", fig)


def plot_metrics(ctx: DrawContext, recipes: list[Recipe], real: dict[str, Any]) -> None:
    """Each metric over training for every run, the real-data reference dotted."""
    panels = (("cond_acc", "conditional accuracy"), ("fid", "Fréchet distance (log)"),
              ("precision", "precision"), ("recall", "recall"),
              ("one_nn", "1-NN two-sample accuracy"), ("inception", "classifier inception score"))
    measured, epochs = ctx.array("measured"), ctx.results["recorded_epochs"]
    fig, axes = new_figure(8, 7.5, nrows=3, ncols=2)
    for ax, (key, title) in zip(axes.flat, panels):
        for i, recipe in enumerate(recipes):
            ax.plot(epochs, measured[:, i, METRICS.index(key)], "-o", ms=3,
                    color=_color(i, len(recipes)), label=recipe.name)
        ax.axhline(real[key], color="k", ls=":", lw=1, label="real digits")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if key == "fid":
            ax.set_yscale("log")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    ctx.figure("metrics", fig)


def grid_gif(ctx: DrawContext, recipes: list[Recipe]) -> None:
    """One frame per measurement: the faithful and corrected runs' fixed-noise 10×10 grids."""
    grids, epochs = ctx.array("grid_frames"), ctx.results["recorded_epochs"]
    # One figure redrawn per frame: its two images and title change, nothing else.
    fig, axes = new_figure(6.4, 3.6, ncols=2)
    shown = []
    for ax, i, name in zip(axes[0], (0, 1), (recipes[0].name, recipes[-1].name)):
        shown.append(ax.imshow(tile(_unit(grids[0, i]), 10, 10), cmap="gray_r", vmin=0, vmax=1,
                               interpolation="nearest"))
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    title = fig.suptitle(f"epoch {epochs[0]}", fontsize=10)
    fig.tight_layout()
    frames = []
    for k, (epoch, grid) in enumerate(zip(epochs, grids, strict=True)):
        for image, run in zip(shown, grid):
            image.set_data(tile(_unit(run), 10, 10))
        title.set_text(f"epoch {epoch}")
        frames.append(figure_to_rgb(fig, close=k == len(epochs) - 1))
    ctx.gif("grid_gif", frames, fps=ctx.cfg.fps, sprite=True)


def _grids_figure(panels: list[tuple[str, np.ndarray]]) -> Any:
    fig, axes = new_figure(2.6 * len(panels), 2.9, ncols=len(panels))
    for ax, (title, images) in zip(axes[0], panels):
        ax.imshow(tile(_unit(images), 10, 10), cmap="gray_r", vmin=0, vmax=1,
                  interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_samples(ctx: DrawContext, recipes: list[Recipe]) -> None:
    """Every run's final fixed-noise grid, one row per class (G in eval mode)."""
    samples = ctx.array("samples")
    ctx.figure("samples", _grids_figure([(r.name, samples[i]) for i, r in enumerate(recipes)]))


def plot_real_vs_generated(ctx: DrawContext, recipes: list[Recipe]) -> None:
    """Ten real test digits per class beside ten generated by the corrected run (fresh noise)."""
    data = ctx.data
    index = torch.from_numpy(balanced_index(data.test_labels, GRID_PER_CLASS,
                                            ctx.streams.torch("real_examples")))
    real = data.test_images[index].cpu().numpy()
    ctx.figure("real_vs_generated", _grids_figure([
        ("real test digits", real), (f"generated ({recipes[-1].name})",
                                     ctx.array("fresh_samples"))]))


def plot_pixel_histogram(ctx: DrawContext, recipes: list[Recipe]) -> None:
    """Pixel values of generated digits (all classes) against real ones, on the data's scale."""
    counts, real = ctx.array("pixel_counts"), ctx.array("real_pixel_counts")
    bins = np.linspace(-1, 1, PIXEL_BINS + 1)

    def density(c: np.ndarray) -> np.ndarray:
        return c / max(c.sum(), 1) / np.diff(bins)

    fig, axes = new_figure(7, 3.2)
    ax = axes[0, 0]
    ax.stairs(density(real), bins, fill=True, color="0.8", label="real test digits")
    for i, recipe in enumerate(recipes):
        ax.stairs(density(counts[i]), bins, lw=1.2, color=_color(i, len(recipes)),
                  label=recipe.name)
    ax.set_yscale("log")
    ax.set_xlabel("pixel value on the data's scale (real digits lie in [0, 1])")
    ax.set_ylabel("density (log)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    ctx.figure("pixel_hist", fig)
    ctx.metric("original_negative_share", ctx.results["negative_pixel_share"][recipes[0].name])


def plot_walk(ctx: DrawContext) -> None:
    """The corrected G along a straight line in z between two draws, one row per class."""
    steps = ctx.cfg.walk_steps
    fig, axes = new_figure(0.55 * steps + 0.4, 5.8)
    axes[0, 0].imshow(tile(_unit(ctx.array("walk")), N_CLASSES, steps), cmap="gray_r",
                      vmin=0, vmax=1, interpolation="nearest")
    axes[0, 0].set_yticks(np.arange(N_CLASSES) * 29 + 14, [str(d) for d in range(N_CLASSES)])
    axes[0, 0].set_xticks([14, (steps - 1) * 29 + 14], ["z₁", "z₂"])
    axes[0, 0].tick_params(length=0)
    axes[0, 0].grid(False)
    for side in ("left", "bottom"):
        axes[0, 0].spines[side].set_visible(False)
    fig.tight_layout()
    ctx.figure("z_walk", fig)


def plot_copies(ctx: DrawContext) -> None:
    """The copy check's numbers and verdict; each class's first generated digit above its
    nearest training image."""
    fake_d = torch.from_numpy(ctx.array("copy_fake_distance"))
    test_d = torch.from_numpy(ctx.array("copy_test_distance"))
    ctx.metric("copy_fake_median", float(fake_d.median()))  # torch's: the lower middle value
    ctx.metric("copy_test_median", float(test_d.median()))
    ctx.metric("copy_fake_min", float(fake_d.min()))
    ctx.metric("copy_test_min", float(test_d.min()))
    # Per-image distances of this one generator's digits against real unseen digits': a
    # statement about this generator (is it copying?), so single images are the repeats.
    ctx.metric("copy_fake_vs_test",
               compare(Runs(fake_d.tolist(), "image"), Runs(test_d.tolist(), "image")).as_metric())
    ctx.metric("copy_n", int(fake_d.shape[0]))
    shown = ctx.array("copy_shown")
    per = fake_d.shape[0] // N_CLASSES
    nearest = ctx.array("copy_nearest_index")[::per]
    train = ctx.data.train_images
    fig, axes = new_figure(10 * 0.95, 2.3, nrows=2, ncols=10)
    for col in range(N_CLASSES):
        axes[0, col].imshow(shown[col], cmap="gray_r", vmin=0, vmax=255)
        axes[0, col].set_title(f"{fake_d[col * per]:.1f}", fontsize=8)
        axes[1, col].imshow(train[int(nearest[col])].cpu().numpy(), cmap="gray_r", vmin=0,
                            vmax=255)
        for row in (0, 1):
            axes[row, col].axis("off")
    axes[0, 0].text(-4, 14, "generated", rotation=90, va="center", ha="right", fontsize=8)
    axes[1, 0].text(-4, 14, "nearest\ntraining", rotation=90, va="center", ha="right",
                    fontsize=8)
    fig.tight_layout()
    ctx.figure("nearest", fig)
