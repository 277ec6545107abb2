"""The side-by-side benchmarks `python -m bench` runs, one small function each.

Each function measures the project's way (the first side) and the usual alternative (the
second side) in the same process, warm-up first, then alternating repeats, and records the
medians with `run.row`. Sizes live in SIZES: `small` takes a few seconds per benchmark on two
CPU cores, `full` is sized for one GPU machine (16 cores, an H100) to finish all in 80-100 s
(estimated, not yet measured there). The training comparisons reuse bench/bench_training.py,
the t-SNE runners bench/bench_tsne.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from bench.harness import ROOT, Run, Side, Skip, median, timed

# Per benchmark, per --size; "cpu"/"cuda" where the device changes what is affordable.
SIZES = {
    "training": {"small": {"cpu": {"n": 320, "repeat": 3}},
                 "full": {"cpu": {"n": 6_400, "repeat": 3}, "cuda": {"n": 9_600, "repeat": 3}}},
    "parallel": {"small": {"cpu": {"n": 160, "models": 2, "repeat": 3},
                           "cuda": {"n": 2_000, "models": 8, "repeat": 3}},
                 "full": {"cpu": {"n": 256, "models": 4, "repeat": 3},
                          "cuda": {"n": 6_000, "models": 8, "repeat": 3}}},
    "tsne": {"small": {"n": 500, "threads": 1}, "full": {"n": 2_000, "threads": 0}},
    "features": {"small": {"cpu": {"n": 128, "input_size": 48, "repeat": 3}},
                 "full": {"cpu": {"n": 256, "input_size": 224, "repeat": 3},
                          "cuda": {"n": 10_000, "input_size": 224, "repeat": 3}}},
    "gan": {"small": {"cpu": {"n": 400, "widths": "half", "recipes": 2, "repeat": 3}},
            "full": {"cpu": {"n": 2_000, "widths": "half", "recipes": 3, "repeat": 3},
                     "cuda": {"n": 4_000, "widths": "full", "recipes": 5, "repeat": 3}}},
    "rebuild": {"small": {"repeat": 1}, "full": {"repeat": 1}},
    "redraw": {"small": {}, "full": {}},  # one redraw of whatever frozen/ holds
    "precision": {"small": {"n": 960, "repeat": 3}, "full": {"n": 3_200, "repeat": 3}},
    "fused": {"small": {"steps": 50, "repeat": 3}, "full": {"steps": 200, "repeat": 3}},
    # Dense TorchDR holds N x N matrices: 20,000 points is 1.6 GB each, in a GPU's reach.
    "tsne_torch": {"small": {"cpu": {"n": 1_000}},
                   "full": {"cpu": {"n": 2_000}, "cuda": {"n": 20_000}}},
}
# Seconds of timed repeats after which a benchmark's loop stops early (see Run.repeats).
BUDGET = {"small": 60.0, "full": 10.0}


def sizes(run: Run, name: str, device: str | None = None) -> dict:
    """The sizes of benchmark `name` at this --size (and device, where they differ)."""
    table = SIZES[name][run.size]
    if device is None:
        return table
    return table.get(device) or SIZES[name]["full"][device]


def _torch_device(run: Run):
    import torch

    if run.device == "cuda":
        run.require_cuda()
    return torch.device(run.device)


def _training_args(seed: int = 0) -> argparse.Namespace:
    """What bench_training's functions read from their command line."""
    return argparse.Namespace(batch_size=32, seed=seed, workers=0)


# --- 1. the training core against a DataLoader with PIL transforms ---------------------------


def training(run: Run) -> None:
    """digits.training on device tensors vs DataLoader + PIL + torchvision transforms (Model2)."""
    from bench.bench_training import core_epoch, loader_epoch

    device = _torch_device(run)
    size = sizes(run, "training", device.type)
    n, repeat = size["n"], size["repeat"]
    args = _training_args()
    data = run.data()
    images, labels = data.train_images[:n].to(device), data.train_labels[:n].to(device)
    warm = min(n, 20 * args.batch_size)
    run.log(f"warm-up ({warm} images each side)")
    core_epoch(images[:warm], labels[:warm], device, args)
    loader_epoch(images[:warm], labels[:warm], device, args, max_steps=10)
    cores, loaders = [], []
    for i in run.repeats(repeat):
        cores.append(core_epoch(images, labels, device, args))
        loaders.append(loader_epoch(images, labels, device, args))
        run.log(f"repeat {i + 1}/{repeat}: core {cores[-1]:,.0f} img/s, "
                f"DataLoader {loaders[-1]:,.0f} img/s")
    run.row("training core vs DataLoader", device.type,
            Side("tensors on the device", median(cores), "img/s", cores),
            Side("DataLoader + PIL", median(loaders), "img/s", loaders),
            detail=f"Model2, one epoch of {n:,} images, batch 32, SGD, 0 workers, "
                   f"median of {len(cores)}")


