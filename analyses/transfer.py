"""Transfer learning from ImageNet: frozen features computed once, the original's mistakes
ablated, and whether transfer pays against the stronger CNN trained from scratch."""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from digits import embedding_quality as quality
from digits import original
from digits.augment import RandomAffine
from digits.backbones import Backbone, VGG16Extractor, describe, preprocess, select_backbone
from digits.features import (
    FeatureCache,
    FineTuned,
    cached,
    epochs_for,
    extract,
    feature_key,
    fine_tune,
    make_head,
    recompute_epoch,
    train_head,
    trunk_maps,
)
from digits.models import BestCNN
from digits.plots import CLASS_COLORS, label_curve_axes, new_figure
from digits.sampling import balanced_index, subset_index
from digits.study import at_grid_edge, choose_lr, validation_split
from digits.recipes import BEST_CNN
from digits.training import History, TrainSpec, predict_logits, train
from report import Analysis, Context
from report.compare import compare, summarize


@dataclass(frozen=True)
class Config:
    """Knobs of the transfer section; defaults are the full profile (one GPU, under a minute)."""

    backbone: str = "auto"  # auto (VGG16 if its weights can be had) | vgg16 | efficientnet_lite0
    download: bool = True  # auto/vgg16: try downloading VGG16's weights when not cached
    download_timeout: float = 5.0  # seconds to wait for a connection before falling back
    input_size: int = 224  # the backbones' ImageNet input size
    train_subset: int = 0  # 0 = all 60,000 training images; else a seeded subset
    test_subset: int = 0  # 0 = all 10,000 test images
    validation: int = 5_000  # held out of the training images: chooses the head's rate
    feature_batch: int = 500
    feature_cache: str = "auto"  # auto = ~/.cache/mnist-explored/features; off = none
    head_epochs: int = original.EPOCHS  # the original trained its last layer for 10 epochs
    head_batch_size: int = 128
    head_lrs: str = "0.0003,0.001,0.003,0.01"  # Adam; one is chosen on the validation split
    head_min_steps: int = 300  # small training sets train for at least this many steps
    seeds: int = 3
    budgets: str = "10,100,1000,0"  # labelled images per class; 0 = every training image
    # The stronger CNN from scratch: the recipe of digits.recipes (the classifiers section's),
    # fixed in advance, never tuned.
    cnn_epochs: int = BEST_CNN.epochs
    cnn_batch_size: int = BEST_CNN.batch_size
    cnn_lr: float = BEST_CNN.lr
    cnn_momentum: float = BEST_CNN.momentum
    cnn_weight_decay: float = BEST_CNN.weight_decay
    cnn_dropout: float = BEST_CNN.dropout
    cnn_max_shift: float = BEST_CNN.max_shift
    cnn_max_degrees: float = BEST_CNN.max_degrees
    cnn_min_steps: int = 600  # small budgets: at least this many steps (20 epochs of 100 images
    # would be 20 steps)
    timing_images: int = 5_000  # images timed for one epoch with features recomputed
    finetune_epochs: int = 3  # last block fine-tuned as well; 0 = skip
    finetune_block_lr: float = 1e-4
    tsne_points: int = 5_000
    knn_k: int = 10  # the embeddings section's kNN score: 10 neighbours, 5 folds
    knn_folds: int = 5
    pca_dims: int = 50  # t-SNE starts from this many principal components, as in embeddings
    perplexity: float = 30.0  # openTSNE's default, as in embeddings
    maps_per_stage: int = 64
    threads: int = 0  # openTSNE threads; 0 = all cores (on 2 busy cores, 2 ran 17x slower than 1)


ANALYSIS = Analysis(
    name="transfer",
    requires=("dataset", "classifiers"),
    config=Config(),
    # 2 CPU cores, about two minutes: 48-px inputs (EfficientNet-Lite0 runs about 240 images/s
    # on one core there, 120 at 64 px, and its head was no better at 64: 88.9 against 89.4 %),
    # 2,000 training and 500 test images, two seeds, budgets of 10 and 100 per class and all, no
    # fine-tuning, and no 528 MB VGG16 download (a VGG16 already in the hub cache still runs).
    quick={"input_size": 48, "train_subset": 2_000, "test_subset": 500, "validation": 300,
           "seeds": 2, "budgets": "10,100,0", "cnn_epochs": 3, "cnn_min_steps": 40,
           "timing_images": 256, "finetune_epochs": 0, "tsne_points": 500,
           "maps_per_stage": 16, "threads": 1, "download": False},
)


