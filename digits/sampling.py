"""The one way the project draws seeded subsets: slices of a seeded permutation, sorted."""

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


def disjoint_subsets(n: int, size: int, count: int,
                     generator: torch.Generator) -> list[np.ndarray]:
    """`count` disjoint random subsets of range(n), sorted, of `size` each (fewer if n is short).

    When count x size exceeds n, each subset shrinks to n // count so that they stay disjoint.
    """
    if count < 1 or size < 1:
        raise ValueError(f"need count >= 1 and size >= 1, got count={count}, size={size}")
    size = min(size, n // count)
    order = torch.randperm(n, generator=generator).numpy()
    return [np.sort(order[i * size:(i + 1) * size]) for i in range(count)]


def balanced_index(labels: object, per_class: int, generator: torch.Generator,
                   n_classes: int = 10, *, strict: bool = False) -> np.ndarray:
    """Positions of `per_class` random examples of each class, grouped by class (class 0
    first), each group sorted; every position when `per_class` <= 0.

    One permutation is drawn and the first `per_class` of each class kept, so a larger budget
    drawn from the same stream contains the smaller one. A class with fewer examples gives what
    it has, or with `strict` is an error.
    """
    labels = labels.cpu().numpy() if hasattr(labels, "cpu") else np.asarray(labels)
    if per_class <= 0:
        return np.arange(len(labels))
    counts = np.bincount(labels, minlength=n_classes)
    if strict and counts.min() < per_class:
        raise ValueError(f"{per_class} per class asked, but class {int(counts.argmin())} has "
                         f"only {int(counts.min())} examples")
    order = torch.randperm(len(labels), generator=generator).numpy()
    return np.concatenate([np.sort(order[labels[order] == c][:per_class])
                           for c in range(n_classes)])