def precision(run: Run) -> None:
    """bf16 autocast vs float32 on the CPU, where bf16 is native (the CPU builds' choice)."""
    from unittest import mock

    from bench.bench_training import core_epoch
    from digits import training as core
    from report.machine import cpu_bf16, cpu_capability

    what = "bf16 autocast vs float32"
    if not cpu_bf16():
        run.skip(what, "cpu", f"this CPU ({cpu_capability()}) has no native bf16: the build "
                              "trains in float32 here")
        return
    import torch

    size = sizes(run, "precision")
    n, repeat = size["n"], size["repeat"]
    args = _training_args()
    data = run.data()
    images, labels = data.train_images[:n], data.train_labels[:n]
    cpu = torch.device("cpu")

    def epoch(bf16: bool) -> float:
        with mock.patch.object(core, "cpu_bf16", lambda: bf16):
            return core_epoch(images, labels, cpu, args)

    run.log("warm-up (one epoch each side)")
    epoch(True)
    epoch(False)
    halves, singles = [], []
    for i in run.repeats(repeat):
        halves.append(epoch(True))
        singles.append(epoch(False))
        run.log(f"repeat {i + 1}/{repeat}: bf16 {halves[-1]:,.0f} img/s, "
                f"float32 {singles[-1]:,.0f} img/s")
    run.row(what, "cpu", Side("bf16 autocast", median(halves), "img/s", halves),
            Side("float32", median(singles), "img/s", singles),
            detail=f"Model2, one epoch of {n:,} images, batch 32, SGD, "
                   f"{torch.get_num_threads()} threads, {cpu_capability()}, "
                   f"median of {len(halves)}")


def fused(run: Run) -> None:
    """An Adam step as torch's fused kernel vs one parameter tensor at a time (Model2)."""
    import torch

    from digits.models import Model2

    device = _torch_device(run)
    size = sizes(run, "fused")
    steps, repeat = size["steps"], size["repeat"]
    torch.manual_seed(0)
    model = Model2().to(device)
    for p in model.parameters():
        p.grad = torch.randn_like(p) * 1e-3

    def per_second(**options: bool) -> float:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, **options)
        optimizer.step()  # creates the state: not timed
        seconds, _ = timed(lambda: [optimizer.step() for _ in range(steps)], device)
        return steps / seconds

    run.log(f"warm-up; {steps} Adam steps per side")
    per_second(fused=True)
    per_second(foreach=False)
    fused_runs, single_runs = [], []
    for i in run.repeats(repeat):
        fused_runs.append(per_second(fused=True))
        single_runs.append(per_second(foreach=False))
        run.log(f"repeat {i + 1}/{repeat}: fused {fused_runs[-1]:,.0f} steps/s, "
                f"per tensor {single_runs[-1]:,.0f} steps/s")
    run.row("fused optimizer step vs per tensor", device.type,
            Side("fused", median(fused_runs), "steps/s", fused_runs),
            Side("one tensor at a time", median(single_runs), "steps/s", single_runs),
            detail=f"Adam over Model2's {sum(p.numel() for p in model.parameters()):,} "
                   f"parameters, {steps} steps, {torch.get_num_threads()} CPU threads, "
                   f"median of {len(fused_runs)}")


# --- 2. K models at once against one after another -----------------------------------------------


