"""A fully connected conditional GAN, trained as several recipes at once, and its training loop.

The recipes of an ablation (the original's setup, then one change at a time) differ only in a
few switches, so they train side by side as one batched model: every weight has a leading run
dimension, layers are batched matrix products (`torch.baddbmm`), and one optimizer step trains
all runs. Adam and every layer act on each run's slice alone, so each run is exactly the model
it would be on its own; all runs start from the same weights and see the same batches, noise,
labels and dropout masks, so the ablation is paired. On one CPU thread a step of three runs
took 0.32 s against 0.24 s for one (full widths, batch 100); on a GPU the runs share one
sequence of kernel launches instead of R.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from digits import original
from digits.data import iterate_batches
from digits.graphs import GraphedStep
from digits.spectral import refine_v, spectral_linear
from digits.training import autocast, synchronize

N_CLASSES = 10
PIXELS = 28 * 28


@dataclass(frozen=True)
class Recipe:
    """One way of training the GAN; the ablation changes one switch at a time."""

    name: str
    signed_range: bool = False  # real images scaled to [-1, 1] like the tanh output (else [0, 1])
    dropout_in_g_step: bool = True  # D's dropout also on while G trains (the original: always)
    real_target: float = 1.0  # D's target for real images; below 1 = one-sided label smoothing
    spectral_norm: bool = False  # D's weights divided by their largest singular value


# The original's setup, then the corrections one at a time (each keeps the ones before).
RECIPES: dict[str, Recipe] = {r.name: r for r in (
    Recipe("original"),  # real images in [0, 1], D's dropout always on
    Recipe("range", signed_range=True),  # real images in [-1, 1], the tanh's range
    Recipe("dropout", signed_range=True, dropout_in_g_step=False),
    Recipe("smoothing", signed_range=True, dropout_in_g_step=False, real_target=0.9),
    Recipe("spectral", signed_range=True, dropout_in_g_step=False, real_target=0.9,
           spectral_norm=True),
)}


@dataclass(frozen=True)
class AdamSetting:
    """How every run of a build is optimised: Adam's learning rate and first beta, and the batch."""

    name: str
    lr: float
    beta1: float
    batch_size: int
    origin: str  # whose setting it is: a noun phrase for the page


# The settings a build may train with, named in its config (`optimizers`), fixed before any run.
OPTIMIZERS: dict[str, AdamSetting] = {o.name: o for o in (
    # The original's: Adam at 2e-4 with torch's default betas (0.9, 0.999), batches of 100.
    AdamSetting("original", original.GAN_LR, 0.9, original.GAN_BATCH,
                "the original's setting"),
    # DCGAN's (Radford et al. 2015): Adam at 2e-4, beta1 0.5, batches of 128; most GAN recipes
    # since use its beta1.
    AdamSetting("dcgan", 2e-4, 0.5, 128, "DCGAN's setting"),
    # DCGAN's beta1 with a tenfold step and batches of 64: more progress per CPU second.
    AdamSetting("large-step", 2e-3, 0.5, 64, "a tenfold step with DCGAN's beta1"),
)}


def optimizers_named(names: Sequence[str]) -> list[AdamSetting]:
    """The settings of OPTIMIZERS named in `names`, in order (one at least, none twice)."""
    unknown = [n for n in names if n not in OPTIMIZERS]
    if unknown or not names or len(set(names)) != len(names):
        raise ValueError(f"optimizers must name distinct settings of {sorted(OPTIMIZERS)}, "
                         f"got {names!r}")
    return [OPTIMIZERS[n] for n in names]


