"""Good versus bad gradient flow: a deep sigmoid MLP without normalisation next to a healthy one.

Why the sigmoid network starves: backpropagation multiplies the gradient, layer by layer, by the
activation's derivative (at most 0.25 for the sigmoid) and by the weights (PyTorch's default
initialisation draws them from U(±1/sqrt(fan_in)), std 1/sqrt(3 fan_in)), so each layer shrinks
the gradient norm by roughly 0.25 / sqrt(3) ≈ 0.14 and eight layers by about 1e-7. ReLU (slope 1
where active) with batch normalisation (which rescales every layer's input to unit variance)
keeps the per-layer factor near 1.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from digits.models import Standardize
from digits.recording import DistributionRecorder, weight_layers
from digits.training import TrainSpec, evaluate, train

ACTIVATIONS = {"sigmoid": nn.Sigmoid, "relu": nn.ReLU, "tanh": nn.Tanh}


@dataclass(frozen=True)
class FlowConfig:
    """One network of the comparison."""

    label: str
    activation: str  # sigmoid | relu | tanh
    batch_norm: bool


BAD = FlowConfig("sigmoid, no normalisation", "sigmoid", False)
GOOD = FlowConfig("ReLU + batch norm", "relu", True)


def deep_mlp(depth: int, width: int, activation: str, batch_norm: bool,
             mean: float = 0.0, std: float = 1.0) -> nn.Sequential:
    """`depth` hidden layers of `width` units on flattened 28x28 images, then 10 logits.

    Linear layers are named layer1 .. layer{depth+1} so that plots can label them by depth.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; choose from {sorted(ACTIVATIONS)}")
    model = nn.Sequential()
    model.add_module("standardize", Standardize(mean, std))
    model.add_module("flatten", nn.Flatten())
    fan_in = 28 * 28
    for i in range(1, depth + 1):
        model.add_module(f"layer{i}", nn.Linear(fan_in, width))
        if batch_norm:
            model.add_module(f"norm{i}", nn.BatchNorm1d(width))
        model.add_module(f"act{i}", ACTIVATIONS[activation]())
        fan_in = width
    model.add_module(f"layer{depth + 1}", nn.Linear(fan_in, 10))
    return model


@dataclass
class FlowResult:
    """One network's gradient record and outcome."""

    config: FlowConfig
    snapshot_steps: np.ndarray  # [snapshots] the steps at which the norms were recorded
    norms: np.ndarray  # [snapshots, layers] gradient L2 norm of each layer's weights
    train_loss: float
    test_accuracy: float
    seconds: float
    steps: int = 0  # optimizer steps taken

    def grad_norms(self) -> np.ndarray:
        """Gradient L2 norm [snapshots, layers], first layer first."""
        return self.norms

    def first_last_ratio(self) -> np.ndarray:
        """First-layer over last-layer gradient norm at each snapshot."""
        norms = self.grad_norms()
        return norms[:, 0] / np.maximum(norms[:, -1], 1e-30)


def flow_arrays(results: Sequence[FlowResult]) -> dict[str, np.ndarray]:
    """The runs (seeds) of one network as named arrays; `flow_results` rebuilds them.

    Lossless (float64 norms and outcomes, int64 steps), so that a drawing from stored arrays
    gives the numbers of the runs themselves. Every run of one network records the same steps.
    """
    return {"snapshot_steps": np.stack([np.asarray(r.snapshot_steps, np.int64)
                                        for r in results]),
            "norms": np.stack([np.asarray(r.norms, np.float64) for r in results]),
            "train_loss": np.array([r.train_loss for r in results], np.float64),
            "test_accuracy": np.array([r.test_accuracy for r in results], np.float64),
            "seconds": np.array([r.seconds for r in results], np.float64),
            "steps": np.array([r.steps for r in results], np.int64)}


def flow_results(config: FlowConfig, arrays: Mapping[str, np.ndarray] | Callable[[str], np.ndarray]
                 ) -> list[FlowResult]:
    """The runs `flow_arrays` stored, one FlowResult per seed: from a mapping, or from a reader
    of one array by name (e.g. `lambda name: ctx.array("flow.bad." + name)`)."""
    read = arrays.__getitem__ if isinstance(arrays, Mapping) else arrays
    steps, norms = read("snapshot_steps"), read("norms")
    losses, accuracies = read("train_loss"), read("test_accuracy")
    seconds, taken = read("seconds"), read("steps")
    return [FlowResult(config, steps[i], norms[i], float(losses[i]), float(accuracies[i]),
                       float(seconds[i]), int(taken[i]))
            for i in range(len(norms))]


def geometric_mean(values: np.ndarray) -> float:
    """exp(mean(log v)): the typical value of a ratio spanning orders of magnitude."""
    values = np.asarray(values, dtype=np.float64)
    return float(np.exp(np.log(np.maximum(values, 1e-300)).mean()))


def run_flow(config: FlowConfig, images: torch.Tensor, labels: torch.Tensor,
             test: tuple[torch.Tensor, torch.Tensor], spec: TrainSpec, *, depth: int,
             width: int, mean: float, std: float, seed: int, every: int = 1,
             progress=None) -> FlowResult:
    """Train one deep MLP for `spec` on `images`, recording every layer's gradient norm."""
    torch.manual_seed(seed)  # the initial weights
    model = deep_mlp(depth, width, config.activation, config.batch_norm, mean, std)
    # Statistics only (sample_size=0): the flow needs norms, not distributions.
    recorder = DistributionRecorder(weight_layers(model), every=every, sample_size=0, seed=seed)
    history = train(model, images, labels, spec, generator=torch.Generator().manual_seed(seed),
                    callbacks=[recorder], progress=progress, desc=config.activation)
    result = evaluate(model, *test)
    rec = recorder.recording
    norms = np.stack([rec.stat(layer, "g_norm") for layer in rec.layers], axis=1)
    return FlowResult(config, np.asarray(rec.steps, np.int64), norms, history.train_loss[-1],
                      result.accuracy, history.seconds, history.steps)