def parallel(run: Run) -> None:
    """digits.parallel concurrent (vmap) vs sequential, on the CPU and on CUDA when chosen."""
    import torch

    args = _training_args()
    devices = ["cpu"] + (["cuda"] if run.device == "cuda" else [])
    data = run.data()
    for name in devices:
        if name == "cuda" and not run.cuda_available:
            run.skip("K models at once vs one after another", "cuda", "CUDA is not available")
            continue
        try:
            _parallel_on(run, torch.device(name), data, args)
        except Exception as error:  # noqa: BLE001 - the other device still runs
            traceback.print_exc()
            run.skip("K models at once vs one after another", name,
                     f"failed: {type(error).__name__}: {error}")


def _parallel_on(run: Run, device, data, args: argparse.Namespace) -> None:
    """The concurrent/sequential comparison on one device; on CUDA also the concurrent step
    captured as a CUDA graph (the default there) against the same step run eagerly."""
    from bench.bench_training import many

    name = device.type
    graphs = name == "cuda"
    size = sizes(run, "parallel", name)
    n, k, repeat = size["n"], size["models"], size["repeat"]
    x, y = data.train_images[:n].to(device), data.train_labels[:n].to(device)
    run.log(f"{name}: warm-up, {k} models")
    many(x[:64], y[:64], device, k, "concurrent", args)
    many(x[:64], y[:64], device, k, "sequential", args)
    seqs, cons, eager = [], [], []
    for i in run.repeats(repeat):
        seqs.append(many(x, y, device, k, "sequential", args))
        cons.append(many(x, y, device, k, "concurrent", args))
        if graphs:
            eager.append(many(x, y, device, k, "concurrent", args, cuda_graph=False))
        run.log(f"{name} repeat {i + 1}/{repeat}: concurrent {cons[-1]:,.0f} img/s, "
                f"sequential {seqs[-1]:,.0f} img/s"
                + (f", concurrent eager {eager[-1]:,.0f} img/s" if graphs else ""))
    detail = (f"Model2, {n:,} images per model, batch 32, six optimizers in turn, images/s "
              f"summed over the models{' (one epoch, capture included)' if graphs else ''}, "
              f"median of {len(cons)}")
    run.row("K models at once vs one after another", name,
            Side(f"{k} at once (vmap)", median(cons), "img/s", cons),
            Side(f"{k} one after another", median(seqs), "img/s", seqs), detail=detail)
    if graphs:
        run.row("K models at once: CUDA graph vs eager steps", name,
                Side(f"{k} at once, captured CUDA graph", median(cons), "img/s", cons),
                Side(f"{k} at once, eager steps", median(eager), "img/s", eager),
                detail=detail)


# --- 3. openTSNE against scikit-learn -------------------------------------------------------------


def tsne(run: Run) -> None:
    """openTSNE vs sklearn.manifold.TSNE on the same PCA-50 points; kNN accuracy of both maps."""
    from bench.bench_tsne import run_opentsne, run_sklearn
    from digits.embedding_quality import knn_cv_predict
    from digits.metrics import accuracy

    try:
        import openTSNE  # noqa: F401
    except ImportError as error:
        raise Skip(f"openTSNE is not installed ({error})") from error
    size = sizes(run, "tsne")
    threads = size["threads"] or os.cpu_count() or 1
    args = argparse.Namespace(perplexity=30.0, threads=threads, gradients="auto", seed=7)
    x, y = _pca_points(run, size["n"], args.seed)
    run.log(f"PCA-50 of {len(y):,} images; warm-up (100 points each)")
    run_opentsne(x[:100], args)
    run_sklearn(x[:100], args)
    results = {}
    for name, runner in (("openTSNE", run_opentsne), ("scikit-learn", run_sklearn)):
        embedding, seconds, iterations = runner(x, args)
        pred = knn_cv_predict(embedding, y, k=10, folds=5, seed=args.seed, n_jobs=threads)
        results[name] = (seconds, iterations, accuracy(y, pred))
        run.log(f"{name}: {seconds:.1f} s, {iterations} iterations, "
                f"10-NN accuracy {results[name][2]:.2%}")
    (o_s, o_it, o_acc), (s_s, s_it, s_acc) = results["openTSNE"], results["scikit-learn"]
    run.info.update(n=len(y), threads=threads, knn_accuracy={"openTSNE": o_acc,
                                                               "scikit-learn": s_acc})
    run.row("openTSNE vs scikit-learn TSNE", "cpu",
            Side("openTSNE", o_s, "s", [o_s]), Side("scikit-learn", s_s, "s", [s_s]),
            higher_is_better=False,
            detail=f"{len(y):,} images, PCA-50, perplexity 30, PCA init, threads {threads}, "
                   f"{o_it} vs {s_it} iterations; 10-NN accuracy (5-fold) of the maps "
                   f"{o_acc:.1%} vs {s_acc:.1%}; one run each")


