"""The stronger CNN's training recipe, in one place for every section that trains it.

Fixed in advance from common practice for small image classifiers and never tuned on any split
of MNIST: SGD with Nesterov momentum, weight decay, a one-cycle schedule, batch normalisation
and dropout, and on-device augmentation (small shifts and rotations). Sections take these as
their config defaults, so `--set` can still change one section's copy.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BestCNNRecipe:
    """How digits.models.BestCNN is trained."""

    epochs: int = 20
    batch_size: int = 128
    lr: float = 0.1  # the peak of the one-cycle schedule (it starts and ends far lower)
    momentum: float = 0.9  # cycled between 0.85 and 0.95 by OneCycleLR
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    dropout: float = 0.4
    max_shift: float = 2.0  # augmentation: pixels per axis
    max_degrees: float = 10.0  # augmentation: rotation


BEST_CNN = BestCNNRecipe()
