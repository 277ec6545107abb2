"""Operator calls and host reads per training step, on the CPU: classifiers, optimizers, GAN.

A GPU runs one batch of 32 through Model2 in microseconds of arithmetic, so its step time is
set by how many kernels the host launches and whether it waits for the device in between. This
counts both with torch.profiler on the CPU (no GPU needed), for `digits.training.train` on
Model2 at batch 32 and BestCNN at batch 128 with RandomAffine augmentation (under the autocast
the build uses on this machine), for `digits.parallel`'s concurrent step of the full optimizer
study's two kinds of group (18 runs of Model2 in 6 blocks of alike settings; the rate grid's 24
runs, each its own rate), and for `digits.gan.train_gan`'s step of the full profile's five
recipes at full widths and batch 100 (in float32, as its CUDA graph runs):

- `ops`: every aten operator call (outer calls and the calls they make);
- `launches`: the outermost aten calls (those Python or the autograd engine make) less views,
  metadata and allocations, and less conversions that copy nothing (`.float()` of a float32
  tensor): each launches at least one kernel on a GPU, most exactly one (a composite such as
  binary_cross_entropy_with_logits launches a few);
- `reads`: aten::_local_scalar_dense, what .item() and `if tensor:` run: on a GPU each one
  waits for the device. Reads of CPU tensors (optimizer step counters) count too but do not
  wait for a GPU; .tolist() and .cpu() copy nothing from a CPU tensor and are not seen here
  (tests/test_training.py counts them with wrappers).

Per step = (an epoch of 2S steps - an epoch of S steps) / S, so per-epoch work cancels.

Measured with torch 2.14.1 on 2 CPU cores with AVX512-BF16 (bf16 autocast; float32 with
--float32 in brackets; the GAN always float32):

    model                      ops         launches   reads
    Model2, batch 32           255 (176)   45 (35)    0
    BestCNN, batch 128         555 (480)   97 (88)    0
    GAN, 5 recipes, float32    1055        227        18
    Model2 x18, 6 settings     1083        202        24
    Model2 x24, 24 settings    3096        655        96

The GAN's step took 1522 ops and 357 launches before its spectral norm skipped the power
iteration in G's step and computed sigma as |W^T v|, and D's loss became one call; 1131 and
269 before the normalised layers scaled their products instead of their weights, with a
backward written by hand (digits/spectral.py), and 1081 and 237 before D drew its three
dropout masks at once (then 1043 ops: the power iteration's F.normalize(out=) adds 12 calls
that launch nothing). Its 18
reads are the CPU's fused Adam reading each parameter's step count (9 tensors in each of 2
optimizers); on CUDA the counts stay on the device (`capturable`), as a CUDA graph requires.
`train` reads nothing back per step: its sums stay on the device and are read once per epoch.
The groups' step took 2747 and 3520 ops, 582 and 757 launches, before it stacked the
parameters once and stepped one optimizer per block; the grid's remaining launches are mostly
RMSprop's and Adadelta's steps, one tensor at a time on the CPU (foreach kernels on CUDA), and
its reads the optimizers reading their step counts, CPU tensors here.
On CUDA the GAN and the groups (full batches, no schedule) replay their step as a CUDA graph
(digits/graphs.py): the host then launches a group's step in two calls (the batch's rows
copied into the graph's input, the replay) and the GAN's in five (its batch gathered and
copied, the replay), and the counts above are the kernels the graph holds, which set its GPU
time; `train` steps eagerly, so its counts are what a GPU's host launches.
Run: `python bench/launches.py [--steps S] [--group-steps S] [--float32]` (about 90 s on 2
cores, most of it the groups).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analyses.optimizers import Config as StudyConfig, study_spec  # noqa: E402
from digits import training  # noqa: E402
from digits.augment import RandomAffine  # noqa: E402
from digits.gan import RECIPES, Discriminator, Generator, train_gan  # noqa: E402
from digits.models import BestCNN, Model2  # noqa: E402
from digits.parallel import train_many  # noqa: E402
from digits.study import LR_CENTRES, log_grid, train_spec  # noqa: E402
from digits.training import TrainSpec, train  # noqa: E402

# Calls that launch no kernel: views, metadata and allocations.
NO_KERNEL = frozenset({
    "aten::empty", "aten::empty_strided", "aten::empty_like", "aten::view", "aten::_unsafe_view",
    "aten::as_strided", "aten::t", "aten::transpose", "aten::permute", "aten::expand",
    "aten::unsqueeze", "aten::squeeze", "aten::slice", "aten::select", "aten::detach",
    "aten::alias", "aten::_reshape_alias", "aten::reshape", "aten::lift_fresh",
    "aten::resolve_conj", "aten::resolve_neg", "aten::result_type", "aten::numpy_T",
    "aten::flatten", "aten::resize_", "aten::set_", "aten::contiguous", "aten::split",
    "aten::split_with_sizes", "aten::chunk", "aten::unbind"})
# Calls that return their input or a view unless they must copy: a kernel only where a call
# beneath them launches one (`.float()` of a float32 tensor calls nothing beneath).
COPY_IF_NEEDED = frozenset({
    "aten::to", "aten::type_as", "aten::expand_as", "aten::view_as", "aten::narrow",
    "aten::reshape_as"})

CASES: dict[str, tuple[Callable[[], nn.Module], int, Callable | None]] = {
    "Model2, batch 32": (Model2, 32, None),
    "BestCNN, batch 128": (BestCNN, 128, RandomAffine()),
}


def outermost(event: Any) -> bool:
    """Whether no aten call encloses `event`."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith("aten::"):
            return False
        parent = parent.cpu_parent
    return True