def _pca_points(run: Run, n: int, seed: int) -> tuple[Any, Any]:
    """PCA-50 of `n` random MNIST images (train and test pooled) and their labels."""
    import numpy as np
    import torch
    from sklearn.decomposition import PCA

    data = run.data()
    images = torch.cat([data.train_images, data.test_images]).reshape(-1, 784).numpy()
    labels = torch.cat([data.train_labels, data.test_labels]).numpy()
    idx = np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))
    x = PCA(n_components=50, svd_solver="covariance_eigh", random_state=0).fit_transform(
        images[idx].astype(np.float32) / 255).astype(np.float32)
    return x, labels[idx]


def tsne_torch(run: Run) -> None:
    """TorchDR's TSNE on the chosen device vs openTSNE on the CPU; kNN accuracy of both maps."""
    import torch

    from bench.bench_tsne import run_opentsne
    from digits.embedding_quality import knn_cv_predict
    from digits.metrics import accuracy

    try:
        import openTSNE  # noqa: F401
        import torchdr
    except ImportError as error:
        raise Skip(f"{error.name} is not installed (pip install -e '.[bench]')") from error
    device = _torch_device(run)
    size = sizes(run, "tsne_torch", device.type)
    threads = os.cpu_count() or 1
    args = argparse.Namespace(perplexity=30.0, threads=threads, gradients="auto", seed=7)
    x, y = _pca_points(run, size["n"], args.seed)

    def torch_tsne(points: Any) -> tuple[Any, float]:
        # Same perplexity, PCA initialisation and early exaggeration (12 for 250 steps) as
        # openTSNE; 1,000 steps in all against openTSNE's 750.
        model = torchdr.TSNE(perplexity=args.perplexity, init="pca", max_iter=1_000,
                             device=str(device), random_state=args.seed)
        seconds, embedding = timed(
            lambda: model.fit_transform(torch.from_numpy(points).to(device)), device)
        return torch.as_tensor(embedding).detach().float().cpu().numpy(), seconds

    run.log(f"PCA-50 of {len(y):,} images; warm-up (200 points each)")
    torch_tsne(x[:200])
    run_opentsne(x[:200], args)
    maps = {}
    maps["TorchDR"] = torch_tsne(x)
    embedding, seconds, _ = run_opentsne(x, args)
    maps["openTSNE"] = (embedding, seconds)
    scores = {}
    for name, (embedding, seconds) in maps.items():
        pred = knn_cv_predict(embedding, y, k=10, folds=5, seed=args.seed, n_jobs=threads)
        scores[name] = accuracy(y, pred)
        run.log(f"{name}: {seconds:.1f} s, 10-NN accuracy {scores[name]:.2%}")
    run.row("TorchDR vs openTSNE", device.type,
            Side(f"TorchDR on {device.type}", maps["TorchDR"][1], "s", [maps["TorchDR"][1]]),
            Side(f"openTSNE, {threads} CPU threads", maps["openTSNE"][1], "s",
                 [maps["openTSNE"][1]]),
            higher_is_better=False,
            detail=f"{len(y):,} images, PCA-50, perplexity 30, PCA init, TorchDR "
                   f"{torchdr.__version__} (dense, no KeOps); 10-NN accuracy (5-fold) of the "
                   f"maps {scores['TorchDR']:.1%} vs {scores['openTSNE']:.1%}; one run each")


# --- 4. cached against recomputed transfer features ---------------------------------------------


