"""Benchmark the training core on Model2 (the optimizer study's network), batch 32.

1. One epoch through digits.training.train (uint8 tensors held on the device, batches by
   indexing) against the original's pipeline: a torch DataLoader over a Dataset that returns PIL
   images through torchvision's ToTensor + Normalize. Same model, optimizer and batch size.
2. K independent models trained one after another (digits.parallel, mode "sequential") against
   all K at once (mode "concurrent": one vmapped step for the K models).

Prints images/s and the ratios, and writes them as JSON to bench/results/ (git-ignored).
Run `python bench/bench_training.py --help` for the options; `--dry-run` takes seconds.
`python -m bench` runs both comparisons with the other benchmarks (bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digits.data import load_mnist  # noqa: E402
from digits.models import Model2  # noqa: E402
from digits.parallel import train_many  # noqa: E402
from digits.training import TrainSpec, autocast, make_optimizer, train  # noqa: E402

# The MNIST training-set statistics (analyses/dataset.py computes them; rounded here).
MEAN, STD = 0.1307, 0.3081
# Default sizes per device: enough steps to be stable, small enough for 2 CPU cores.
DEFAULTS = {"cpu": {"n": 6_400, "concurrent_n": 1_600, "models": 4},
            "cuda": {"n": 60_000, "concurrent_n": 20_000, "models": 8}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; every default is stated in --help."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--device", choices=("all", "cpu", "cuda"), default="all",
                        help="all = the CPU, then CUDA when available")
    parser.add_argument("--n", type=int, default=None,
                        help="training images per epoch for part 1 (default: "
                             f"{DEFAULTS['cpu']['n']:,} on the CPU, "
                             f"{DEFAULTS['cuda']['n']:,} on CUDA)")
    parser.add_argument("--concurrent-n", type=int, default=None,
                        help="training images per model for part 2 (default: "
                             f"{DEFAULTS['cpu']['concurrent_n']:,} CPU, "
                             f"{DEFAULTS['cuda']['concurrent_n']:,} CUDA)")
    parser.add_argument("--models", type=int, default=None,
                        help=f"models K for part 2 (default: {DEFAULTS['cpu']['models']} CPU, "
                             f"{DEFAULTS['cuda']['models']} CUDA)")
    parser.add_argument("--batch-size", type=int, default=32, help="the original's batch size")
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader worker processes (0 = the loading runs in the main "
                             "process, torch's default and the original's)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="measure each side this many times, alternating, and keep the "
                             "median (a shared machine drifts between measurements)")
    parser.add_argument("--skip", choices=("none", "loader", "concurrent"), default="none",
                        help="skip one of the two comparisons")
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny sizes (a few seconds): checks that everything runs")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results",
                        help="folder for the JSON results")
    parser.add_argument("--seed", type=int, default=0, help="seed of models and batch order")
    return parser.parse_args(argv)


class PILDigits(torch.utils.data.Dataset):
    """What torchvision.datasets.MNIST does per item: uint8 array -> PIL image -> transform."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        from torchvision import transforms

        self.images = images.cpu().numpy()
        self.labels = labels.cpu().tolist()
        self.transform = transforms.Compose([transforms.ToTensor(),
                                             transforms.Normalize((MEAN,), (STD,))])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so wall time counts it."""
    if device.type == "cuda":
        torch.cuda.synchronize()


def new_model(seed: int, device: torch.device, normalise: bool = True) -> Model2:
    """Model2 from a fixed seed; without `normalise` it expects already-normalised input."""
    torch.manual_seed(seed)
    model = Model2(MEAN, STD) if normalise else Model2(0.0, 1.0)
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    return model


def loader_epoch(images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                 args: argparse.Namespace, max_steps: int | None = None) -> float:
    """One epoch (or `max_steps` steps) through DataLoader + PIL transforms; returns images/s."""
    loader = torch.utils.data.DataLoader(
        PILDigits(images, labels), batch_size=args.batch_size, shuffle=True,
        num_workers=args.workers, pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(args.seed))
    model = new_model(args.seed, device, normalise=False)
    optimizer = make_optimizer(TrainSpec(), model.parameters())  # SGD 0.01, momentum 0.5
    model.train()
    seen = 0
    sync(device)
    start = time.perf_counter()
    for step, (x, y) in enumerate(loader):
        if max_steps is not None and step >= max_steps:
            break
        x = x.to(device, non_blocking=True)
        y = y.to(device, non_blocking=True)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device):
            loss = F.cross_entropy(model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += y.shape[0]
    sync(device)
    return seen / (time.perf_counter() - start)


def core_epoch(images: torch.Tensor, labels: torch.Tensor, device: torch.device,
               args: argparse.Namespace) -> float:
    """One epoch through digits.training.train on device tensors; returns images/s."""
    model = new_model(args.seed, device)
    history = train(model, images, labels, TrainSpec(epochs=1, batch_size=args.batch_size),
                    generator=torch.Generator().manual_seed(args.seed))
    return history.images_per_second


def many(images: torch.Tensor, labels: torch.Tensor, device: torch.device, k: int, mode: str,
         args: argparse.Namespace, cuda_graph: bool = True) -> float:
    """K models, one epoch each, in `mode` (concurrent steps captured as a CUDA graph on CUDA
    unless not `cuda_graph`); returns images/s summed over the models."""
    models = [new_model(args.seed + i, device) for i in range(k)]
    optimizers = ("sgd", "adam", "rmsprop", "adagrad", "adadelta", "adamw")
    specs = [TrainSpec(epochs=1, batch_size=args.batch_size, optimizer=optimizers[i % 6],
                       lr=1e-3) for i in range(k)]
    generators = [torch.Generator().manual_seed(args.seed + i) for i in range(k)]
    sync(device)
    start = time.perf_counter()
    train_many(models, images, labels, specs, generators=generators, mode=mode, group_size=k,
               cuda_graph=cuda_graph)
    sync(device)
    return k * images.shape[0] / (time.perf_counter() - start)


def bench_device(device: torch.device, data, args: argparse.Namespace) -> dict:
    """Both comparisons on one device; prints as it goes."""
    sizes = dict(DEFAULTS[device.type])
    if args.dry_run:
        sizes = {"n": 256, "concurrent_n": 128, "models": 2}
        args.repeat = 1
    n = args.n or sizes["n"]
    concurrent_n = args.concurrent_n or sizes["concurrent_n"]
    k = args.models or sizes["models"]
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, " \
        f"{torch.get_num_threads()} torch threads"
    print(f"\n== {device.type}: {name}")
    images = data.train_images[:max(n, concurrent_n)].to(device)
    labels = data.train_labels[:max(n, concurrent_n)].to(device)
    result: dict = {"device": device.type, "name": name, "batch_size": args.batch_size}
    warm = min(n, 50 * args.batch_size)  # kernels, allocator and autotuning before timing
    if args.skip != "loader":
        core_epoch(images[:warm], labels[:warm], device, args)
        loader_epoch(images[:warm], labels[:warm], device, args, max_steps=20)
        cores, loaders = [], []
        for _ in range(args.repeat):
            cores.append(core_epoch(images[:n], labels[:n], device, args))
            loaders.append(loader_epoch(images[:n], labels[:n], device, args))
        core, loader = statistics.median(cores), statistics.median(loaders)
        print(f"training core (tensors on {device.type}): {core:10,.0f} img/s")
        print(f"DataLoader + PIL, {args.workers} workers:  {loader:10,.0f} img/s")
        print(f"ratio core / DataLoader:            {core / loader:10.2f}x   ({n:,} images, "
              f"median of {args.repeat})")
        result.update(n=n, workers=args.workers, core_images_per_second=core,
                      loader_images_per_second=loader, core_over_loader=core / loader,
                      core_runs=cores, loader_runs=loaders)
    if args.skip != "concurrent":
        x, y = images[:concurrent_n], labels[:concurrent_n]
        many(x[:warm // k + 1], y[:warm // k + 1], device, k, "concurrent", args)
        sequentials, concurrents = [], []
        for _ in range(args.repeat):
            sequentials.append(many(x, y, device, k, "sequential", args))
            concurrents.append(many(x, y, device, k, "concurrent", args))
        sequential = statistics.median(sequentials)
        concurrent = statistics.median(concurrents)
        print(f"{k} models one after another:        {sequential:10,.0f} img/s")
        print(f"{k} models at once (vmap):           {concurrent:10,.0f} img/s")
        print(f"ratio concurrent / sequential:      {concurrent / sequential:10.2f}x   "
              f"({concurrent_n:,} images per model, median of {args.repeat})")
        result.update(models=k, concurrent_n=concurrent_n,
                      sequential_images_per_second=sequential,
                      concurrent_images_per_second=concurrent,
                      concurrent_over_sequential=concurrent / sequential,
                      sequential_runs=sequentials, concurrent_runs=concurrents)
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark on the chosen devices and write one JSON file."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = []
    if args.device in ("all", "cpu"):
        devices.append(torch.device("cpu"))
    if args.device in ("all", "cuda"):
        if torch.cuda.is_available():
            devices.append(torch.device("cuda"))
        elif args.device == "cuda":
            print("error: --device cuda, but CUDA is not available here", file=sys.stderr)
            return 2
    data = load_mnist(log=lambda message: None)
    print(f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores (other processes make CPU numbers noisy)")
    results = [bench_device(device, data, args) for device in devices]
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = args.out / f"training-{stamp}{'-dry' if args.dry_run else ''}.json"
    path.write_text(json.dumps({
        "benchmark": "training", "time": stamp, "torch": torch.__version__,
        "python": platform.python_version(), "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg()[0], "args": {k: str(v) for k, v in vars(args).items()},
        "results": results}, indent=1))
    print(f"\nwrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
