"""digits.sampling: the one seeded-subset rule."""

from __future__ import annotations

import numpy as np
import torch

from digits.sampling import subset, subset_index


def test_subset_index_is_seeded_sorted_and_without_replacement() -> None:
    a = subset_index(100, 10, torch.Generator().manual_seed(0))
    b = subset_index(100, 10, torch.Generator().manual_seed(0))
    c = subset_index(100, 10, torch.Generator().manual_seed(1))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert len(set(a.tolist())) == 10 and np.all(np.diff(a) > 0)
    for k in (0, 100, 500):  # 0 or k >= n: everything, in order
        assert np.array_equal(subset_index(100, k, torch.Generator()), np.arange(100))


def test_subset_keeps_images_and_labels_paired() -> None:
    images = torch.arange(100).reshape(100, 1, 1)
    labels = torch.arange(100)
    x, y = subset(images, labels, 10, torch.Generator().manual_seed(0))
    assert torch.equal(x.flatten(), y) and len(y) == 10
    assert subset(images, labels, 0, torch.Generator())[0] is images