def features(run: Run) -> None:
    """Loading frozen EfficientNet-Lite0 features from digits.features' cache vs extracting them."""
    from digits.backbones import load_efficientnet_lite0
    from digits.features import FeatureCache, cached, extract, feature_key

    device = _torch_device(run)
    size = sizes(run, "features", device.type)
    n, input_size, repeat = size["n"], size["input_size"], size["repeat"]
    try:
        backbone = load_efficientnet_lite0(input_size)
    except Exception as error:
        raise Skip(f"EfficientNet-Lite0 could not be loaded: {error}") from error
    images = run.data().train_images[:n].to(device)
    batch_size = 256 if device.type == "cuda" else 64

    def compute():
        return extract(backbone.extractor, images, input_size, batch_size=batch_size)

    def key():
        return feature_key(backbone.weights_sha256, backbone.name, input_size, True, images,
                           device.type)

    run.log(f"warm-up: {min(n, batch_size)} images at {input_size}x{input_size}")
    extract(backbone.extractor, images[:batch_size], input_size, batch_size=batch_size)
    with tempfile.TemporaryDirectory(prefix="bench-features-") as folder:
        cache = FeatureCache(Path(folder))
        cache.put(key(), compute())

        def load():
            value, hit = cached(cache, key(), device, compute)
            assert hit, "the feature cache missed"
            return value

        load()
        recomputes, loads = [], []
        for i in run.repeats(repeat):
            recomputes.append(n / timed(compute, device)[0])
            loads.append(n / timed(load, device)[0])
            run.log(f"repeat {i + 1}/{repeat}: extract {recomputes[-1]:,.0f} img/s, "
                    f"cache {loads[-1]:,.0f} img/s")
        mb = sum(p.stat().st_size for p in Path(folder).glob("*.pt")) / 1e6
    run.row("cached vs recomputed transfer features", device.type,
            Side("from the feature cache", median(loads), "img/s", loads),
            Side("EfficientNet-Lite0 extraction", median(recomputes), "img/s", recomputes),
            detail=f"{n:,} images at {input_size}x{input_size}, {backbone.extractor.feature_dim} "
                   f"features each ({mb:.1f} MB file, content key hashed each time, file in the "
                   f"OS page cache), median of {len(loads)}")


# --- 5. GAN training steps per second -------------------------------------------------------------


def gan(run: Run) -> None:
    """digits.gan: the recipes trained as one batched model vs each recipe trained alone.

    Each measurement trains two epochs and times the second (from `on_record`'s cumulative
    `history.seconds`), so one-off costs (a CUDA graph's capture, Adam's state) stay out of
    it. Where train_gan takes `cuda_graph`, a second row compares the captured graph with
    eager steps on CUDA.
    """
    import inspect

    import torch

    from digits.gan import RECIPES, Discriminator, Generator, train_gan

    device = _torch_device(run)
    size = sizes(run, "gan", device.type)
    n, repeat = size["n"], size["repeat"]
    recipes = list(RECIPES.values())[:size["recipes"]]
    g_widths, d_widths = (256, 512, 1024), (1024, 512, 256)
    if size["widths"] == "half":
        g_widths, d_widths = (128, 256, 512), (512, 256, 128)
    data = run.data()
    images, labels = data.train_images[:n].to(device), data.train_labels[:n].to(device)
    batch_size = 100
    graphs = device.type == "cuda" and "cuda_graph" in inspect.signature(train_gan).parameters

    def second_epoch(group, x=images, y=labels, **options) -> tuple[int, float]:
        """(run-steps, seconds) of the second of two epochs training `group` as one model."""
        torch.manual_seed(0)
        generator = Generator(len(group), 100, widths=g_widths)
        discriminator = Discriminator(len(group), widths=d_widths)
        marks = {}
        train_gan(generator, discriminator, group, x, y, epochs=2, batch_size=batch_size,
                  lr=2e-4, generator_order=torch.Generator().manual_seed(0), record=(1, 2),
                  on_record=lambda epoch, h: marks.__setitem__(epoch, (h.steps, h.seconds)),
                  **options)
        return (marks[2][0] - marks[1][0]) * len(group), marks[2][1] - marks[1][1]

    def together(**options) -> float:
        steps, seconds = second_epoch(recipes, **options)
        return steps / seconds

    def alone() -> float:
        steps, seconds = 0, 0.0
        for recipe in recipes:
            s, t = second_epoch([recipe])
            steps, seconds = steps + s, seconds + t
        return steps / seconds

    warm = 2 * batch_size
    run.log(f"warm-up: {len(recipes)} recipes, {warm} images")
    second_epoch(recipes, images[:warm], labels[:warm])
    second_epoch(recipes[:1], images[:warm], labels[:warm])
    if graphs:
        second_epoch(recipes, images[:warm], labels[:warm], cuda_graph=False)
    batched, separate, eager = [], [], []
    for i in run.repeats(repeat):
        batched.append(together())
        separate.append(alone())
        if graphs:
            eager.append(together(cuda_graph=False))
        run.log(f"repeat {i + 1}/{repeat}: batched {batched[-1]:,.1f} run-steps/s, one at a "
                f"time {separate[-1]:,.1f}" + (f", eager {eager[-1]:,.1f}" if graphs else ""))
    detail = (f"steps/s counted per recipe; the second of two epochs of {n // batch_size} steps "
              f"(batch {batch_size}), widths G {g_widths} D {d_widths}, median of "
              f"{len(batched)}")
    run.row("batched recipes vs one at a time", device.type,
            Side(f"{len(recipes)} recipes batched", median(batched), "steps/s", batched),
            Side("one recipe at a time", median(separate), "steps/s", separate), detail=detail)
    if graphs:
        run.row("CUDA graph vs eager steps", device.type,
                Side("captured CUDA graph", median(batched), "steps/s", batched),
                Side("eager (bf16 autocast)", median(eager), "steps/s", eager),
                detail=f"{len(recipes)} recipes batched; " + detail)
    elif device.type == "cuda":
        run.skip("CUDA graph vs eager steps", "cuda", "train_gan has no cuda_graph option")


