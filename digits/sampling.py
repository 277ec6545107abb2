"""The one way the project draws a seeded subset: the first k of a seeded permutation, sorted."""

from __future__ import annotations

import numpy as np
import torch


def subset_index(n: int, k: int, generator: torch.Generator) -> np.ndarray:
    """k sorted indices out of range(n); all of them when k <= 0 or k >= n.

    The permutation is drawn on the CPU from `generator`, so the subset is the same on every
    device; sorting keeps the original order of the kept examples.
    """
    if k <= 0 or k >= n:
        return np.arange(n)
    return np.sort(torch.randperm(n, generator=generator)[:k].numpy())


def subset(images: torch.Tensor, labels: torch.Tensor, k: int,
           generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded subset of k examples (the tensors themselves when k <= 0 or k >= len)."""
    if k <= 0 or k >= images.shape[0]:
        return images, labels
    index = torch.from_numpy(subset_index(images.shape[0], k, generator)).to(images.device)
    return images[index], labels[index]
