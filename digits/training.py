"""The training core: batches from tensors on the device, per-epoch curves, hooks for later sections.

Every training loop of the project runs through here: `train` for networks on uint8 images and,
with an `inputs` transform, a given optimizer and `amp`/`train_mode` switches, the transfer
section's heads on stored features, its fine-tuning on stored trunk maps and its recomputing
epoch (digits.features); `digits.parallel` fills its curves through the same `EpochLog`. All of
them score through one evaluator, `predict_logits` then `score`.

Images stay uint8 on the device (47 MB for the training set) and are converted per batch, which
on 2 CPU cores trained the two-conv network 1.7x faster than a DataLoader (ARCHITECTURE.md,
"Facts"). On CUDA the step runs under bf16 autocast with channels-last tensors. On a CPU with
native bf16 (AVX512-BF16 or AMX) it runs under bf16 autocast too (1.65-2.07x the training
throughput of float32 on 2 cores: `python -m bench --only precision`); elsewhere in float32.
Either way a CPU run is bit-reproducible on the same machine.

A step reads nothing back from the device: the running loss and accuracy stay there and are
read once per epoch, so on a GPU the host queues step after step without waiting. Per step of
`train` (`python bench/launches.py`: torch.profiler on the CPU, bf16 autocast), Model2 at
batch 32 makes 255 aten calls of which 45 launch kernels, BestCNN at batch 128 with
RandomAffine 555 and 97; neither reads a value back. The same before and after the loops
below were merged into this one.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from digits.data import iterate_batches
from report.machine import cpu_bf16


@dataclass(frozen=True)
class TrainSpec:
    """How to train one model (the original's settings are the defaults)."""

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.5  # SGD only
    nesterov: bool = False  # SGD only
    weight_decay: float = 0.0
    schedule: str = "constant"  # constant | onecycle | cosine
    eval_batch_size: int = 2_000
    label_smoothing: float = 0.0


@dataclass
class History:
    """Per-epoch curves of one run, plus timing.

    train_loss/train_acc are running means over the epoch's batches as trained (train mode,
    unless `train(train_mode=False)`: dropout on, augmented inputs); eval_* come from `evaluate`
    after the epoch, in eval mode.
    `seconds` and `images_per_second` count the training steps only, not the evaluations.
    """

    epochs: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    eval_loss: dict[str, list[float]] = field(default_factory=dict)
    eval_acc: dict[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0
    images_per_second: float = 0.0
    steps: int = 0

    def as_dict(self) -> dict[str, Any]:
        """Plain-dict form for ctx.metric / ctx.save."""
        return {"epochs": self.epochs, "train_loss": self.train_loss,
                "train_acc": self.train_acc, "eval_loss": self.eval_loss,
                "eval_acc": self.eval_acc, "seconds": self.seconds,
                "images_per_second": self.images_per_second, "steps": self.steps}


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad,
    "adadelta": torch.optim.Adadelta,
}
# How the page names each optimizer.
NAMES: dict[str, str] = {"sgd": "SGD", "rmsprop": "RMSprop", "adam": "Adam", "adamw": "AdamW",
                         "adagrad": "Adagrad", "adadelta": "Adadelta"}
# AdamW's PyTorch default decay (with 0 it would be Adam); every other optimizer uses none.
WEIGHT_DECAY: dict[str, float] = {"adamw": 0.01}


# Optimizers torch implements as one fused kernel per step on the CPU and CUDA. On 2 CPU cores
# a step over Model2's 4.7 M parameters took 1.10 ms fused against 13.9 ms one tensor at a time
# for Adam (AdamW 1.10 against 15.1, Adagrad 0.72 against 2.26, SGD 0.59 against 0.79 ms).
# Profiled before (`build.py --cprofile`), optimizer steps took 36 of the quick optimizer
# study's 109 s, Adam's and AdamW's per-tensor loops 17 s of them.
FUSED = frozenset({"sgd", "adam", "adamw", "adagrad"})


@functools.cache
def fused_works(optimizer: str, device_type: str) -> bool:
    """Whether this torch steps `optimizer` fused on `device_type`: one step of one float.

    Asked, not assumed from the version: torch's fused Adagrad ran on the CPU only for years
    and its CUDA kernel is recent, so the GPU machine's torch 2.11 may raise at the first step
    where this machine's 2.14 runs.
    """
    if optimizer not in FUSED:
        return False
    param = torch.zeros(1, device=device_type, requires_grad=True)
    param.grad = torch.ones(1, device=device_type)
    try:
        OPTIMIZERS[optimizer]([param], lr=0.1, fused=True).step()
    except (RuntimeError, NotImplementedError):
        return False
    return True


# Optimizers with a `capturable` flag: it keeps their step counts on the device, which a CUDA
# graph needs (digits.graphs). SGD keeps none, and Adagrad's only scales its rate when lr_decay
# is set (never here), so both capture as they are.
CAPTURABLE = frozenset({"rmsprop", "adam", "adamw", "adadelta"})


def make_optimizer(spec: TrainSpec, params: Any, *, capturable: bool = False
                   ) -> torch.optim.Optimizer:
    """Build the optimizer named in `spec` (fused where torch has it); momentum: SGD only.
    `capturable=True` builds one that a CUDA graph can capture (see CAPTURABLE)."""
    if spec.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {spec.optimizer!r}; choose from {sorted(OPTIMIZERS)}")
    params = list(params)
    kwargs: dict[str, Any] = {"lr": spec.lr, "weight_decay": spec.weight_decay}
    if spec.optimizer == "sgd":
        kwargs["momentum"] = spec.momentum
        kwargs["nesterov"] = spec.nesterov
    if capturable and spec.optimizer in CAPTURABLE:
        kwargs["capturable"] = True
    devices = {p.device.type for p in params}
    if len(devices) == 1 and all(p.dtype == torch.float32 for p in params) and fused_works(
            spec.optimizer, devices.pop()):
        kwargs["fused"] = True
    return OPTIMIZERS[spec.optimizer](params, **kwargs)


def make_scheduler(spec: TrainSpec, optimizer: torch.optim.Optimizer,
                   total_steps: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-step learning-rate schedule, or None for a constant rate."""
    if spec.schedule == "constant":
        return None
    if spec.schedule == "onecycle":
        # OneCycleLR also cycles momentum (0.85-0.95) by default. Only do that where the
        # optimizer already uses momentum (SGD with momentum, Adam's beta1): on RMSprop it
        # would silently switch momentum on, and Adagrad/Adadelta have none (an error).
        cycle = spec.optimizer in ("adam", "adamw") or (
            spec.optimizer == "sgd" and spec.momentum > 0)
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=spec.lr,
                                                   total_steps=total_steps,
                                                   cycle_momentum=cycle)
    if spec.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    raise ValueError(f"unknown schedule {spec.schedule!r}: constant, onecycle or cosine")


def to_input(images: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
    """uint8 [B, 28, 28] -> float [B, 1, 28, 28] in [0, 1] (channels-last on CUDA)."""
    x = images.unsqueeze(1).float().div_(255)
    if x.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def bf16(device: torch.device) -> bool:
    """Whether this module's steps run under bf16 autocast on `device` (see the module doc)."""
    return device.type == "cuda" or (device.type == "cpu" and cpu_bf16())


def autocast(device: torch.device, enabled: bool = True, *, cache: bool = True) -> Any:
    """bf16 autocast on CUDA and on CPUs with native bf16; nothing (float32) elsewhere or when
    not `enabled`. `cache=False` recasts the weights at every use, as a CUDA graph capture needs."""
    if enabled and bf16(device):
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=cache)
    return nullcontext()


@dataclass(frozen=True)
class Evaluation:
    """Loss and accuracy over a whole set; accuracy = correct / the true number of examples."""

    loss: float
    accuracy: float
    correct: int
    total: int


@torch.no_grad()
def predict_logits(model: nn.Module, images: torch.Tensor, batch_size: int = 2_000, *,
                   inputs: Callable[[torch.Tensor], torch.Tensor] = to_input,
                   amp: bool = True) -> torch.Tensor:
    """Logits for every example, in eval mode, as float32 [N, C] on the examples' device.

    `inputs` turns a batch into the model's input: `to_input` for uint8 images, `nn.Identity()`
    for stored features or trunk maps. `amp=False` runs in float32 even where `autocast` is bf16.
    """
    was_training = model.training
    model.eval()
    device = images.device
    out = []
    for start in range(0, images.shape[0], batch_size):
        with autocast(device, amp):
            out.append(model(inputs(images[start:start + batch_size])).float())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 10, device=device)