# --- 6. cold, no-change and prose-only rebuilds -------------------------------------------------


# What a build needs, copied when git cannot list the files (a copy of the tree without .git).
BUILD_FILES = ("build.py", "pyproject.toml", "report", "digits", "analyses", "templates")


def _copy_tree(destination: Path) -> None:
    """The repository's tracked and untracked-but-not-ignored files, copied (no caches)."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], cwd=ROOT, capture_output=True,
                                check=True, timeout=30).stdout.decode().split("\0")
    except (OSError, subprocess.SubprocessError):
        listed = []
    names = [n for n in listed if n and (ROOT / n).is_file()]
    if not any(n == "build.py" for n in names):  # no git here: copy what a build needs
        for name in BUILD_FILES:
            source = ROOT / name
            if source.is_dir():
                shutil.copytree(source, destination / name,
                                ignore=shutil.ignore_patterns("__pycache__"))
            elif source.is_file():
                destination.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, destination / name)
        return
    for name in names:
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)


def rebuild(run: Run) -> None:
    """build.py --only dataset (quick, CPU) in a copy of the repo: cold, no change, prose edited."""
    repeat = sizes(run, "rebuild")["repeat"]
    with tempfile.TemporaryDirectory(prefix="bench-rebuild-") as folder:
        tmp = Path(folder)
        repo = tmp / "repo"
        _copy_tree(repo)
        prose = repo / "analyses" / "dataset.md"
        command = [sys.executable, "build.py", "--profile", "quick", "--device", "cpu",
                   "--only", "dataset", "--cache-dir", str(tmp / "cache"),
                   "--out", str(tmp / "site")]
        if run.data_dir is not None:
            command += ["--data-dir", str(Path(run.data_dir).resolve())]
        if "--frozen-dir" in (repo / "build.py").read_text():
            # Frozen results would make the cold build reuse them: point it at an empty folder.
            command += ["--frozen-dir", str(tmp / "no-frozen")]
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")

        ran = {}  # analyses each kind of build ran (the engine prints "<name>: computing")

        def build(kind: str) -> float:
            start = time.perf_counter()
            done = subprocess.run(command, cwd=repo, capture_output=True, text=True, env=env,
                                  check=False)
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"{kind} build exited {done.returncode}: "
                                   f"{(done.stderr or done.stdout).strip()[-400:]}")
            ran[kind] = sum(line.rstrip().endswith(": computing")
                            for line in done.stdout.splitlines())
            run.log(f"{kind}: {seconds:.1f} s, {ran[kind]} analyses run")
            return seconds

        colds, unchanged, prose_only = [], [], []
        for i in run.repeats(repeat):
            shutil.rmtree(tmp / "cache", ignore_errors=True)
            colds.append(build("cold"))
            unchanged.append(build("no change"))
            sentence = f"This sentence was added by the benchmark, edit {'again ' * i}one."
            prose.write_text(prose.read_text() + f"\n{sentence}\n")
            prose_only.append(build("prose edited"))
            pages = [p.read_text(errors="replace") for p in (tmp / "site").rglob("*.html")]
            if not any(sentence in page for page in pages):
                raise RuntimeError("the edited prose did not reach the rendered page")
    run.info["analyses_run"] = ran
    detail = ("`build.py --profile quick --device cpu --only dataset` in a copy of the repo, "
              "a fresh process each (Python and torch imports included); analyses run: "
              + ", ".join(f"{kind} {count}" for kind, count in ran.items())
              + f"; the edit checked on the page; median of {len(colds)}")
    run.row("no change vs cold", "cpu",
            Side("no change", median(unchanged), "s", unchanged),
            Side("cold", median(colds), "s", colds), higher_is_better=False, detail=detail)
    run.row("prose edited vs cold", "cpu",
            Side("prose edited", median(prose_only), "s", prose_only),
            Side("cold", median(colds), "s", colds), higher_is_better=False, detail=detail)


def redraw(run: Run) -> None:
    """Every frozen section drawn again from its frozen results (what a change to digits/plots.py
    costs) vs rendering them as they are, in a copy of the repo, on the CPU."""
    with tempfile.TemporaryDirectory(prefix="bench-redraw-") as folder:
        tmp = Path(folder)
        repo = tmp / "repo"
        _copy_tree(repo)
        frozen = sorted(p.name for p in (repo / "frozen").glob("*") if p.is_dir()) \
            if (repo / "frozen").is_dir() else []
        if not frozen:
            run.skip("redraw every frozen section", "cpu", "no frozen results in this checkout")
            return
        command = [sys.executable, "build.py", "--device", "cpu", "--only", *frozen,
                   "--cache-dir", str(tmp / "cache"), "--out", str(tmp / "site")]
        if run.data_dir is not None:
            command += ["--data-dir", str(Path(run.data_dir).resolve())]
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")

        def build(*extra: str) -> tuple[float, dict]:
            start = time.perf_counter()
            done = subprocess.run([*command, *extra], cwd=repo, capture_output=True, text=True,
                                  env=env, check=False)
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                raise RuntimeError(f"build exited {done.returncode}: "
                                   f"{(done.stderr or done.stdout).strip()[-400:]}")
            info = json.loads((tmp / "site" / "data" / "manifest.json").read_text())
            return seconds, {a["name"]: a for a in info["analyses"]}

        rendered, _ = build()
        redrawn, analyses = build("--redraw", "all")
        computed = [n for n, a in analyses.items() if a["status"] != "frozen"]
        if computed:
            raise RuntimeError(f"--redraw computed {computed}: their frozen entries are stale")
    draws = {n: round(a["draw_seconds"] or 0.0, 1) for n, a in analyses.items()}
    run.info["draw_seconds"] = draws
    run.row("redraw every frozen section vs render only", "cpu",
            Side("redraw", redrawn, "s", [redrawn]), Side("render only", rendered, "s", [rendered]),
            higher_is_better=False,
            detail=f"`build.py --redraw all --only {' '.join(frozen)}` in a copy of the repo, a "
                   "fresh process (imports and data loading included); draw seconds: "
                   + ", ".join(f"{n} {s}" for n, s in draws.items()))


# name -> (title, function), in the order they run.
# The ones that use the GPU first: a run capped by `timeout` loses the CPU-only ones.
BENCHMARKS = {
    "training": ("training core vs DataLoader", training),
    "fused": ("fused optimizer step vs per tensor", fused),
    "parallel": ("K models at once vs one after another", parallel),
    "features": ("cached vs recomputed transfer features", features),
    "gan": ("GAN training", gan),
    "tsne_torch": ("TorchDR vs openTSNE", tsne_torch),
    "precision": ("bf16 autocast vs float32", precision),
    "tsne": ("openTSNE vs scikit-learn TSNE", tsne),
    "rebuild": ("site rebuild", rebuild),
    "redraw": ("drawing frozen results again", redraw),
}
