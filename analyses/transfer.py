"""Transfer learning from ImageNet: frozen features computed once, the original's mistakes
ablated, and whether transfer pays against the stronger CNN trained from scratch.

`compute` extracts the features (once, cached on disk), trains the heads over learning rates,
seeds, ablations and labelled budgets, the CNN from scratch on the budgets, fine-tunes the last
block, times an epoch each way, and maps the test features and pixels with t-SNE; it records
per-run accuracies and histories, the maps' coordinates, the kNN fold accuracies, the first
filters and a few feature maps (never the features). `draw` summarises, compares and plots.
"""

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
from digits.backbones import (
    Backbone,
    VGG16Extractor,
    describe,
    select_backbone,
    stage_maps,
)
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
from digits.plots import CLASS_COLORS, label_curve_axes, new_figure
from digits.recipes import BEST_CNN
from digits.sampling import balanced_index, subset_index
from digits.study import at_grid_edge, choose_lr, validation_split
from digits.training import History, predict_logits, train
from report import Analysis, ComputeContext, DrawContext
from report.compare import Runs, against, compare, incomparable, summarize


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
    head_lrs: tuple[float, ...] = (0.0003, 0.001, 0.003, 0.01)  # Adam; one chosen on validation
    head_min_steps: int = 300  # small training sets train for at least this many steps
    seeds: int = 3
    budgets: tuple[int, ...] = (10, 100, 1_000, 0)  # labelled images per class; 0 = every one
    # The stronger CNN from scratch is digits.recipes.BEST_CNN (the classifiers section's
    # recipe), fixed in advance and never tuned; a profile changes only how long it trains.
    cnn_epochs: int = BEST_CNN.epochs
    cnn_min_steps: int = 600  # small budgets: at least this many steps (20 epochs of 100 images
    # would be 20 steps)
    timing_images: int = 5_000  # images timed for one epoch with features recomputed
    finetune_epochs: int = 3  # last block fine-tuned as well; 0 = skip
    finetune_block_lr: float = 1e-4
    tsne_points: int = 5_000  # mapped and scored as quality.MAP_SCORING says (the embeddings')
    maps_per_stage: int = 64
    threads: int = 0  # openTSNE threads; 0 = all cores (on 2 busy cores, 2 ran 17x slower than 1)


ANALYSIS = Analysis(
    name="transfer",
    requires=("dataset", "classifiers"),
    config=Config(),
    zero_means={"train_subset": "all", "test_subset": "all", "budgets": "all",
                "threads": "all cores", "finetune_epochs": "none"},  # what 0 means here
    # 2 CPU cores, about two minutes: 48-px inputs (EfficientNet-Lite0 runs about 240 images/s
    # on one core there, 120 at 64 px, and its head was no better at 64: 88.9 against 89.4 %),
    # 2,000 training and 500 test images, two seeds, budgets of 10 and 100 per class and all, no
    # fine-tuning, and no 528 MB VGG16 download (a VGG16 already in the hub cache still runs).
    quick={"input_size": 48, "train_subset": 2_000, "test_subset": 500, "validation": 300,
           "seeds": 2, "budgets": (10, 100, 0), "cnn_epochs": 3, "cnn_min_steps": 40,
           "timing_images": 256, "finetune_epochs": 0, "tsne_points": 500,
           "maps_per_stage": 16, "threads": 1, "download": False},
)


# --- helpers (pure, tested in tests/test_transfer.py) ------------------------------------------


def feature_folder(setting: str) -> Path | None:
    """The disk cache for features: None for 'off', ~/.cache/... for 'auto', else the path."""
    if setting in ("", "off"):
        return None
    if setting == "auto":
        base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        return Path(base) / "mnist-explored" / "features"
    return Path(setting)


def budget_key(per_class: int) -> str:
    """The metric prefix of a budget: 'budget10', or 'budget_all' for every training image."""
    return f"budget{per_class}" if per_class > 0 else "budget_all"


def final_accs(histories: list[History]) -> list[float]:
    """Final test accuracy of each run."""
    return [h.eval_acc["test"][-1] for h in histories]


# --- compute: data and features ----------------------------------------------------------------


@dataclass
class Sets:
    """Features and labels of the split: train part, validation part and test images."""

    train: torch.Tensor
    train_y: torch.Tensor
    val: torch.Tensor
    val_y: torch.Tensor
    test: torch.Tensor
    test_y: torch.Tensor


