"""Watching a network train: weight/gradient recorders (training callbacks) and activation capture.

`DistributionRecorder` is a callback for `digits.training.train`. Every `every` steps, after
`loss.backward()` and before the optimizer step, it keeps for each layer's weight tensor:

- exact summary statistics over the whole tensor (mean, std, L2 norm; mean and max |gradient|,
  gradient L2 norm), which feed the gradient-flow charts;
- the values at a fixed set of positions (at most `sample_size`, chosen once from a seeded
  generator; the whole tensor when it is smaller), for weights and for gradients. Of the two-conv
  network only fc1 (4.7 M weights) is subsampled: conv1 (288), conv2 (18,432) and fc2 (1,280)
  are kept whole.

Histogram bins are decided after recording, from every snapshot of a layer pooled (`fixed_edges`),
so that one set of edges serves all frames and nothing runs off the axes. Deciding them from the
first snapshot would not work: at initialisation fc1's weights lie within ±1/sqrt(36,864) =
±0.0052, and an adaptive optimizer moves each weight by about its learning rate (1e-3) per step,
so the distribution is several times wider within the first few hundred steps. Gradients change
scale as training goes on (fc1's mean |gradient| fell more than tenfold within one epoch of a
trial run with Adam), so their early range would squeeze later frames into one bin; they are
therefore binned by magnitude, log10 |g|. A value outside the edges (the pooled
0.1 and 99.9 percentiles by default) is counted in the nearest end bin.

`summarize` keeps of the sampled values only what is drawn from them (edges, per-snapshot shares
per bin, share of exact zeros, percentile bands): at 101 snapshots of 20,000 values for 4 layers,
weights and gradients, the values are 32 MB of float32, their summaries about 0.5 MB.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

# TensorBoard's distribution bands: the normal distribution's 0, ±0.5, ±1, ±1.5 sigma points
# and the extremes, as percentiles.
TB_PERCENTILES: tuple[float, ...] = (0.0, 6.68, 15.87, 30.85, 50.0, 69.15, 84.13, 93.32, 100.0)
# Gradient histograms start at this quantile of the non-zero magnitudes (see `fixed_edges`).
LOG_FLOOR = 0.01
STATS = ("w_mean", "w_std", "w_norm", "g_mean_abs", "g_max_abs", "g_norm")


def weight_layers(model: nn.Module) -> list[str]:
    """Names of the modules that own a weight matrix or kernel (dim >= 2), in forward order."""
    return [name for name, module in model.named_modules()
            if isinstance(getattr(module, "weight", None), nn.Parameter)
            and module.weight.dim() >= 2]


@dataclass
class Recording:
    """What a DistributionRecorder kept: one entry per snapshot, per layer."""

    layers: list[str]
    steps: list[int] = field(default_factory=list)
    epochs: list[float] = field(default_factory=list)  # fractional epoch at each snapshot
    shapes: dict[str, list[int]] = field(default_factory=dict)
    weights: dict[str, list[torch.Tensor]] = field(default_factory=dict)  # sampled values
    grads: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    stats: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    seconds: float = 0.0  # wall time spent inside the recorder

    def stat(self, layer: str, name: str) -> np.ndarray:
        """One statistic of one layer over the snapshots."""
        return np.asarray(self.stats[layer][name], dtype=np.float64)

    def values(self, kind: str, layer: str) -> np.ndarray:
        """Sampled values [snapshots, n] of 'weights' or 'grads' for one layer."""
        tensors = getattr(self, kind)[layer]
        return torch.stack(tensors).numpy() if tensors else np.empty((0, 0), np.float32)


class DistributionRecorder:
    """Training callback that snapshots per-layer weight and gradient distributions."""

    def __init__(self, layers: Sequence[str] | None = None, every: int = 50,
                 sample_size: int = 20_000, seed: int = 0):
        if every < 1:
            raise ValueError("every must be >= 1")
        self.layer_names = list(layers) if layers is not None else None
        self.every = every
        self.sample_size = sample_size
        self.seed = seed
        self.recording: Recording | None = None
        self._index: dict[str, torch.Tensor | None] = {}

    def _start(self, model: nn.Module) -> Recording:
        names = self.layer_names if self.layer_names is not None else weight_layers(model)
        modules = dict(model.named_modules())
        generator = torch.Generator().manual_seed(self.seed)
        rec = Recording(layers=list(names))
        for name in names:
            weight = modules[name].weight
            n = weight.numel()
            rec.shapes[name] = list(weight.shape)
            rec.weights[name], rec.grads[name] = [], []
            rec.stats[name] = {s: [] for s in STATS}
            if n <= self.sample_size:
                self._index[name] = None  # keep the whole tensor
            else:
                index = torch.randperm(n, generator=generator)[:self.sample_size].sort().values
                self._index[name] = index.to(weight.device)
        return rec

    def due(self, step: int) -> bool:
        """Snapshot at steps 1, 1 + every, 1 + 2 every, ... (step 1 = the initial weights)."""
        return (step - 1) % self.every == 0

    @torch.no_grad()
    def after_backward(self, step: int, epoch: float, model: nn.Module) -> None:
        """Training hook: snapshot when `step` is due."""
        if not self.due(step):
            return
        device = next(model.parameters()).device
        if device.type == "cuda":
            # Let the backward pass finish first, so that its time is not counted as ours.
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        if self.recording is None:
            self.recording = self._start(model)
        rec = self.recording
        modules = dict(model.named_modules())
        rec.steps.append(step)
        # train() calls us after `step` batches; the weights seen are those before this update.
        rec.epochs.append((step - 1) / step * epoch if step else 0.0)
        rows = []
        for name in rec.layers:
            weight = modules[name].weight
            w = weight.detach().float().flatten()
            g = weight.grad.detach().float().flatten() if weight.grad is not None \
                else torch.zeros_like(w)
            index = self._index[name]
            rec.weights[name].append((w if index is None else w[index]).cpu().clone())
            rec.grads[name].append((g if index is None else g[index]).cpu().clone())
            g_abs = g.abs()
            rows.append(torch.stack([w.mean(), w.std(), w.norm(), g_abs.mean(), g_abs.max(),
                                     g.norm()]))
        # One transfer for all layers' statistics (one sync per snapshot on a GPU).
        values = torch.stack(rows).cpu().tolist()
        for name, row in zip(rec.layers, values):
            for stat, value in zip(STATS, row):
                rec.stats[name][stat].append(value)
        rec.seconds += time.perf_counter() - start


def magnitudes(values: np.ndarray) -> np.ndarray:
    """log10 |v|, with exact zeros mapped to -inf (they land in the lowest bin)."""
    with np.errstate(divide="ignore"):
        return np.log10(np.abs(np.asarray(values, dtype=np.float64)))


def fixed_edges(values: np.ndarray, bins: int, coverage: float = 0.999,
                scale: str = "linear", log_floor: float = LOG_FLOOR) -> np.ndarray:
    """Histogram edges shared by all frames, from every frame's values pooled.

    `values` holds every frame's values ([frames, n] or flat). "linear": edges symmetric about 0
    out to the larger |pooled (1 - coverage) or coverage quantile|. "log": edges over log10 |v|
    from the `log_floor` quantile of the non-zero magnitudes (a long tail of tiny values, down
    to 1e-10, would otherwise take half the axis) to the largest one; gradients span several
    decades and shrink as the loss falls, so a linear axis shows them as one spike.
    """
    if scale == "linear":
        flat = np.asarray(values, dtype=np.float64).ravel()
        lo, hi = np.quantile(flat, [1 - coverage, coverage]) if flat.size else (0.0, 0.0)
        hi = max(abs(lo), abs(hi))
        lo = -hi
    elif scale == "log":
        flat = magnitudes(values).ravel()
        flat = flat[np.isfinite(flat)]
        lo, hi = (np.quantile(flat, log_floor), flat.max()) if flat.size else (-1.0, 0.0)
    else:
        raise ValueError(f"scale must be 'linear' or 'log', not {scale!r}")
    if hi <= lo:  # a constant tensor (e.g. all-zero gradients): give it a visible width
        lo, hi = lo - 1e-12, hi + 1e-12
    return np.linspace(lo, hi, bins + 1)


def histograms(values: np.ndarray, edges: np.ndarray, scale: str = "linear") -> np.ndarray:
    """Share of values per bin for each frame [frames, bins]; outliers go to the end bins.

    With scale "log", `edges` are over log10 |v| (see `fixed_edges`) and exact zeros are left
    out, so a frame's shares sum to 1 minus its share of zeros.
    """
    values = magnitudes(values) if scale == "log" else np.asarray(values, dtype=np.float64)
    out = np.empty((values.shape[0], len(edges) - 1))
    for i, frame in enumerate(values):
        kept = np.clip(frame[np.isfinite(frame)], edges[0], edges[-1])
        counts, _ = np.histogram(kept, bins=edges)
        out[i] = counts / max(frame.size, 1)
    return out


def percentile_bands(values: np.ndarray,
                     percentiles: Sequence[float] = TB_PERCENTILES) -> np.ndarray:
    """Percentiles of each frame [frames, len(percentiles)] (TensorBoard's distributions)."""
    return np.percentile(np.asarray(values, dtype=np.float64), percentiles, axis=1).T


KINDS = ("weights", "grads")
# Weights are binned by value, gradients by magnitude (log10 |g|; see the module docstring).
SCALES = {"weights": "linear", "grads": "log"}
# What draw needs of each layer's sampled values, per kind (see `RecordingSummary`).
SUMMARIES = ("edges", "shares", "zeros", "bands")


@dataclass
class RecordingSummary:
    """A Recording without its sampled values: statistics, plus per kind and layer the fixed
    histogram edges, each snapshot's shares per bin and share of exact zeros, and its
    percentile bands (TB_PERCENTILES). Everything the frames, bands and tables are drawn from."""

    layers: list[str]
    steps: list[int]
    epochs: list[float]
    shapes: dict[str, list[int]]
    stats: dict[str, dict[str, list[float]]]
    seconds: float
    edges: dict[str, dict[str, np.ndarray]]  # kind -> layer -> [bins + 1]
    shares: dict[str, dict[str, np.ndarray]]  # kind -> layer -> [snapshots, bins]
    zeros: dict[str, dict[str, np.ndarray]]  # kind -> layer -> [snapshots]
    bands: dict[str, dict[str, np.ndarray]]  # kind -> layer -> [snapshots, TB_PERCENTILES]

    def stat(self, layer: str, name: str) -> np.ndarray:
        """One statistic of one layer over the snapshots."""
        return np.asarray(self.stats[layer][name], dtype=np.float64)


def summarize(rec: Recording, bins: int, coverage: float) -> RecordingSummary:
    """The summaries of a recording's sampled values that draw uses (`RecordingSummary`).

    Edges come from every snapshot pooled (`fixed_edges`, linear for weights, log for
    gradients); shares, zeros and bands are float64, exactly what drawing from the values gave.
    """
    parts: dict[str, dict[str, dict[str, np.ndarray]]] = {
        part: {kind: {} for kind in KINDS} for part in SUMMARIES}
    for kind in KINDS:
        for layer in rec.layers:
            values = rec.values(kind, layer)
            edges = fixed_edges(values, bins, coverage, SCALES[kind])
            parts["edges"][kind][layer] = edges
            parts["shares"][kind][layer] = histograms(values, edges, SCALES[kind])
            parts["zeros"][kind][layer] = (values == 0).mean(axis=1)
            parts["bands"][kind][layer] = percentile_bands(values)
    return RecordingSummary(layers=list(rec.layers), steps=list(rec.steps),
                            epochs=list(rec.epochs), shapes=dict(rec.shapes),
                            stats=dict(rec.stats), seconds=rec.seconds, **parts)


def summary_to_arrays(summary: RecordingSummary) -> dict[str, np.ndarray]:
    """A RecordingSummary as named arrays (for `ctx.array`); `summary_from_arrays` rebuilds it.

    Lossless: per layer `<layer>.shape`, `<layer>.stats` [STATS, snapshots] (NaN where a
    statistic was not kept), and per kind `<layer>.<kind>.edges|shares|zeros|bands` (float64).
    """
    n = len(summary.steps)
    out = {"layers": np.asarray(summary.layers, dtype=str),
           "steps": np.asarray(summary.steps, dtype=np.int64),
           "epochs": np.asarray(summary.epochs, dtype=np.float64),
           "seconds": np.asarray(summary.seconds, dtype=np.float64)}
    for layer in summary.layers:
        out[f"{layer}.shape"] = np.asarray(summary.shapes.get(layer, []), dtype=np.int64)
        stats = summary.stats.get(layer, {})
        out[f"{layer}.stats"] = np.array([stats.get(name, [np.nan] * n) for name in STATS],
                                         dtype=np.float64).reshape(len(STATS), n)
        for kind in KINDS:
            for part in SUMMARIES:
                out[f"{layer}.{kind}.{part}"] = np.asarray(
                    getattr(summary, part)[kind][layer], dtype=np.float64)
    return out


def distribution_summaries(rec: Recording, bins: int, coverage: float) -> dict[str, np.ndarray]:
    """`summarize` as named arrays: what compute stores instead of the sampled values."""
    return summary_to_arrays(summarize(rec, bins, coverage))


def summary_from_arrays(arrays: Mapping[str, np.ndarray] | Callable[[str], np.ndarray]
                        ) -> RecordingSummary:
    """The RecordingSummary that `summary_to_arrays` stored: from a mapping, or from a reader
    of one array by name (e.g. `lambda name: ctx.array("recording." + name)`)."""
    read = arrays.__getitem__ if isinstance(arrays, Mapping) else arrays
    layers = [str(layer) for layer in read("layers")]
    parts: dict[str, dict[str, dict[str, np.ndarray]]] = {
        part: {kind: {layer: np.asarray(read(f"{layer}.{kind}.{part}")) for layer in layers}
               for kind in KINDS}
        for part in SUMMARIES}
    return RecordingSummary(
        layers=layers, steps=[int(s) for s in read("steps")],
        epochs=[float(e) for e in read("epochs")],
        shapes={layer: [int(n) for n in read(f"{layer}.shape")] for layer in layers},
        stats={layer: {name: [float(v) for v in row]
                       for name, row in zip(STATS, read(f"{layer}.stats"))} for layer in layers},
        seconds=float(read("seconds")), **parts)


class ActivationCapture:
    """Forward hooks that keep each named module's output (detached) from the last forward."""

    def __init__(self, model: nn.Module, layers: Sequence[str]):
        modules = dict(model.named_modules())
        missing = [name for name in layers if name not in modules]
        if missing:
            raise KeyError(f"no modules named {missing}; the model has {sorted(modules)}")
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = [modules[name].register_forward_hook(self._hook(name))
                         for name in layers]

    def _hook(self, name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            self.outputs[name] = output.detach()
        return hook

    def remove(self) -> None:
        """Unregister the hooks."""
        for handle in self._handles:
            handle.remove()
        self._handles = []


@contextmanager
def capture_activations(model: nn.Module, layers: Sequence[str]) -> Iterator[ActivationCapture]:
    """`with capture_activations(model, ["conv1"]) as cap: model(x)` -> cap.outputs["conv1"]."""
    capture = ActivationCapture(model, layers)
    try:
        yield capture
    finally:
        capture.remove()