class RunLinear(nn.Module):
    """A linear layer per run: weight [R, in, out], every run initialised alike (nn.Linear's)."""

    def __init__(self, runs: int, n_in: int, n_out: int):
        super().__init__()
        bound = 1 / math.sqrt(n_in)  # nn.Linear's default: U(-1/sqrt(in), 1/sqrt(in))
        self.weight = nn.Parameter(torch.empty(n_in, n_out).uniform_(-bound, bound)
                                   .repeat(runs, 1, 1))
        self.bias = nn.Parameter(torch.empty(1, n_out).uniform_(-bound, bound)
                                 .repeat(runs, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [R, B, in] -> [R, B, out]."""
        return torch.baddbmm(self.bias, x, self.weight)


class RunEmbedding(nn.Module):
    """A class embedding per run, [R, classes, dim], initialised like nn.Embedding (N(0, 1))."""

    def __init__(self, runs: int, classes: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(classes, dim).repeat(runs, 1, 1))

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """labels [B] -> [R, B, dim]."""
        return self.weight[:, labels]


class Generator(nn.Module):
    """z and the class's embedding -> fc 256 -> 512 -> 1024 -> 784 pixels, tanh (in [-1, 1])."""

    def __init__(self, runs: int, z_dim: int = 100, widths: Sequence[int] = (256, 512, 1024)):
        super().__init__()
        self.runs, self.z_dim = runs, z_dim
        self.embed = RunEmbedding(runs, N_CLASSES, N_CLASSES)
        sizes = [z_dim + N_CLASSES, *widths, PIXELS]
        self.layers = nn.ModuleList(RunLinear(runs, a, b)
                                    for a, b in itertools.pairwise(sizes))

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """z [B, z_dim] (shared by all runs) and labels [B] -> images [R, B, 784] in [-1, 1]."""
        h = torch.cat([z.expand(self.runs, *z.shape), self.embed(labels)], dim=2)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            h = torch.tanh(h) if i == len(self.layers) - 1 else F.leaky_relu(h, 0.2)
        return h


class Discriminator(nn.Module):
    """Image and the class's embedding -> fc 1024 -> 512 -> 256 -> 1 logit, with dropout.

    Dropout (p = 0.3) follows each hidden layer. Whether it is on is decided per run and per
    call (`dropout` [R] bool): the original leaves it on everywhere. Spectral normalisation
    (per run, `spectral` [R] bool) divides each weight by its largest singular value, estimated
    as torch.nn.utils.spectral_norm does (Miyato et al. 2018): one power-iteration step per
    training call, on singular vectors kept between calls.
    """

    def __init__(self, runs: int, widths: Sequence[int] = (1024, 512, 256), p: float = 0.3):
        super().__init__()
        self.runs, self.p = runs, p
        self.embed = RunEmbedding(runs, N_CLASSES, N_CLASSES)
        sizes = [PIXELS + N_CLASSES, *widths, 1]
        self.layers = nn.ModuleList(RunLinear(runs, a, b)
                                    for a, b in itertools.pairwise(sizes))
        for i, layer in enumerate(self.layers):
            # Singular-vector estimates of each run's weight [R, in, out]: u [R, out] random,
            # v [R, in] its first power-iteration step (drawing no random numbers).
            u = F.normalize(torch.randn(1, layer.weight.shape[2]), dim=1).repeat(runs, 1)
            v = F.normalize(torch.bmm(layer.weight.detach(), u[:, :, None])[:, :, 0], dim=1)
            self.register_buffer(f"u{i}", u)
            self.register_buffer(f"v{i}", v)
        self.register_buffer("spectral", torch.zeros(runs, dtype=torch.bool))
        self.use_spectral = False  # a Python copy: testing the buffer would sync the GPU per call

    def set_spectral(self, flags: Sequence[bool]) -> None:
        """Switch spectral normalisation on for the runs flagged True."""
        self.spectral.copy_(torch.tensor(list(flags), dtype=torch.bool))
        self.use_spectral = any(flags)

    def forward(self, x: torch.Tensor, labels: torch.Tensor,
                dropout: torch.Tensor | None = None, power_iteration: bool = True
                ) -> torch.Tensor:
        """x [R, B, 784], labels [B] -> logits [R, B]; `dropout` [R] bool, default all on.

        `power_iteration=False` keeps the spectral norm's vectors as they are in a training
        call: G's step, which leaves D's weights unchanged, then needs 2 kernels per layer for
        sigma instead of 8 (Miyato et al.'s Algorithm 1 iterates once per update of D).
        Normalised layers go through digits.spectral, which scales each product rather than
        each weight.
        """
        iterate = self.training and power_iteration
        h = torch.cat([x, self.embed(labels)], dim=2)
        masks: Sequence[torch.Tensor] = ()
        for i, layer in enumerate(self.layers):
            if self.use_spectral:
                u, v = getattr(self, f"u{i}"), getattr(self, f"v{i}")
                if iterate:
                    refine_v(layer.weight, u, v)
                h = spectral_linear(h, layer.weight, layer.bias, v, self.spectral, u, iterate)
            else:
                h = layer(h)
            if i < len(self.layers) - 1:
                h = F.leaky_relu(h, 0.2)
                if self.training and self.p > 0:
                    masks = masks or self._dropout_masks(h, dropout)
                    h = h * masks[i]
        return h[:, :, 0]

    def _dropout_masks(self, h: torch.Tensor, dropout: torch.Tensor | None
                       ) -> Sequence[torch.Tensor]:
        """Every hidden layer's dropout mask, scaled by 1 / (1 - p), from one draw.

        One mask for all runs (paired, like the data and the noise), [B, width] per layer, or
        [R, B, width] with `dropout` (runs without dropout keep every unit). One bernoulli_,
        one scale and one where for the three layers: 3 kernels where a draw per layer took 9.
        """
        widths = [layer.weight.shape[2] for layer in self.layers[:-1]]
        keep = torch.empty(h.shape[1], sum(widths), device=h.device, dtype=h.dtype)
        keep = keep.bernoulli_(1 - self.p).mul_(1 / (1 - self.p))
        if dropout is not None:
            keep = torch.where(dropout[:, None, None], keep, 1.0)
        return keep.split(widths, dim=-1)


@dataclass
class GanHistory:
    """Per-epoch mean losses of each run, why a run stopped (or None), and timing."""

    names: list[str]
    epochs: list[int] = field(default_factory=list)
    d_loss: list[list[float]] = field(default_factory=list)  # [run][epoch]
    g_loss: list[list[float]] = field(default_factory=list)
    d_real: list[list[float]] = field(default_factory=list)  # mean D(x) on real images
    stopped: list[str | None] = field(default_factory=list)  # "nan" / "exploded" / None
    stopped_epoch: list[int | None] = field(default_factory=list)
    seconds: float = 0.0
    steps: int = 0
    cuda_graph: bool = False  # whether the steps ran as a captured CUDA graph

    def as_dict(self) -> dict:
        """Plain-dict form for ctx.metric."""
        return {k: getattr(self, k) for k in ("names", "epochs", "d_loss", "g_loss", "d_real",
                                              "stopped", "stopped_epoch", "seconds", "steps",
                                              "cuda_graph")}

    def add_epoch(self, epoch: int, means: list[list[float]], limit: float) -> list[int]:
        """Record each run's epoch means [D loss, G loss, D(x)][run]; stop a run whose loss
        turned non-finite or passed `limit`; the runs stopped now (a stopped run records NaN)."""
        self.epochs.append(epoch)
        stopped_now = []
        for r in range(len(self.names)):
            if self.stopped[r] is not None:
                d, g, dr = math.nan, math.nan, math.nan
            else:
                d, g, dr = means[0][r], means[1][r], means[2][r]
                problem = loss_problem(d, g, limit)
                if problem is not None:
                    self.stopped[r], self.stopped_epoch[r] = problem, epoch
                    stopped_now.append(r)
            self.d_loss[r].append(d)
            self.g_loss[r].append(g)
            self.d_real[r].append(dr)
        return stopped_now


def loss_problem(d_loss: float, g_loss: float, limit: float) -> str | None:
    """'nan' for a non-finite loss, 'exploded' for one above `limit`, else None."""
    if not (math.isfinite(d_loss) and math.isfinite(g_loss)):
        return "nan"
    if d_loss > limit or g_loss > limit:
        return "exploded"
    return None


def recorded_epochs(epochs: int, every: int) -> list[int]:
    """0 (before training), every `every`-th epoch, and the last one."""
    return sorted({0, *range(every, epochs + 1, max(every, 1)), epochs})


def to_unit(output: torch.Tensor, recipes: Sequence[Recipe]) -> torch.Tensor:
    """Generator output [R, ...] on each run's data scale -> images in [0, 1] for judging.

    A [-1, 1] run maps back by (x + 1) / 2; a [0, 1] run (the original's) was trained to put
    its output on the data's [0, 1] scale, so its negative values are clipped, as a viewer does.
    """
    signed = torch.tensor([r.signed_range for r in recipes], device=output.device)
    shape = (-1,) + (1,) * (output.dim() - 1)
    return torch.where(signed.view(shape), (output + 1) / 2, output).clamp(0, 1)


@torch.no_grad()
def generate(generator: Generator, z: torch.Tensor, labels: torch.Tensor,
             batch_size: int = 1_000) -> torch.Tensor:
    """Raw generator output [R, N, 28, 28] in [-1, 1], in eval mode (float32)."""
    was_training = generator.training
    generator.eval()
    out = []
    for start in range(0, z.shape[0], batch_size):
        with autocast(z.device):
            out.append(generator(z[start:start + batch_size],
                                 labels[start:start + batch_size]).float())
    generator.train(was_training)
    return torch.cat(out, dim=1).view(generator.runs, -1, 28, 28)


class GanStep:
    """One D update and one G update of every run, on tensors made once: a CUDA graph replays it.

    Nothing in it reads a value back to the host: the epoch's sums of D's loss, G's loss and
    mean D(x) on real images accumulate in `sums` [3, R] on the device.
    """

    def __init__(self, generator: Generator, discriminator: Discriminator,
                 recipes: Sequence[Recipe], *, lr: float, beta1: float, batch_size: int,
                 graphed: bool):
        device = next(generator.parameters()).device
        runs = len(recipes)
        self.generator, self.discriminator, self.device = generator, discriminator, device
        self.graphed = graphed  # float32 (TF32 matmuls) in a graph, else autocast (see amp)
        # Fused Adam: one multi-tensor kernel per optimizer instead of several per tensor (on
        # the CPU too, see digits.training.FUSED); capturable keeps its step count on the
        # device, which a CUDA graph needs. Betas (beta1, 0.999); the original's beta1 is 0.9.
        extra = {"fused": True, "capturable": graphed} if device.type == "cuda" else \
            {"fused": True}
        self.opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=(beta1, 0.999),
                                      **extra)
        self.opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr, betas=(beta1, 0.999),
                                      **extra)
        self.d_params = list(discriminator.parameters())

        def per_run(values: list[float]) -> torch.Tensor:
            return torch.tensor(values, device=device)

        # uint8 -> each run's range in one addcmul: x * scale + shift, scale including / 255.
        self.scale = per_run([2.0 if r.signed_range else 1.0 for r in recipes]).view(-1, 1, 1)
        self.scale /= 255
        self.shift = per_run([-1.0 if r.signed_range else 0.0 for r in recipes]).view(-1, 1, 1)
        # Targets made once (a Python float turned into a device tensor per step is a host
        # copy): D's for the real then the generated half of its one call, [R, 2B], and G's.
        real_target = per_run([r.real_target for r in recipes])[:, None]
        self.d_target = torch.cat([real_target.expand(runs, batch_size),
                                   torch.zeros(runs, batch_size, device=device)], dim=1)
        self.g_target = torch.ones(runs, batch_size, device=device)
        self.g_dropout = torch.tensor([r.dropout_in_g_step for r in recipes], device=device)
        self.alive = torch.ones(runs, dtype=torch.bool, device=device)  # False: run stopped
        self.sums = torch.zeros(3, runs, device=device)

    def amp(self) -> Any:
        """bf16 autocast on an eager step (CUDA, or a CPU with native bf16: 2.25x the steps per
        second of float32 for three quick-profile runs on 2 cores); float32 in a CUDA graph."""
        return autocast(self.device, enabled=not self.graphed)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Train every run on the uint8 images `x` [B, 28, 28] of classes `y` [B]."""
        generator, discriminator, b = self.generator, self.discriminator, x.shape[0]
        real = torch.addcmul(self.shift, x.view(1, b, PIXELS).float(), self.scale)  # [R, B, 784]
        z = torch.randn(b, generator.z_dim, device=self.device)
        fake_labels = torch.randint(0, N_CLASSES, (b,), device=self.device)
        with self.amp():
            fake = generator(z, fake_labels).detach()
            # Real and generated batches through D in one call: half the kernel launches of
            # two calls; dropout masks stay independent per row as in two calls.
            both = torch.cat([real.to(fake.dtype), fake], dim=1)
            d_both = discriminator(both, torch.cat([y, fake_labels]))
        # The mean loss on the real half plus the mean on the generated half, in one loss call.
        d_loss = _bce(d_both, self.d_target) * 2  # [R]
        self.opt_d.zero_grad(set_to_none=True)
        torch.where(self.alive, d_loss, 0.0).sum().backward()
        self.opt_d.step()

        z = torch.randn(b, generator.z_dim, device=self.device)
        fake_labels = torch.randint(0, N_CLASSES, (b,), device=self.device)
        for param in self.d_params:  # G's step needs no gradient for D's weights: skip it
            param.requires_grad_(False)
        try:
            with self.amp():
                d_on_fake = discriminator(generator(z, fake_labels), fake_labels,
                                          self.g_dropout, power_iteration=False)
            g_loss = _bce(d_on_fake, self.g_target)
            self.opt_g.zero_grad(set_to_none=True)
            torch.where(self.alive, g_loss, 0.0).sum().backward()
            self.opt_g.step()
        finally:  # also after a failed graph capture, so that eager steps can go on
            for param in self.d_params:
                param.requires_grad_(True)
        # Accumulate on the device: a .item() per step would synchronise every batch.
        d_real = torch.sigmoid(d_both[:, :b].detach().float()).mean(1)
        self.sums.add_(torch.stack([d_loss.detach(), g_loss.detach(), d_real]))


def _bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-run mean binary cross-entropy of logits [R, B] against targets [R, B]."""
    return F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none").mean(1)