def choose_images(ctx: ComputeContext) -> tuple:
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


def load_backbone(ctx: ComputeContext) -> Backbone:
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


def features_for(ctx: ComputeContext, backbone: Backbone, images: torch.Tensor,
                 test_images: torch.Tensor, normalise: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Training and test features, computed once (or read from the disk cache by content key).

    The seconds stored with them are those of the build that computed them, so a rebuild that
    reads them reports the same extraction time. The features stay out of the results (70,000
    x 1,280 floats, 358 MB): the disk cache keeps them.
    """
    cfg: Config = ctx.cfg
    cache = FeatureCache(feature_folder(cfg.feature_cache))
    name = "normalised" if normalise else "plain"
    out, seconds = [], 0.0
    for part, x in (("train", images), ("test", test_images)):
        key = feature_key(backbone.weights_sha256 or "random", backbone.name, cfg.input_size,
                          normalise, x, ctx.device.type, part)

        def run(x: torch.Tensor = x, part: str = part) -> dict[str, Any]:
            with ctx.timer() as t:
                features = extract(backbone.extractor, x, cfg.input_size, normalise,
                                   cfg.feature_batch, ctx.progress, f"{name} {part} features")
            return {"features": features, "seconds": t.seconds}

        stored, hit = cached(cache, key, ctx.device, run)
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


# --- compute: heads ----------------------------------------------------------------------------


def one_head(ctx: ComputeContext, backbone: Backbone, features: torch.Tensor,
             labels: torch.Tensor, eval_sets: dict, lr: float, stream: str,
             eval_mode: bool = False) -> History:
    """A fresh head (its initial weights and batch order from named streams), trained."""
    cfg: Config = ctx.cfg
    ctx.streams.seed_torch_global(f"{stream}/init")
    head = make_head(backbone.extractor.feature_dim, backbone.head_dropout)
    epochs = epochs_for(features.shape[0], cfg.head_batch_size, cfg.head_epochs,
                        cfg.head_min_steps)
    return train_head(head, features, labels, epochs=epochs, batch_size=cfg.head_batch_size,
                      lr=lr, generator=ctx.streams.torch(f"{stream}/order"),
                      eval_sets=eval_sets, eval_mode=eval_mode)


def choose_head_lr(ctx: ComputeContext, backbone: Backbone, sets: Sets) -> float:
    """The head's Adam rate, chosen by validation accuracy (one run per rate, own streams)."""
    cfg: Config = ctx.cfg
    scores = {}
    for lr in cfg.head_lrs:
        history = one_head(ctx, backbone, sets.train, sets.train_y,
                           {"validation": (sets.val, sets.val_y)}, lr, f"grid/lr{lr:g}")
        scores[lr] = history.eval_acc["validation"][-1]
    lr = choose_lr(scores)
    ctx.choice("head_lr", lr)
    ctx.metric("head_lr_grid", sorted(scores))
    ctx.metric("head_lr_val_accs", [scores[k] for k in sorted(scores)])
    ctx.metric("head_lr_at_edge", at_grid_edge(lr, sorted(scores)))
    ctx.metric("head_lr_val_acc", scores[lr])
    ctx.log(f"head rate {lr:g} (validation {scores[lr]:.4f})")
    return lr


def heads(ctx: ComputeContext, backbone: Backbone, sets: Sets, lr: float, name: str,
          eval_mode: bool = False) -> list[History]:
    """Heads over seeds on every training feature, test curves per epoch. Seed i uses the same
    streams in every variant, so variants are compared on paired starts and batch orders."""
    cfg: Config = ctx.cfg
    runs = [one_head(ctx, backbone, sets.train, sets.train_y, {"test": (sets.test, sets.test_y)},
                     lr, f"head/seed{seed}", eval_mode=eval_mode) for seed in range(cfg.seeds)]
    ctx.log(f"{name}: test " + ", ".join(f"{a:.4f}" for a in final_accs(runs)))
    return runs


def record_head(ctx: ComputeContext, runs: list[History]) -> None:
    """The head on frozen features: each seed's accuracy and curves, and its timing."""
    ctx.metric("head_test_accs", final_accs(runs))
    ctx.metric("head_histories", [h.as_dict() for h in runs])
    ctx.metric("head_epochs_run", len(runs[0].epochs))
    ctx.metric("head_seconds", float(np.mean([h.seconds for h in runs])))
    ctx.metric("head_epoch_seconds", float(np.mean([h.seconds / len(h.epochs) for h in runs])))


def ablations(ctx: ComputeContext, backbone: Backbone, sets: Sets, plain_sets: Sets,
              lr: float) -> None:
    """The original's two mistakes, each undone alone (and both) on the same seeds."""
    for key, chosen, eval_mode, name in (("no_dropout", sets, True, "dropout off"),
                                         ("no_norm", plain_sets, False, "no normalisation"),
                                         ("both", plain_sets, True, "both mistakes")):
        runs = heads(ctx, backbone, chosen, lr, name, eval_mode=eval_mode)
        ctx.metric(f"{key}_test_accs", final_accs(runs))


def speed(ctx: ComputeContext, backbone: Backbone, images: torch.Tensor, labels: torch.Tensor,
          lr: float) -> None:
    """One epoch recomputing the features for every batch, as the original did.

    The epoch is timed on `timing_images` training images and scaled to all of them (its cost
    is proportional to the images: every batch runs the whole extractor).
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
    ctx.metric("timing_images", int(pick.shape[0]))
    ctx.metric("recompute_epoch_seconds", seconds * n / pick.shape[0])
    ctx.log(f"one epoch recomputing the features: {seconds * n / pick.shape[0]:.2f} s")


# --- compute: label budgets --------------------------------------------------------------------


def budgets(ctx: ComputeContext, backbone: Backbone, sets: Sets, images: torch.Tensor,
            test_images: torch.Tensor, test_labels: torch.Tensor, split: Any,
            lr: float) -> None:
    """Per labelled budget and seed: a head on the budget's frozen features and the stronger
    CNN from scratch on the same images, both scored on the test images. The budget "all" is
    the main heads against the classifiers section's runs (nothing trained here)."""
    cfg: Config = ctx.cfg
    train_y = sets.train_y.cpu().numpy()
    train_images = images[split.train_index.to(images.device)]
    runs = []
    for per_class in cfg.budgets:
        if per_class <= 0:
            runs.append({"per_class": 0, "labelled": len(train_y)})
            continue
        if per_class * 10 > len(train_y):
            ctx.log(f"budget {per_class}/class skipped: only {len(train_y)} training images")
            continue
        key = budget_key(per_class)
        head_accs, cnn_accs, sizes = [], [], []
        for seed in range(cfg.seeds):
            pos = np.sort(balanced_index(train_y, per_class,
                                         ctx.streams.torch(f"{key}/seed{seed}"), strict=True))
            index = torch.from_numpy(pos).to(sets.train.device)
            history = one_head(ctx, backbone, sets.train[index], sets.train_y[index],
                               {"test": (sets.test, sets.test_y)}, lr, f"{key}/head{seed}")
            head_accs.append(history.eval_acc["test"][-1])
            cnn_accs.append(cnn_from_scratch(
                ctx, train_images[index.to(train_images.device)],
                sets.train_y[index].to(train_images.device), test_images, test_labels,
                f"{key}/cnn{seed}"))
            sizes.append(len(pos))
        ctx.metric(f"{key}_head_accs", head_accs)
        ctx.metric(f"{key}_cnn_accs", cnn_accs)
        ctx.log(f"{key}: head {np.mean(head_accs):.4f}, CNN {np.mean(cnn_accs):.4f}")
        runs.append({"per_class": per_class, "labelled": sizes[0]})
    ctx.metric("budget_runs", runs)


def cnn_from_scratch(ctx: ComputeContext, images: torch.Tensor, labels: torch.Tensor,
                     test_images: torch.Tensor, test_labels: torch.Tensor, stream: str) -> float:
    """The classifiers section's stronger CNN and recipe on a labelled budget; test accuracy."""
    cfg: Config = ctx.cfg
    mean = float(ctx.metric_of("dataset", "train_mean"))
    std = float(ctx.metric_of("dataset", "train_std"))
    epochs = epochs_for(images.shape[0], BEST_CNN.batch_size, cfg.cnn_epochs, cfg.cnn_min_steps)
    spec = BEST_CNN.spec(ctx.device, epochs=epochs)
    ctx.streams.seed_torch_global(f"{stream}/init")
    model = BEST_CNN.model(mean, std)
    train(model, images, labels, spec, generator=ctx.streams.torch(f"{stream}/order"),
          augment=BEST_CNN.augment(), progress=ctx.progress, desc=stream)
    logits = predict_logits(model, test_images, spec.eval_batch_size)
    return float((logits.argmax(1) == test_labels).float().mean())


# --- compute: fine-tuning ----------------------------------------------------------------------


def finetune(ctx: ComputeContext, backbone: Backbone, images: torch.Tensor, labels: torch.Tensor,
             test_images: torch.Tensor, test_labels: torch.Tensor, split: Any,
             lr: float) -> None:
    """The last block unfrozen as well, trained on the stored maps of the frozen trunk."""
    cfg: Config = ctx.cfg
    ctx.metric("finetuned", cfg.finetune_epochs > 0)
    if cfg.finetune_epochs <= 0:
        return
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
        runs.append(fine_tune(model, maps, labels[index], epochs=cfg.finetune_epochs,
                              batch_size=cfg.head_batch_size, lr=lr,
                              block_lr=cfg.finetune_block_lr,
                              generator=ctx.streams.torch(f"finetune/seed{seed}/order"),
                              eval_sets={"test": (test_maps, test_labels)}))
    ctx.metric("block_params", sum(p.numel() for p in backbone.extractor.last_block()))
    ctx.metric("finetune_test_accs", final_accs(runs))
    ctx.metric("finetune_histories", [h.as_dict() for h in runs])
    ctx.metric("finetune_seconds", float(np.mean([h.seconds for h in runs])))


# --- compute: what the network sees ------------------------------------------------------------


def record_network(ctx: ComputeContext, backbone: Backbone, test_images: torch.Tensor,
                   test_labels: torch.Tensor) -> None:
    """The first convolution's filters, and one test digit's maps after each stage (at most
    `maps_per_stage` a stage, float16: VGG16's 64 maps of 112 x 112 after block 1 are 1.6 MB)."""
    cfg: Config = ctx.cfg
    ctx.array("first_conv", backbone.extractor.first_conv.weight.detach().float().cpu())
    ctx.metric("maps_digit", int(test_labels[0]))
    stages = stage_maps(backbone.extractor, test_images[0], cfg.input_size, cfg.maps_per_stage)
    ctx.metric("maps_stages", len(stages))
    ctx.metric("maps_shown", [int(maps.shape[0]) for _, _, maps in stages])
    ctx.metric("maps_shapes", [[name, shape] for name, shape, _ in stages])
    for s, (_, _, maps) in enumerate(stages):
        ctx.array(f"maps_{s}", maps)


def tsne_maps(ctx: ComputeContext, test_features: torch.Tensor, test_images: torch.Tensor,
              test_labels: torch.Tensor) -> None:
    """t-SNE of the frozen features and of the pixels of the same test images, after PCA, each
    scored by kNN on the same folds: the embeddings section's way (quality.MAP_SCORING)."""
    cfg: Config = ctx.cfg
    scoring = quality.MAP_SCORING
    pick = subset_index(test_features.shape[0], cfg.tsne_points, ctx.streams.torch("tsne_points"))
    y = test_labels.cpu().numpy()[pick]
    spaces = {"features": test_features.cpu().numpy()[pick].astype(np.float64),
              "pixels": test_images.cpu().numpy()[pick].reshape(len(pick), -1) / 255.0}
    threads = cfg.threads or os.cpu_count() or 1
    embeddings = {}
    with ctx.timer() as t:
        for name, x in spaces.items():
            projected = quality.project(quality.fit_pca(x), x, scoring.pca_dims)
            embeddings[name] = quality.tsne_map(projected, seed=ctx.streams.seed(f"tsne/{name}"),
                                                threads=threads, perplexity=scoring.perplexity,
                                                gradients="auto")
        scores = quality.knn_scores(embeddings, y, seed=ctx.streams.seed("knn_folds"),
                                    scoring=scoring)
    for name, coordinates in embeddings.items():
        ctx.metric(f"knn_{name}_folds", scores.accuracies[name])
        ctx.array(f"tsne_{name}", coordinates.astype(np.float32))
    ctx.array("tsne_labels", y.astype(np.uint8))
    ctx.array("tsne_index", pick.astype(np.int32))  # into this build's test images
    ctx.metric("tsne_seconds", t.seconds)
    ctx.metric("tsne_points", len(pick))
    for setting in ("pca_dims", "perplexity", "knn_k", "knn_folds"):
        ctx.metric(setting, getattr(scoring, setting))


def compute(ctx: ComputeContext) -> None:
    """Backbone, features once, heads over rates, seeds, ablations and budgets against the CNN
    from scratch, fine-tuning, timings, and what the figures of the network need."""
    images, labels, test_images, test_labels, split = choose_images(ctx)
    backbone = load_backbone(ctx)
    normalised = features_for(ctx, backbone, images, test_images, normalise=True)
    plain = features_for(ctx, backbone, images, test_images, normalise=False)
    sets = make_sets(normalised, labels, test_labels, split)
    plain_sets = make_sets(plain, labels, test_labels, split)

    lr = choose_head_lr(ctx, backbone, sets)
    record_head(ctx, heads(ctx, backbone, sets, lr, "head"))
    ablations(ctx, backbone, sets, plain_sets, lr)
    speed(ctx, backbone, images[split.train_index.to(images.device)],
          labels[split.train_index.to(labels.device)], lr)
    budgets(ctx, backbone, sets, images, test_images, test_labels, split, lr)
    finetune(ctx, backbone, images, labels, test_images, test_labels, split, lr)
    record_network(ctx, backbone, test_images, test_labels)
    tsne_maps(ctx, normalised[1], test_images, test_labels)


# --- draw: summaries, verdicts and tables ------------------------------------------------------


def budget_name(per_class: int) -> str:
    """How the page names a budget: '10' (per class) or 'all'."""
    return f"{per_class:,}" if per_class > 0 else "all"


def seeds(values: list[float]) -> Runs:
    """Test accuracies of independent runs, one per seed."""
    return Runs(values, "seed")


def unlike_original(ctx: DrawContext) -> str:
    """Why this head is not comparable with the original's published number ('' when it is):
    the original trained VGG16's head at 224 pixels on every training image and tested on all
    the test images."""
    cfg: Config = ctx.cfg
    r = ctx.results
    why = []
    if not r["backbone_is_vgg16"]:
        why.append(f"another network ({r['backbone_label']}, not VGG16)")
    if cfg.input_size != r["imagenet_size"]:
        why.append(f"{cfg.input_size}-pixel inputs, not {r['imagenet_size']}")
    if cfg.train_subset:
        why.append(f"{r['n_train']:,} training images, not all {r['n_train_total']:,}")
    if cfg.test_subset:
        why.append(f"{r['n_test']:,} test images, not all {r['n_test_total']:,}")
    return "; ".join(why)


def unlike_classifiers(ctx: DrawContext) -> str:
    """Why this section's runs are not comparable with the classifiers section's ('' when they
    are): both must be tested on the same images and trained on every training image they may
    use (here, all but the validation split; there, all of them)."""
    cfg: Config = ctx.cfg
    r = ctx.results
    theirs_test = int(ctx.metric_of("classifiers", "n_test"))
    theirs_train = int(ctx.metric_of("classifiers", "n_train_used"))
    theirs_all = int(ctx.metric_of("classifiers", "n_train_total"))
    why = []
    if cfg.train_subset or theirs_train != theirs_all:
        why.append(f"different training sets ({r['n_train']:,} against {theirs_train:,} "
                   "images)")
    if cfg.test_subset or r["n_test"] != theirs_test:
        why.append(f"different test sets ({r['n_test']:,} against {theirs_test:,} images)")
    return " and ".join(why)


def with_classifiers(ctx: DrawContext, ours: list[float], theirs: list[float]) -> dict:
    """This section's runs against the classifiers section's: compared only like with like."""
    why = unlike_classifiers(ctx)
    if why:
        return incomparable(seeds(ours), seeds(theirs), why).as_metric()
    return compare(seeds(ours), seeds(theirs)).as_metric()


def accuracy_rows(label: str, accs: list[float], params: int, seconds: float,
                  source: str) -> dict[str, Any]:
    """A row of the table beside the classifiers section's models."""
    s = summarize(accs)
    return {"model": label, "test accuracy (%)": round(100 * s.mean, 2),
            "± std": round(100 * s.std, 2) if s.n > 1 else None, "runs": s.n,
            "parameters trained": params, "train seconds": round(seconds, 1), "from": source}


def draw_head(ctx: DrawContext) -> None:
    """The head's mean over seeds, against the original's corrected number."""
    r = ctx.results
    s = summarize(r["head_test_accs"])
    ctx.metric("head_test_mean", s.mean)
    ctx.metric("head_test_std", s.std)
    # The original's 99.04 % was divided by its batches x 32; corrected as in the classifiers
    # section.
    corrected = original.true_accuracy(original.VGG16_TEST_ACC)
    ctx.metric("original_true_acc", corrected)
    # Against the original's one published number, only where this head was trained as the
    # original's was (same network, input size, training and test images).
    unlike = unlike_original(ctx)
    ctx.metric("unlike_original", unlike)
    label = "the original's corrected accuracy"
    ctx.metric("head_vs_original", (
        incomparable(seeds(r["head_test_accs"]), corrected, f"trained with {unlike}", label)
        if unlike else against(seeds(r["head_test_accs"]), corrected, label)).as_metric())
    ctx.metric("train_above_test", all(
        tr > te for h in r["head_histories"]
        for tr, te in zip(h["train_acc"], h["eval_acc"]["test"])))


def draw_ablations(ctx: DrawContext) -> None:
    """Each mistake undone alone, against the head: means, verdicts and the table."""
    r = ctx.results
    rows = []
    for key, label in (("head", "dropout on, ImageNet-normalised (this section)"),
                       ("no_dropout", "dropout off (eval mode), normalised"),
                       ("no_norm", "dropout on, not normalised"),
                       ("both", "dropout off, not normalised (the original)")):
        accs = r[f"{key}_test_accs"]
        s = summarize(accs)
        if key != "head":
            ctx.metric(f"{key}_test_mean", s.mean)
            ctx.metric(f"{key}_test_std", s.std)
            ctx.metric(f"head_vs_{key}",
                       compare(seeds(r["head_test_accs"]), seeds(accs)).as_metric())
        rows.append({"head trained with": label, "test accuracy (%)": round(100 * s.mean, 2),
                     "± std": round(100 * s.std, 2) if s.n > 1 else None, "seeds": s.n})
    ctx.table("ablations", rows)


def draw_speed(ctx: DrawContext) -> None:
    """Stored features against recomputed ones: per epoch and over the whole training."""
    r = ctx.results
    recompute, cached_epoch = r["recompute_epoch_seconds"], r["head_epoch_seconds"]
    extraction, epochs = r["extract_normalised_seconds"], r["head_epochs_run"]
    ctx.metric("cached_epoch_seconds", cached_epoch)
    ctx.metric("epoch_speedup_seconds_ratio", recompute / max(cached_epoch, 1e-9))
    ctx.metric("recompute_total_seconds", recompute * epochs)
    ctx.metric("cached_total_seconds", extraction + cached_epoch * epochs)
    ctx.metric("total_speedup_seconds_ratio",
               recompute * epochs / max(extraction + cached_epoch * epochs, 1e-9))
    ctx.metric("original_total_seconds", original.VGG16_EPOCH_SECONDS * original.EPOCHS)


def draw_budgets(ctx: DrawContext) -> None:
    """Head against CNN from scratch per budget: verdicts, the plot's points and the table."""
    r = ctx.results
    rows, points = [], []
    for run in r["budget_runs"]:
        per_class, key = run["per_class"], budget_key(run["per_class"])
        if per_class > 0:
            head_accs, cnn_accs = r[f"{key}_head_accs"], r[f"{key}_cnn_accs"]
            cnn_labelled, cnn_source = run["labelled"], "trained here"
        else:
            head_accs = r["head_test_accs"]
            cnn_accs = list(ctx.metric_of("classifiers", "best_test_accs"))
            cnn_labelled = int(ctx.metric_of("classifiers", "n_train_used"))
            cnn_source = "the classifiers section"
            ctx.metric(f"{key}_head_accs", head_accs)
            ctx.metric(f"{key}_cnn_accs", cnn_accs)
        # A budget's two sides saw the same images and test set; "all" sets this section's
        # head beside the classifiers section's runs, compared only when they are alike.
        comparison = (compare(seeds(head_accs), seeds(cnn_accs)).as_metric() if per_class > 0
                      else with_classifiers(ctx, head_accs, cnn_accs))
        ctx.metric(f"{key}_head_vs_cnn", comparison)
        h, c = summarize(head_accs), summarize(cnn_accs)
        points.append({"per_class": per_class, "labelled": run["labelled"],
                       "cnn_labelled": cnn_labelled, "key": key,
                       "head_mean": h.mean, "head_std": h.std, "cnn_mean": c.mean,
                       "cnn_std": c.std, "verdict": comparison["verdict"],
                       "compared": comparison["reason"] != "not comparable"})
        rows.append({"labelled per class": per_class if per_class > 0 else "all",
                     "labelled images": run["labelled"],
                     "frozen features + head (%)": round(100 * h.mean, 2),
                     "head ± std": round(100 * h.std, 2) if h.n > 1 else None,
                     "stronger CNN from scratch (%)": round(100 * c.mean, 2),
                     "CNN ± std": round(100 * c.std, 2) if c.n > 1 else None,
                     "CNN runs from": cnn_source,
                     "transfer is": (comparison["verdict"]
                                     if comparison["reason"] != "not comparable"
                                     else "not compared")})
    ctx.metric("budget_points", points)
    # Budgets by verdict, as the prose names them ("10", "100", "all").
    for name, verdict in (("ahead", "ahead"), ("behind", "behind"),
                          ("unseparated", "cannot separate")):
        ctx.metric(f"budgets_{name}", [budget_name(p["per_class"]) for p in points
                                       if p["verdict"] == verdict and p["compared"]])
    ctx.metric("budgets_not_compared", [budget_name(p["per_class"]) for p in points
                                        if not p["compared"]])
    ctx.metric("budget_verdicts", [p["verdict"] for p in points])
    ctx.table("budgets", rows)


def draw_finetune(ctx: DrawContext) -> None:
    """The fine-tuned network's mean over seeds, against the frozen one."""
    r = ctx.results
    if not r["finetuned"]:
        return
    s = summarize(r["finetune_test_accs"])
    ctx.metric("finetune_test_mean", s.mean)
    ctx.metric("finetune_test_std", s.std)
    ctx.metric("finetune_vs_head",
               compare(seeds(r["finetune_test_accs"]), seeds(r["head_test_accs"])).as_metric())


def beside_classifiers(ctx: DrawContext) -> None:
    """This section's models in one table with the classifiers section's three."""
    r = ctx.results

    def of(name: str) -> Any:
        return ctx.metric_of("classifiers", name)

    label = r["backbone_label"]
    rows = [accuracy_rows("model 1", of("model1_plain_test_accs"), of("model1_params"),
                          of("model1_seconds"), "classifiers section"),
            accuracy_rows("model 2", of("model2_plain_test_accs"), of("model2_params"),
                          of("model2_seconds"), "classifiers section"),
            accuracy_rows("stronger CNN", of("best_test_accs"), of("best_params"),
                          of("best_seconds_mean"), "classifiers section"),
            accuracy_rows(f"{label}, frozen, + linear head", r["head_test_accs"],
                          r["head_params"], r["head_seconds"], "this section")]
    if r["finetuned"]:
        rows.append(accuracy_rows(f"{label}, last block fine-tuned", r["finetune_test_accs"],
                                  r["block_params"] + r["head_params"], r["finetune_seconds"],
                                  "this section"))
    ctx.metric("unlike_classifiers", unlike_classifiers(ctx))
    ctx.metric("head_vs_best", with_classifiers(ctx, r["head_test_accs"], of("best_test_accs")))
    ctx.metric("head_vs_model2",
               with_classifiers(ctx, r["head_test_accs"], of("model2_plain_test_accs")))
    ctx.table("beside_classifiers", rows)


# --- draw: figures -----------------------------------------------------------------------------


def plot_curves(ctx: DrawContext) -> None:
    """Per-epoch train (dashed) and test (solid) accuracy and loss of each seed's head."""
    from matplotlib.lines import Line2D

    r = ctx.results
    fig, axes = new_figure(8, 3.2, ncols=2)
    groups = [("frozen + head", r["head_histories"], 0)]
    if r["finetuned"]:
        groups.append(("fine-tuned", r["finetune_histories"], 3))
    handles = []
    for label, histories, colour in groups:
        for seed, h in enumerate(histories):
            c = CLASS_COLORS[(colour + seed) % 10]
            axes[0, 0].plot(h["epochs"], h["eval_acc"]["test"], "-o", color=c, ms=3)
            axes[0, 0].plot(h["epochs"], h["train_acc"], "--.", color=c, ms=3)
            axes[0, 1].plot(h["epochs"], h["eval_loss"]["test"], "-o", color=c, ms=3)
            axes[0, 1].plot(h["epochs"], h["train_loss"], "--.", color=c, ms=3)
            handles.append(Line2D([], [], color=c, label=f"{label}, seed {seed}"))
    handles += [Line2D([], [], color="grey", marker="o", ms=3, label="test"),
                Line2D([], [], color="grey", ls="--", label="train (dropout on)")]
    label_curve_axes(axes)
    axes[0, 0].legend(handles=handles, fontsize=7, loc="lower right")
    fig.tight_layout()
    ctx.figure("curves", fig)


def plot_budgets(ctx: DrawContext) -> None:
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


def plot_filters(ctx: DrawContext) -> None:
    """The first convolution's filters as RGB images, each scaled to its own range."""
    weights = ctx.array("first_conv")  # [C, 3, k, k]
    ctx.metric("first_filters", int(weights.shape[0]))
    ctx.metric("first_filter_size", int(weights.shape[-1]))
    cols = 8
    rows = math.ceil(weights.shape[0] / cols)
    fig, axes = new_figure(cols * 0.8, rows * 0.8, nrows=rows, ncols=cols)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < weights.shape[0]:
            w = weights[i].transpose(1, 2, 0)
            w = (w - w.min()) / max(float(w.max() - w.min()), 1e-12)
            ax.imshow(w, interpolation="nearest")
    fig.tight_layout()
    ctx.figure("filters", fig)


def plot_maps(ctx: DrawContext) -> None:
    """One test digit through the extractor: the recorded maps of each stage, a row per 32."""
    cfg: Config = ctx.cfg
    r = ctx.results
    counts, shapes = r["maps_shown"], r["maps_shapes"]
    cols = min(cfg.maps_per_stage, 32)
    rows = [math.ceil(n / cols) for n in counts]
    fig, axes = new_figure(cols * 0.5 + 1.2, sum(rows) * 0.55, nrows=sum(rows), ncols=cols)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    for s, (name, (channels, height, width)) in enumerate(shapes):
        top = sum(rows[:s])
        maps = ctx.array(f"maps_{s}").astype(np.float32)
        for j in range(counts[s]):
            axes[top + j // cols, j % cols].imshow(maps[j], cmap="viridis",
                                                   interpolation="nearest")
        axes[top, 0].set_ylabel(f"{name}\n{channels} × {height}×{width}",
                                fontsize=7, rotation=0, ha="right", va="center")
    fig.tight_layout(pad=0.2, h_pad=0.1, w_pad=0.1)
    ctx.figure("maps", fig, dpi=90)


def plot_tsne(ctx: DrawContext) -> None:
    """The two t-SNE maps side by side, each titled with its kNN score; the verdict."""
    r = ctx.results
    folds = {name: np.asarray(r[f"knn_{name}_folds"]) for name in ("features", "pixels")}
    for name, accs in folds.items():
        ctx.metric(f"knn_{name}", float(accs.mean()))
    ctx.metric("knn_features_vs_pixels",
               compare(Runs(folds["features"], "fold"), Runs(folds["pixels"], "fold")).as_metric())
    y = ctx.array("tsne_labels")
    fig, axes = new_figure(9, 4.4, ncols=2)
    pca = f"PCA-{r['pca_dims']}, t-SNE"
    for ax, name, title in ((axes[0, 0], "pixels", f"pixels ({pca})"),
                            (axes[0, 1], "features", f"frozen features ({pca})")):
        e = ctx.array(f"tsne_{name}")
        for d in range(10):
            mask = y == d
            ax.scatter(e[mask, 0], e[mask, 1], s=3, color=CLASS_COLORS[d], label=str(d),
                       rasterized=True)
            if mask.any():
                cx, cy = np.median(e[mask], axis=0)
                ax.text(cx, cy, str(d), fontsize=11, weight="bold", ha="center", va="center")
        ax.set_title(f"{title}: kNN {100 * folds[name].mean():.1f} %", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    ctx.figure("tsne", fig)


def draw(ctx: DrawContext) -> None:
    """Every summary, verdict, table and figure of the section, from compute's results."""
    draw_head(ctx)
    draw_ablations(ctx)
    draw_speed(ctx)
    draw_budgets(ctx)
    draw_finetune(ctx)
    beside_classifiers(ctx)
    plot_curves(ctx)
    plot_budgets(ctx)
    plot_filters(ctx)
    plot_maps(ctx)
    plot_tsne(ctx)