# --- helpers (pure, tested in tests/test_transfer.py) ------------------------------------------


def parse_list(text: str, kind: type = float) -> list[Any]:
    """'0.001,0.003' -> [0.001, 0.003]."""
    return [kind(v) for v in text.split(",") if v.strip()]




def budget_name(per_class: int) -> str:
    """How the page names a budget: '10' (per class) or 'all'."""
    return f"{per_class:,}" if per_class > 0 else "all"


def feature_folder(setting: str) -> Path | None:
    """The disk cache for features: None for 'off', ~/.cache/... for 'auto', else the path."""
    if setting in ("", "off"):
        return None
    if setting == "auto":
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "mnist-explored" / "features"
    return Path(setting)


def accuracy_rows(label: str, accs: list[float], params: int, seconds: float,
                  source: str) -> dict[str, Any]:
    """A row of the table beside the classifiers section's models."""
    s = summarize(accs)
    return {"model": label, "test accuracy (%)": round(100 * s.mean, 2),
            "± std": round(100 * s.std, 2) if s.n > 1 else None, "runs": s.n,
            "parameters trained": params, "train seconds": round(seconds, 1), "from": source}


# --- data and features -------------------------------------------------------------------------


@dataclass
class Sets:
    """Features and labels of the split: train part, validation part and test images."""

    train: torch.Tensor
    train_y: torch.Tensor
    val: torch.Tensor
    val_y: torch.Tensor
    test: torch.Tensor
    test_y: torch.Tensor


def run(ctx: Context) -> None:
    """Backbone, features once, head over seeds, budgets against the CNN, ablations, plots."""
    images, labels, test_images, test_labels, split = choose_images(ctx)
    backbone = load_backbone(ctx)
    normalised = features_for(ctx, backbone, images, test_images, normalise=True)
    plain = features_for(ctx, backbone, images, test_images, normalise=False)
    sets = make_sets(normalised, labels, test_labels, split)
    plain_sets = make_sets(plain, labels, test_labels, split)

    lr = choose_head_lr(ctx, backbone, sets)
    main = heads(ctx, backbone, sets, lr, "head")
    record_head(ctx, main)
    ablations(ctx, backbone, sets, plain_sets, lr, main)
    speed(ctx, backbone, images[split.train_index.to(images.device)],
          labels[split.train_index.to(labels.device)], lr, main)
    budgets(ctx, backbone, sets, images, labels, test_images, test_labels, split, lr, main)
    tuned = finetune(ctx, backbone, images, labels, test_images, test_labels, split, lr)
    beside_classifiers(ctx, backbone, main, tuned)

    plot_curves(ctx, main, tuned)
    plot_budgets(ctx)
    plot_filters(ctx, backbone)
    plot_maps(ctx, backbone, test_images, test_labels)
    tsne_maps(ctx, normalised[1], test_images, test_labels)


def choose_images(ctx: Context) -> tuple:
    """The training and test images used (seeded subsets in the quick profile), and the split
    of the training images into a part to train on and a validation part."""
    cfg: Config = ctx.cfg
    data = ctx.data
    n_train, n_test = data.train_images.shape[0], data.test_images.shape[0]
    train_idx = torch.from_numpy(subset_index(n_train, cfg.train_subset,
                                              ctx.streams.torch("train_subset")))
    test_idx = torch.from_numpy(subset_index(n_test, cfg.test_subset,
                                             ctx.streams.torch("test_subset")))
    images = data.train_images[train_idx.to(data.train_images.device)]
    labels = data.train_labels[train_idx.to(data.train_labels.device)]
    test_images = data.test_images[test_idx.to(data.test_images.device)]
    test_labels = data.test_labels[test_idx.to(data.test_labels.device)]
    split = validation_split(images, labels, cfg.validation, ctx.streams.torch("validation"))
    ctx.metric("n_train_total", n_train)
    ctx.metric("n_images", int(images.shape[0]))
    ctx.metric("n_train", int(split.train_index.shape[0]))
    ctx.metric("n_val", int(split.val_index.shape[0]))
    ctx.metric("n_test", int(test_images.shape[0]))
    ctx.metric("n_test_total", n_test)
    ctx.metric("all_images", int(images.shape[0]) + int(test_images.shape[0]) == n_train + n_test)
    return images, labels, test_images, test_labels, split


