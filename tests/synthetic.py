"""Synthetic MNIST-shaped digits for tests: ten classes a small network learns in seconds."""

from __future__ import annotations

import torch


def blobs(n: int, seed: int, label_noise: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [n, 28, 28]: a bright square at a class-dependent place, over noise.

    With `label_noise`, that share of the labels is redrawn at random, so that every model
    makes mistakes.
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.randint(0, 40, (n, 28, 28), generator=g, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        row, col = divmod(label, 5)
        images[i, 4 + 10 * row:12 + 10 * row, 2 + 5 * col:6 + 5 * col] = 255
    if label_noise:
        noisy = torch.rand(n, generator=g) < label_noise
        labels[noisy] = torch.randint(0, 10, (int(noisy.sum()),), generator=g)
    return images, labels


def stripes(n: int, seed: int, classes: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [n, 28, 28]: the label is which band of rows holds a bright stripe."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 60, (n, 28, 28), generator=g, dtype=torch.uint8)
    height = 28 // classes
    for i, label in enumerate(labels.tolist()):
        images[i, height * label:height * label + height] = 255
    return images, labels