def launches_kernel(event: Any) -> bool:
    """Whether the aten call `event` launches a kernel on a GPU, itself or through its calls."""
    if event.name in NO_KERNEL:
        return False
    if event.name in COPY_IF_NEEDED:
        return any(launches_kernel(child) for child in event.cpu_children)
    return True


def tally(events: list) -> Counter:
    """ops, launches and reads among the profiler's events of one run."""
    counts: Counter = Counter()
    for event in events:
        if not event.name.startswith("aten::"):
            continue
        counts["ops"] += 1
        if outermost(event) and launches_kernel(event):
            counts["launches"] += 1
        if event.name == "aten::_local_scalar_dense":
            counts["reads"] += 1
    return counts


def random_digits(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n uint8 28x28 noise images and labels 0-9, the same every call (counts ignore values)."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
    return images, torch.randint(0, 10, (n,), generator=g)


def epoch_counts(make: Callable[[], nn.Module], batch: int, augment: Callable | None,
                 steps: int) -> Counter:
    """The tally of one epoch of `steps` steps of `train` (SGD, the default spec)."""
    images, labels = random_digits(steps * batch)
    torch.manual_seed(0)
    model = make()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train(model, images, labels, TrainSpec(epochs=1, batch_size=batch),
              generator=torch.Generator().manual_seed(1), augment=augment)
    return tally(prof.events())


def gan_epoch_counts(steps: int, batch: int = 100) -> Counter:
    """The tally of one epoch of `steps` GAN steps: the five recipes, full widths, float32."""
    images, labels = random_digits(steps * batch)
    torch.manual_seed(0)
    recipes = list(RECIPES.values())
    generator, discriminator = Generator(len(recipes)), Discriminator(len(recipes))
    bf16, training.cpu_bf16 = training.cpu_bf16, lambda: False  # the CUDA graph's float32
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train_gan(generator, discriminator, recipes, images, labels, epochs=1,
                      batch_size=batch, lr=2e-4, generator_order=torch.Generator().manual_seed(1))
    finally:
        training.cpu_bf16 = bf16
    return tally(prof.events())


def study_groups() -> dict[str, list[tuple[str, float]]]:
    """The full optimizer study's two kinds of group: (optimizer, rate) of each run, in order."""
    spec = study_spec(StudyConfig())  # the full profile's
    seeds = [(o, spec.shared_lr) for o in spec.optimizers for _ in range(spec.seeds)]
    grid = [(o, lr) for o in spec.optimizers for lr in log_grid(LR_CENTRES[o], spec.lr_factors)]
    return {f"Model2 x{len(seeds)}, {len(spec.optimizers)} settings": seeds,
            f"Model2 x{len(grid)}, {len(grid)} settings": grid}


def group_epoch_counts(runs: list[tuple[str, float]], steps: int, batch: int = 32) -> Counter:
    """The tally of one epoch of `steps` concurrent steps of Model2 runs (digits.parallel)."""
    images, labels = random_digits(steps * batch)
    torch.manual_seed(0)
    spec = dataclasses.replace(study_spec(StudyConfig()), epochs=1, batch_size=batch)
    specs = [train_spec(spec, optimizer, lr) for optimizer, lr in runs]
    models = [Model2() for _ in runs]
    generators = [torch.Generator().manual_seed(i) for i in range(len(runs))]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train_many(models, images, labels, specs, generators=generators, mode="concurrent",
                   group_size=len(runs))
    return tally(prof.events())


def per_step(epoch: Callable[[int], Counter], steps: int) -> dict[str, float]:
    """Counts per step: the difference between epochs of 2S and S steps, over S."""
    short, long = epoch(steps), epoch(2 * steps)
    return {key: (long[key] - short[key]) / steps for key in ("ops", "launches", "reads")}


def main(argv: list[str] | None = None) -> None:
    """Print the per-step counts for each case."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=4, help="S: steps in the shorter epoch")
    # A group's count is the same at every step, and 24 full-width Model2s step slowly on a
    # CPU: one step is enough (the GPU run's script runs this after packing its results, under
    # a time limit).
    parser.add_argument("--group-steps", type=int, default=1,
                        help="S for the optimizer study's groups")
    parser.add_argument("--float32", action="store_true",
                        help="train without bf16 autocast even where the CPU has native bf16")
    args = parser.parse_args(argv)
    if args.float32:
        training.cpu_bf16 = lambda: False
    torch.set_num_threads(1)
    # make_optimizer's one-step probe of each fused kernel runs once per process: run it here,
    # or the first epoch profiled would count it and the per-step difference would shrink.
    for name in training.OPTIMIZERS:
        training.fused_works(name, "cpu")
    precision = "bf16 autocast" if training.bf16(torch.device("cpu")) else "float32"
    print(f"per training step, CPU, {precision}, torch {torch.__version__}")
    print(f"{'model':24} {'ops':>6} {'launches':>8} {'reads':>6}")
    epochs = {name: functools.partial(epoch_counts, make, batch, augment)
              for name, (make, batch, augment) in CASES.items()}
    epochs["GAN, 5 recipes, float32"] = gan_epoch_counts
    steps = dict.fromkeys(epochs, args.steps)
    for name, runs in study_groups().items():
        epochs[name] = functools.partial(group_epoch_counts, runs)
        steps[name] = args.group_steps
    for name, epoch in epochs.items():
        counts = per_step(epoch, steps[name])
        print(f"{name:24} {counts['ops']:6g} {counts['launches']:8g} {counts['reads']:6g}")


if __name__ == "__main__":
    main()