def load_backbone(ctx: Context) -> Backbone:
    """VGG16 where its weights can be had, EfficientNet-Lite0 otherwise (or as forced)."""
    cfg: Config = ctx.cfg
    backbone = select_backbone(cfg.backbone, cfg.input_size, download=cfg.download,
                               timeout=cfg.download_timeout)
    ctx.log(f"backbone {backbone.label}: {backbone.reason}")
    facts = describe(backbone)
    for key, value in facts.items():
        ctx.metric(f"backbone_{key}", value)
    ctx.metric("backbone_is_vgg16", backbone.name == "vgg16")
    ctx.metric("vgg16_feature_dim", VGG16Extractor.feature_dim)
    ctx.metric("imagenet_size", 224)  # both networks were trained on 224 x 224 crops
    ctx.metric("head_dropout", backbone.head_dropout)
    ctx.metric("head_params", facts["feature_dim"] * 10 + 10)
    return backbone


def features_for(ctx: Context, backbone: Backbone, images: torch.Tensor,
                 test_images: torch.Tensor, normalise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and test features, computed once (or read from the disk cache by content key).

    The seconds stored with them are those of the build that computed them, so a rebuild that
    reads them reports the same extraction time.
    """
    cfg: Config = ctx.cfg
    cache = FeatureCache(feature_folder(cfg.feature_cache))
    name = "normalised" if normalise else "plain"
    out, seconds = [], 0.0
    for part, x in (("train", images), ("test", test_images)):
        key = feature_key(backbone.weights_sha256 or "random", backbone.name, cfg.input_size,
                          normalise, x, ctx.device.type, part)

        def compute(x: torch.Tensor = x, part: str = part) -> dict[str, Any]:
            with ctx.timer() as t:
                features = extract(backbone.extractor, x, cfg.input_size, normalise,
                                   cfg.feature_batch, ctx.progress, f"{name} {part} features")
            return {"features": features, "seconds": t.seconds}

        stored, hit = cached(cache, key, ctx.device, compute)
        ctx.log(f"{name} {part} features: {tuple(stored['features'].shape)}"
                f"{', from the disk cache' if hit else ''}")
        out.append(stored["features"])
        seconds += float(stored["seconds"])
    n = images.shape[0] + test_images.shape[0]
    ctx.metric(f"extract_{name}_seconds", seconds)
    ctx.metric(f"extract_{name}_per_second", n / seconds if seconds else 0.0)
    return out[0], out[1]


def make_sets(features: tuple[torch.Tensor, torch.Tensor], labels: torch.Tensor,
              test_labels: torch.Tensor, split: Any) -> Sets:
    """Cut the training features along the validation split."""
    train, test = features
    t, v = split.train_index.to(train.device), split.val_index.to(train.device)
    return Sets(train[t], labels[t], train[v], labels[v], test, test_labels)


# --- heads -------------------------------------------------------------------------------------


@dataclass
class HeadRun:
    """One trained head: its history (test curves) and final test accuracy."""

    history: History
    test_acc: float


def one_head(ctx: Context, backbone: Backbone, features: torch.Tensor, labels: torch.Tensor,
             eval_sets: dict, lr: float, stream: str, eval_mode: bool = False,
             epochs: int | None = None) -> History:
    """A fresh head (its initial weights and batch order from named streams), trained."""
    cfg: Config = ctx.cfg
    ctx.streams.seed_torch_global(f"{stream}/init")
    head = make_head(backbone.extractor.feature_dim, backbone.head_dropout)
    epochs = epochs or epochs_for(features.shape[0], cfg.head_batch_size, cfg.head_epochs,
                                  cfg.head_min_steps)
    return train_head(head, features, labels, epochs=epochs, batch_size=cfg.head_batch_size,
                      lr=lr, generator=ctx.streams.torch(f"{stream}/order"),
                      eval_sets=eval_sets, eval_mode=eval_mode)


def choose_head_lr(ctx: Context, backbone: Backbone, sets: Sets) -> float:
    """The head's Adam rate, chosen by validation accuracy (one run per rate, own streams)."""
    cfg: Config = ctx.cfg
    scores = {}
    for lr in parse_list(cfg.head_lrs):
        history = one_head(ctx, backbone, sets.train, sets.train_y,
                           {"validation": (sets.val, sets.val_y)}, lr, f"grid/lr{lr:g}")
        scores[lr] = history.eval_acc["validation"][-1]
    lr = choose_lr(scores)
    ctx.choice("head_lr", lr)
    ctx.metric("head_lr_grid", sorted(scores))
    ctx.metric("head_lr_at_edge", at_grid_edge(lr, sorted(scores)))
    ctx.metric("head_lr_val_acc", scores[lr])
    ctx.log(f"head rate {lr:g} (validation {scores[lr]:.4f})")
    return lr


def heads(ctx: Context, backbone: Backbone, sets: Sets, lr: float, name: str,
          eval_mode: bool = False) -> list[HeadRun]:
    """Heads over seeds on every training feature, test curves per epoch. Seed i uses the same
    streams in every variant, so variants are compared on paired starts and batch orders."""
    cfg: Config = ctx.cfg
    runs = []
    for seed in range(cfg.seeds):
        history = one_head(ctx, backbone, sets.train, sets.train_y,
                           {"test": (sets.test, sets.test_y)}, lr, f"head/seed{seed}",
                           eval_mode=eval_mode)
        runs.append(HeadRun(history, history.eval_acc["test"][-1]))
    ctx.log(f"{name}: test " + ", ".join(f"{r.test_acc:.4f}" for r in runs))
    return runs


def accs(runs: list[HeadRun]) -> list[float]:
    """Final test accuracies."""
    return [r.test_acc for r in runs]


def record_head(ctx: Context, runs: list[HeadRun]) -> None:
    """The head on frozen features: accuracy over seeds, curves, timing."""
    s = summarize(accs(runs))
    ctx.metric("head_test_accs", accs(runs))
    ctx.metric("head_test_mean", s.mean)
    ctx.metric("head_test_std", s.std)
    ctx.metric("head_histories", [r.history.as_dict() for r in runs])
    ctx.metric("head_epochs_run", len(runs[0].history.epochs))
    ctx.metric("head_seconds", float(np.mean([r.history.seconds for r in runs])))
    ctx.metric("head_epoch_seconds", float(np.mean([r.history.seconds / len(r.history.epochs)
                                                    for r in runs])))
    # The original's 99.04 % was divided by its batches x 32; corrected as in the classifiers
    # section.
    corrected = original.true_accuracy(original.VGG16_TEST_ACC)
    ctx.metric("original_true_acc", corrected)
    ctx.metric("head_vs_original", compare(accs(runs), [corrected]).as_metric())
    ctx.metric("train_above_test", all(
        tr > te for r in runs for tr, te in zip(r.history.train_acc, r.history.eval_acc["test"])))


def ablations(ctx: Context, backbone: Backbone, sets: Sets, plain_sets: Sets, lr: float,
              main: list[HeadRun]) -> None:
    """The original's two mistakes, each undone alone on the same seeds."""
    no_dropout = heads(ctx, backbone, sets, lr, "dropout off", eval_mode=True)
    no_norm = heads(ctx, backbone, plain_sets, lr, "no normalisation")
    both = heads(ctx, backbone, plain_sets, lr, "both mistakes", eval_mode=True)
    rows = []
    for key, label, runs in (("head", "dropout on, ImageNet-normalised (this section)", main),
                             ("no_dropout", "dropout off (eval mode), normalised", no_dropout),
                             ("no_norm", "dropout on, not normalised", no_norm),
                             ("both", "dropout off, not normalised (the original)", both)):
        s = summarize(accs(runs))
        if key != "head":
            ctx.metric(f"{key}_test_mean", s.mean)
            ctx.metric(f"{key}_test_std", s.std)
            ctx.metric(f"head_vs_{key}", compare(accs(main), accs(runs)).as_metric())
        rows.append({"head trained with": label, "test accuracy (%)": round(100 * s.mean, 2),
                     "± std": round(100 * s.std, 2) if s.n > 1 else None, "seeds": s.n})
    ctx.table("ablations", rows)


def speed(ctx: Context, backbone: Backbone, images: torch.Tensor, labels: torch.Tensor,
          lr: float, main: list[HeadRun]) -> None:
    """One epoch on stored features against one epoch recomputing them, as the original did.

    The recomputing epoch is timed on `timing_images` training images and scaled to all of
    them (its cost is proportional to the images: every batch runs the whole extractor).
    """
    cfg: Config = ctx.cfg
    n = images.shape[0]
    pick = torch.from_numpy(subset_index(n, cfg.timing_images, ctx.streams.torch("timing")))
    pick = pick.to(images.device)
    ctx.streams.seed_torch_global("timing/init")
    head = make_head(backbone.extractor.feature_dim, backbone.head_dropout)
    seconds = recompute_epoch(backbone.extractor, head, images[pick], labels[pick],
                              size=cfg.input_size, normalise=True, batch_size=cfg.head_batch_size,
                              lr=lr, generator=ctx.streams.torch("timing/order"))
    recompute = seconds * n / pick.shape[0]
    cached_epoch = float(np.mean([r.history.seconds / len(r.history.epochs) for r in main]))
    extraction = float(ctx.metrics["extract_normalised_seconds"])
    epochs = len(main[0].history.epochs)
    ctx.metric("timing_images", int(pick.shape[0]))
    ctx.metric("recompute_epoch_seconds", recompute)
    ctx.metric("cached_epoch_seconds", cached_epoch)
    ctx.metric("epoch_speedup_seconds_ratio", recompute / max(cached_epoch, 1e-9))
    ctx.metric("recompute_total_seconds", recompute * epochs)
    ctx.metric("cached_total_seconds", extraction + cached_epoch * epochs)
    ctx.metric("total_speedup_seconds_ratio",
               recompute * epochs / max(extraction + cached_epoch * epochs, 1e-9))
    ctx.metric("original_total_seconds", original.VGG16_EPOCH_SECONDS * original.EPOCHS)
    ctx.log(f"one epoch: {recompute:.2f} s recomputing, {cached_epoch:.3f} s on stored features")


# --- label budgets -----------------------------------------------------------------------------


def budgets(ctx: Context, backbone: Backbone, sets: Sets, images: torch.Tensor,
            labels: torch.Tensor, test_images: torch.Tensor, test_labels: torch.Tensor,
            split: Any, lr: float, main: list[HeadRun]) -> None:
    """Head on frozen features against the stronger CNN from scratch, per labelled budget."""
    cfg: Config = ctx.cfg
    train_y = sets.train_y.cpu().numpy()
    train_images = images[split.train_index.to(images.device)]
    rows, points = [], []
    for per_class in parse_list(cfg.budgets, int):
        if per_class > 0 and per_class * 10 > len(train_y):
            ctx.log(f"budget {per_class}/class skipped: only {len(train_y)} training images")
            continue
        key = f"budget{per_class}" if per_class > 0 else "budget_all"
        if per_class > 0:
            head_accs, cnn_accs, sizes = [], [], []
            for seed in range(cfg.seeds):
                pos = np.sort(balanced_index(train_y, per_class,
                                             ctx.streams.torch(f"{key}/seed{seed}"),
                                             strict=True))
                index = torch.from_numpy(pos).to(sets.train.device)
                history = one_head(ctx, backbone, sets.train[index], sets.train_y[index],
                                   {"test": (sets.test, sets.test_y)}, lr, f"{key}/head{seed}")
                head_accs.append(history.eval_acc["test"][-1])
                cnn_accs.append(cnn_from_scratch(
                    ctx, train_images[index.to(train_images.device)],
                    sets.train_y[index].to(train_images.device), test_images, test_labels,
                    f"{key}/cnn{seed}"))
                sizes.append(len(pos))
            n_labelled, cnn_source = sizes[0], "trained here"
            cnn_labelled = n_labelled
        else:
            head_accs = accs(main)
            cnn_accs = list(ctx.metric_of("classifiers", "best_test_accs"))
            n_labelled, cnn_source = len(train_y), "the classifiers section"
            cnn_labelled = int(ctx.metric_of("classifiers", "n_train_used"))
        comparison = compare(head_accs, cnn_accs)
        ctx.metric(f"{key}_head_accs", head_accs)
        ctx.metric(f"{key}_cnn_accs", cnn_accs)
        ctx.metric(f"{key}_head_vs_cnn", comparison.as_metric())
        ctx.log(f"{key}: head {np.mean(head_accs):.4f}, CNN {np.mean(cnn_accs):.4f} "
                f"-> {comparison.verdict}")
        h, c = summarize(head_accs), summarize(cnn_accs)
        points.append({"per_class": per_class, "labelled": n_labelled,
                       "cnn_labelled": cnn_labelled, "key": key,
                       "head_mean": h.mean, "head_std": h.std, "cnn_mean": c.mean,
                       "cnn_std": c.std, "verdict": comparison.verdict})
        rows.append({"labelled per class": per_class if per_class > 0 else "all",
                     "labelled images": n_labelled,
                     "frozen features + head (%)": round(100 * h.mean, 2),
                     "head ± std": round(100 * h.std, 2) if h.n > 1 else None,
                     "stronger CNN from scratch (%)": round(100 * c.mean, 2),
                     "CNN ± std": round(100 * c.std, 2) if c.n > 1 else None,
                     "CNN runs from": cnn_source,
                     "transfer is": comparison.verdict})
    ctx.metric("budget_points", points)
    verdicts = [p["verdict"] for p in points]
    # Budgets by verdict, as the prose names them ("10", "100", "all").
    for name, verdict in (("ahead", "ahead"), ("behind", "behind"),
                          ("unseparated", "cannot separate")):
        ctx.metric(f"budgets_{name}", [budget_name(p["per_class"]) for p in points
                                       if p["verdict"] == verdict])
    ctx.metric("budget_verdicts", verdicts)
    ctx.table("budgets", rows)


def cnn_from_scratch(ctx: Context, images: torch.Tensor, labels: torch.Tensor,
                     test_images: torch.Tensor, test_labels: torch.Tensor, stream: str) -> float:
    """The classifiers section's stronger CNN and recipe on a labelled budget; test accuracy."""
    cfg: Config = ctx.cfg
    mean = float(ctx.metric_of("dataset", "train_mean"))
    std = float(ctx.metric_of("dataset", "train_std"))
    epochs = epochs_for(images.shape[0], cfg.cnn_batch_size, cfg.cnn_epochs, cfg.cnn_min_steps)
    spec = TrainSpec(epochs=epochs, batch_size=cfg.cnn_batch_size, optimizer="sgd",
                     lr=cfg.cnn_lr, momentum=cfg.cnn_momentum, nesterov=True,
                     weight_decay=cfg.cnn_weight_decay, schedule=BEST_CNN.schedule,
                     eval_batch_size=2_000 if ctx.device.type == "cuda" else 200)
    ctx.streams.seed_torch_global(f"{stream}/init")
    model = BestCNN(mean, std, dropout=cfg.cnn_dropout)
    train(model, images, labels, spec, generator=ctx.streams.torch(f"{stream}/order"),
          augment=RandomAffine(cfg.cnn_max_shift, cfg.cnn_max_degrees), progress=ctx.progress,
          desc=stream)
    logits = predict_logits(model, test_images, spec.eval_batch_size)
    return float((logits.argmax(1) == test_labels).float().mean())


# --- fine-tuning -------------------------------------------------------------------------------


def finetune(ctx: Context, backbone: Backbone, images: torch.Tensor, labels: torch.Tensor,
             test_images: torch.Tensor, test_labels: torch.Tensor, split: Any,
             lr: float) -> list[HeadRun]:
    """The last block unfrozen as well, trained on the stored maps of the frozen trunk."""
    cfg: Config = ctx.cfg
    ctx.metric("finetuned", cfg.finetune_epochs > 0)
    if cfg.finetune_epochs <= 0:
        return []
    index = split.train_index.to(images.device)
    with ctx.timer() as t:
        maps = trunk_maps(backbone.extractor, images[index], cfg.input_size, True,
                          cfg.feature_batch)
        test_maps = trunk_maps(backbone.extractor, test_images, cfg.input_size, True,
                               cfg.feature_batch)
    ctx.metric("trunk_maps_seconds", t.seconds)
    ctx.metric("trunk_maps_mb", (maps.numel() + test_maps.numel()) * maps.element_size() / 1e6)
    runs = []
    for seed in range(cfg.seeds):
        ctx.streams.seed_torch_global(f"finetune/seed{seed}/init")
        model = FineTuned(copy.deepcopy(backbone.extractor),
                          make_head(backbone.extractor.feature_dim, backbone.head_dropout))
        model.to(images.device)
        history = fine_tune(model, maps, labels[index], epochs=cfg.finetune_epochs,
                            batch_size=cfg.head_batch_size, lr=lr,
                            block_lr=cfg.finetune_block_lr,
                            generator=ctx.streams.torch(f"finetune/seed{seed}/order"),
                            eval_sets={"test": (test_maps, test_labels)})
        runs.append(HeadRun(history, history.eval_acc["test"][-1]))
    ctx.metric("block_params", sum(p.numel() for p in backbone.extractor.last_block()))
    ctx.metric("finetune_test_accs", accs(runs))
    s = summarize(accs(runs))
    ctx.metric("finetune_test_mean", s.mean)
    ctx.metric("finetune_test_std", s.std)
    ctx.metric("finetune_seconds", float(np.mean([r.history.seconds for r in runs])))
    ctx.metric("finetune_vs_head", compare(accs(runs), ctx.metrics["head_test_accs"]).as_metric())
    return runs


def beside_classifiers(ctx: Context, backbone: Backbone, main: list[HeadRun],
                       tuned: list[HeadRun]) -> None:
    """This section's models in one table with the classifiers section's three."""
    def of(name: str) -> Any:
        return ctx.metric_of("classifiers", name)

    rows = [accuracy_rows("model 1", of("model1_plain_test_accs"), of("model1_params"),
                          of("model1_seconds"), "classifiers section"),
            accuracy_rows("model 2", of("model2_plain_test_accs"), of("model2_params"),
                          of("model2_seconds"), "classifiers section"),
            accuracy_rows("stronger CNN", of("best_test_accs"), of("best_params"),
                          of("best_seconds_mean"), "classifiers section"),
            accuracy_rows(f"{backbone.label}, frozen, + linear head", accs(main),
                          ctx.metrics["head_params"],
                          float(np.mean([r.history.seconds for r in main])), "this section")]
    if tuned:
        rows.append(accuracy_rows(f"{backbone.label}, last block fine-tuned", accs(tuned),
                                  ctx.metrics["block_params"] + ctx.metrics["head_params"],
                                  float(np.mean([r.history.seconds for r in tuned])),
                                  "this section"))
    ctx.metric("head_vs_best", compare(accs(main), of("best_test_accs")).as_metric())
    ctx.metric("head_vs_model2", compare(accs(main), of("model2_plain_test_accs")).as_metric())
    ctx.table("beside_classifiers", rows)


# --- figures -----------------------------------------------------------------------------------


def plot_curves(ctx: Context, main: list[HeadRun], tuned: list[HeadRun]) -> None:
    """Per-epoch train (dashed) and test (solid) accuracy and loss of each seed's head."""
    from matplotlib.lines import Line2D

    fig, axes = new_figure(8, 3.2, ncols=2)
    groups = [("frozen + head", main, 0)] + ([("fine-tuned", tuned, 3)] if tuned else [])
    handles = []
    for label, runs, colour in groups:
        for seed, r in enumerate(runs):
            h = r.history
            c = CLASS_COLORS[(colour + seed) % 10]
            axes[0, 0].plot(h.epochs, h.eval_acc["test"], "-o", color=c, ms=3)
            axes[0, 0].plot(h.epochs, h.train_acc, "--.", color=c, ms=3)
            axes[0, 1].plot(h.epochs, h.eval_loss["test"], "-o", color=c, ms=3)
            axes[0, 1].plot(h.epochs, h.train_loss, "--.", color=c, ms=3)
            handles.append(Line2D([], [], color=c, label=f"{label}, seed {seed}"))
    handles += [Line2D([], [], color="grey", marker="o", ms=3, label="test"),
                Line2D([], [], color="grey", ls="--", label="train (dropout on)")]
    label_curve_axes(axes)
    axes[0, 0].legend(handles=handles, fontsize=7, loc="lower right")
    fig.tight_layout()
    ctx.figure("curves", fig)


def plot_budgets(ctx: Context) -> None:
    """Test accuracy against labelled images per class: frozen features + head vs CNN."""
    points = ctx.metrics["budget_points"]
    fig, axes = new_figure(5.5, 3.4)
    ax = axes[0, 0]
    for key, label, colour, size in (
            ("head", "frozen features + head", CLASS_COLORS[0], "labelled"),
            ("cnn", "stronger CNN from scratch", CLASS_COLORS[1], "cnn_labelled")):
        # "all" sits at the images each side trained on (the CNN's are the classifiers
        # section's); a budget's images are balanced, so per class is a tenth.
        x = [p[size] / 10 for p in points]
        ax.errorbar(x, [p[f"{key}_mean"] for p in points], yerr=[p[f"{key}_std"] for p in points],
                    fmt="-o", color=colour, ms=4, capsize=3, label=label)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training images per class")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    ctx.figure("budgets_plot", fig)


def plot_filters(ctx: Context, backbone: Backbone) -> None:
    """The first convolution's filters as RGB images, each scaled to its own range."""
    weights = backbone.extractor.first_conv.weight.detach().float().cpu()  # [C, 3, k, k]
    ctx.metric("first_filters", int(weights.shape[0]))
    ctx.metric("first_filter_size", int(weights.shape[-1]))
    cols = 8
    rows = math.ceil(weights.shape[0] / cols)
    fig, axes = new_figure(cols * 0.8, rows * 0.8, nrows=rows, ncols=cols)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < weights.shape[0]:
            w = weights[i].permute(1, 2, 0).numpy()
            w = (w - w.min()) / max(float(w.max() - w.min()), 1e-12)
            ax.imshow(w, interpolation="nearest")
    fig.tight_layout()
    ctx.figure("filters", fig)


def plot_maps(ctx: Context, backbone: Backbone, test_images: torch.Tensor,
              test_labels: torch.Tensor) -> None:
    """One test digit through the extractor: up to `maps_per_stage` maps after each stage."""
    cfg: Config = ctx.cfg
    digit = test_images[:1]
    ctx.metric("maps_digit", int(test_labels[0]))
    with torch.no_grad():
        x = preprocess(digit.cpu(), cfg.input_size, True)
        stages = backbone.extractor.cpu().stages(x)
    backbone.extractor.to(ctx.device)
    counts = [min(cfg.maps_per_stage, int(m.shape[1])) for _, m in stages]
    ctx.metric("maps_stages", len(stages))
    ctx.metric("maps_shown", counts)
    ctx.metric("maps_shapes", [[name, list(m.shape[1:])] for name, m in stages])
    cols = min(cfg.maps_per_stage, 32)
    rows = [math.ceil(n / cols) for n in counts]
    fig, axes = new_figure(cols * 0.5 + 1.2, sum(rows) * 0.55, nrows=sum(rows), ncols=cols)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for s, (name, maps) in enumerate(stages):
        top = sum(rows[:s])
        for j in range(counts[s]):
            ax = axes[top + j // cols, j % cols]
            ax.imshow(maps[0, j].numpy(), cmap="viridis", interpolation="nearest")
        axes[top, 0].set_ylabel(f"{name}\n{maps.shape[1]} × {maps.shape[2]}×{maps.shape[3]}",
                                fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout(pad=0.2, h_pad=0.1, w_pad=0.1)
    ctx.figure("maps", fig, dpi=90)


def tsne_maps(ctx: Context, test_features: torch.Tensor, test_images: torch.Tensor,
              test_labels: torch.Tensor) -> None:
    """t-SNE of the frozen features beside t-SNE of the pixels (PCA-50 first, as the embeddings
    section does), the same test images, each scored by the same kNN accuracy."""
    from openTSNE import TSNE
    from sklearn.decomposition import PCA

    cfg: Config = ctx.cfg
    pick = subset_index(test_features.shape[0], cfg.tsne_points, ctx.streams.torch("tsne_points"))
    y = test_labels.cpu().numpy()[pick]
    spaces = {"features": test_features.cpu().numpy()[pick].astype(np.float64),
              "pixels": test_images.cpu().numpy()[pick].reshape(len(pick), -1) / 255.0}
    threads = cfg.threads or os.cpu_count() or 1
    embeddings, folds_acc = {}, {}
    seed = ctx.streams.seed("knn_folds")
    folds = quality.stratified_folds(y, cfg.knn_folds, seed)
    with ctx.timer() as t:
        for name, x in spaces.items():
            dims = min(cfg.pca_dims, x.shape[1], len(x) - 1)
            # The covariance eigendecomposition is exact: no random state to seed.
            projected = PCA(dims, svd_solver="covariance_eigh").fit_transform(x)
            tsne = TSNE(perplexity=min(cfg.perplexity, (len(x) - 1) / 3), initialization="pca",
                        negative_gradient_method="fft" if len(x) > 10_000 else "bh",
                        n_jobs=threads, random_state=ctx.streams.seed(f"tsne/{name}"),
                        verbose=False)
            embeddings[name] = np.asarray(tsne.fit(projected), dtype=np.float64)
            predictions = quality.knn_cv_predict(embeddings[name], y, k=cfg.knn_k,
                                                 folds=cfg.knn_folds, seed=seed)
            folds_acc[name] = quality.fold_accuracies(y, predictions, folds)
            ctx.metric(f"knn_{name}", float(folds_acc[name].mean()))
            ctx.metric(f"knn_{name}_folds", folds_acc[name])
    ctx.metric("tsne_seconds", t.seconds)
    ctx.metric("tsne_points", len(pick))
    ctx.metric("knn_features_vs_pixels",
               compare(folds_acc["features"], folds_acc["pixels"]).as_metric())
    fig, axes = new_figure(9, 4.4, ncols=2)
    pca = f"PCA-{cfg.pca_dims}, t-SNE"
    for ax, name, title in ((axes[0, 0], "pixels", f"pixels ({pca})"),
                            (axes[0, 1], "features", f"frozen features ({pca})")):
        e = embeddings[name]
        for d in range(10):
            mask = y == d
            ax.scatter(e[mask, 0], e[mask, 1], s=3, color=CLASS_COLORS[d], label=str(d),
                       rasterized=True)
            if mask.any():
                cx, cy = np.median(e[mask], axis=0)
                ax.text(cx, cy, str(d), fontsize=11, weight="bold", ha="center", va="center")
        ax.set_title(f"{title}: kNN {100 * folds_acc[name].mean():.1f} %", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    ctx.figure("tsne", fig)