def train_gan(generator: Generator, discriminator: Discriminator, recipes: Sequence[Recipe],
              images: torch.Tensor, labels: torch.Tensor, *, epochs: int, batch_size: int,
              lr: float, generator_order: torch.Generator, beta1: float = 0.9,
              explode_limit: float = 100.0,
              on_record: Callable[[int, GanHistory], None] | None = None,
              record: Sequence[int] = (),
              progress: Callable[..., object] | None = None,
              cuda_graph: bool = True) -> GanHistory:
    """Train all runs together on uint8 images held on their device; see the module doc.

    Each step (GanStep): D on a real batch and a generated batch (random classes) in one call,
    then G through D. Adam's betas are (`beta1`, 0.999); the original's are torch's default
    (0.9). A run whose epoch-mean loss turns non-finite or exceeds `explode_limit` stops: its
    losses are masked out of later steps and `history.stopped` says why. `on_record(epoch,
    history)` is called at every epoch in `record` (0 = before training) with the history so
    far. Losses are read back once per epoch.

    On CUDA the whole step (both forward and backward passes and both Adam updates) is captured
    once as a CUDA graph and replayed: on an H200 (torch 2.11) a step of five full-width runs at
    batch 100 took 20.6 ms eagerly, host-bound (about 575 kernels for 1.7 ms of GPU work), and
    1.8 to 2.0 ms replayed as a graph (about 400 kernels). Since then the spectral norm and
    D's loss take fewer: 357 -> 227 launches per step counted on the CPU (`python
    bench/launches.py`), so about 260 kernels on a GPU (not yet measured there).
    If capturing fails, training goes on eagerly (`history.cuda_graph` says which ran).
    """
    device = images.device
    generator.to(device)
    discriminator.to(device)
    discriminator.set_spectral([r.spectral_norm for r in recipes])
    step = GanStep(generator, discriminator, recipes, lr=lr, beta1=beta1, batch_size=batch_size,
                   graphed=cuda_graph and device.type == "cuda")
    runner = GraphedStep(step, device, enabled=step.graphed, name="GAN",
                         on_fallback=lambda: setattr(step, "graphed", False))  # then autocast
    step.graphed = runner.graphed  # False too after a failed capture earlier in this process
    runs = len(recipes)
    history = GanHistory([r.name for r in recipes], stopped=[None] * runs,
                         stopped_epoch=[None] * runs, d_loss=[[] for _ in recipes],
                         g_loss=[[] for _ in recipes], d_real=[[] for _ in recipes])
    steps_per_epoch = images.shape[0] // batch_size  # fixed shapes: the short batch is dropped
    bar = progress(total=epochs * steps_per_epoch, desc="GAN") if progress else None
    generator.train()
    discriminator.train()
    if on_record is not None and 0 in record:
        on_record(0, history)
    precision = _matmul_precision("high") if step.graphed else None  # TF32; restored below
    try:
        for epoch in range(1, epochs + 1):
            step.sums.zero_()
            synchronize(device)
            start = time.perf_counter()
            for x, y in iterate_batches(images, labels, batch_size, generator=generator_order,
                                        drop_last=True):
                runner(x, y)
                history.steps += 1
                if bar is not None:
                    bar.update(1)
            synchronize(device)
            history.seconds += time.perf_counter() - start
            means = (step.sums / steps_per_epoch).cpu().tolist()
            for r in history.add_epoch(epoch, means, explode_limit):
                step.alive[r] = False  # in place: a captured graph reads the same tensor
            if on_record is not None and epoch in record:
                on_record(epoch, history)
            if bar is not None:
                bar.set_postfix(d=" ".join(f"{v[-1]:.2f}" for v in history.d_loss),
                                g=" ".join(f"{v[-1]:.2f}" for v in history.g_loss))
    finally:
        if precision is not None:
            _matmul_precision(precision)
    history.cuda_graph = runner.graph is not None
    if bar is not None:
        bar.close()
    return history


def _matmul_precision(value: str) -> str | None:
    """Set torch's float32 matmul precision ("high" = TF32 on CUDA); the old value, or None.

    In a graph the step runs in float32 with TF32 matmuls: on an H200 that took 1.79 ms of GPU
    time per step against 2.09 ms for bf16 autocast, whose casts add 166 kernels (518 vs 684).
    Any failure (an API change) leaves the setting alone: speed only, never the build.
    """
    try:
        old = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision(value)
        return old
    except Exception:  # noqa: BLE001 - precision is an optimisation
        return None