def score(logits: torch.Tensor, labels: torch.Tensor) -> Evaluation:
    """Mean cross-entropy and accuracy of logits [N, C] against labels [N], over all N."""
    loss = F.cross_entropy(logits.float(), labels, reduction="sum").item()
    correct = int((logits.argmax(1) == labels).sum().item())
    total = int(labels.shape[0])
    return Evaluation(loss / max(total, 1), correct / max(total, 1), correct, total)


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 2_000, *, inputs: Callable[[torch.Tensor], torch.Tensor] = to_input,
             amp: bool = True) -> Evaluation:
    """Mean cross-entropy and accuracy over all `images` (no batch-count rounding)."""
    return score(predict_logits(model, images, batch_size, inputs=inputs, amp=amp), labels)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so that wall time covers it; no-op elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class EpochLog:
    """Fills the Histories of K models trained side by side (K = 1 for `train`), epoch by epoch.

    Each step adds its mean loss(es) and correct counts to sums held on the device; they are
    read once per epoch, since a read per step would make the host wait for the device every
    batch. Seconds and images/s count the steps inside `epoch()` only, not the evaluations.
    """

    def __init__(self, k: int, n: int, device: torch.device) -> None:
        self.histories = [History() for _ in range(k)]
        self.n, self.device = n, device
        self.seconds, self.seen, self.steps = 0.0, 0, 0
        self.loss_sum = torch.zeros(k, device=device)
        self.correct = torch.zeros(k, device=device, dtype=torch.long)

    @contextmanager
    def epoch(self, number: int) -> Iterator[None]:
        """Time the steps run inside; then append epoch `number`'s train loss and accuracy."""
        self.loss_sum.zero_()
        self.correct.zero_()
        synchronize(self.device)
        start = time.perf_counter()
        yield
        synchronize(self.device)
        self.seconds += time.perf_counter() - start
        for history, loss, correct in zip(self.histories, self.loss_sum.tolist(),
                                          self.correct.tolist()):
            history.epochs.append(number)
            history.train_loss.append(loss / self.n)
            history.train_acc.append(correct / self.n)

    def step(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add one step: mean losses [K] (or one, []), logits [K, B, C] or [B, C], labels."""
        self.accumulate(loss, logits, labels)
        self.count(labels.shape[-1])

    def accumulate(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """A step's device half: add its losses and correct counts to the sums (a CUDA graph
        replays this; `count` then runs on the host)."""
        self.loss_sum += loss.detach() * labels.shape[-1]
        self.correct += (logits.argmax(-1) == labels).sum(-1)

    def count(self, batch: int) -> None:
        """A step's host half: one more step of `batch` images per model."""
        self.seen += batch
        self.steps += 1

    def evaluate(self, models: Sequence[nn.Module],
                 eval_sets: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None,
                 batch_sizes: Sequence[int], **kwargs: Any) -> None:
        """Score every eval set with each model (kwargs go to `evaluate`) into its History."""
        for model, history, batch_size in zip(models, self.histories, batch_sizes):
            for name, (eval_x, eval_y) in (eval_sets or {}).items():
                result = evaluate(model, eval_x, eval_y, batch_size, **kwargs)
                history.eval_loss.setdefault(name, []).append(result.loss)
                history.eval_acc.setdefault(name, []).append(result.accuracy)

    def finish(self) -> list[History]:
        """The histories, with the steps' wall time, step count and images/s (per model)."""
        for history in self.histories:
            history.seconds = self.seconds
            history.steps = self.steps
            history.images_per_second = self.seen / self.seconds if self.seconds else 0.0
        return self.histories


def _call(callbacks: Sequence[Any], hook: str, *args: Any) -> None:
    """Call `hook(*args)` on every callback that defines it."""
    for callback in callbacks:
        method = getattr(callback, hook, None)
        if method is not None:
            method(*args)


def train(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    spec: TrainSpec,
    *,
    generator: torch.Generator,
    eval_sets: Mapping[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    callbacks: Sequence[Any] = (),
    augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
    progress: Callable[..., Any] | None = None,
    desc: str = "train",
    optimizer: torch.optim.Optimizer | None = None,
    inputs: Callable[[torch.Tensor], torch.Tensor] = to_input,
    amp: bool = True,
    train_mode: bool = True,
) -> History:
    """Train `model` in place on examples held on their device; evaluate after each epoch.

    `inputs` turns a batch of `images` into the model's input (`to_input` for uint8 images;
    `nn.Identity()` for stored features; any frozen transform), `augment` then maps it to an
    augmented one on the same device. `optimizer` replaces `make_optimizer(spec, ...)` (spec's
    optimizer, lr, momentum and weight decay are then not read). `amp=False` keeps float32 where
    `autocast` would be bf16. `train_mode=False` trains in eval mode (dropout off: the
    original's mistake with its head). `callbacks` may define any of `after_backward(step,
    epoch, model)` (gradients populated, before the optimizer steps), `after_step(step, epoch,
    model)` and `on_epoch_end(epoch, model, history)`; `step` counts from 1 and `epoch` is
    fractional. `progress` is a tqdm-like factory (e.g. ctx.progress) given total steps and desc.
    """
    device = images.device
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    if optimizer is None:
        optimizer = make_optimizer(spec, model.parameters())
    steps_per_epoch = -(-images.shape[0] // spec.batch_size)
    scheduler = make_scheduler(spec, optimizer, spec.epochs * steps_per_epoch)
    log = EpochLog(1, images.shape[0], device)
    history = log.histories[0]
    bar = progress(total=spec.epochs * steps_per_epoch, desc=desc) if progress else None
    for epoch in range(1, spec.epochs + 1):
        model.train(train_mode)
        with log.epoch(epoch):
            for batch_images, batch_labels in iterate_batches(images, labels, spec.batch_size,
                                                              generator=generator):
                x = inputs(batch_images)
                if augment is not None:
                    x = augment(x, generator)
                with autocast(device, amp):
                    logits = model(x)
                    loss = F.cross_entropy(logits.float(), batch_labels,
                                           label_smoothing=spec.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                log.step(loss, logits, batch_labels)
                _call(callbacks, "after_backward", log.steps, log.steps / steps_per_epoch, model)
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
                _call(callbacks, "after_step", log.steps, log.steps / steps_per_epoch, model)
                if bar is not None:
                    bar.update(1)
        log.evaluate([model], eval_sets, [spec.eval_batch_size], inputs=inputs, amp=amp)
        _call(callbacks, "on_epoch_end", epoch, model, history)
        if bar is not None:
            shown = {k: f"{v[-1]:.4f}" for k, v in history.eval_acc.items()}
            bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}", **shown)
    if bar is not None:
        bar.close()
    return log.finish()[0]
