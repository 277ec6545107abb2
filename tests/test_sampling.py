"""digits.sampling: the one seeded-subset rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from digits.sampling import balanced_index, disjoint_subsets, subset, subset_index


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


def test_disjoint_subsets() -> None:
    subsets = disjoint_subsets(100, 20, 3, torch.Generator().manual_seed(0))
    assert [len(s) for s in subsets] == [20, 20, 20]
    together = np.concatenate(subsets)
    assert len(np.unique(together)) == 60 and together.max() < 100
    assert all(np.all(np.diff(s) > 0) for s in subsets)  # sorted
    again = disjoint_subsets(100, 20, 3, torch.Generator().manual_seed(0))
    assert all(np.array_equal(a, b) for a, b in zip(subsets, again))
    # Too few points for count x size: each subset shrinks to n // count, still disjoint.
    small = disjoint_subsets(10, 5, 3, torch.Generator().manual_seed(1))
    assert [len(s) for s in small] == [3, 3, 3] and len(np.unique(np.concatenate(small))) == 9
    with pytest.raises(ValueError, match="count"):
        disjoint_subsets(10, 5, 0, torch.Generator())


def test_balanced_index_groups_classes_and_nests_budgets() -> None:
    labels = np.array([0, 1, 0, 1, 0, 2, 2, 1, 0])
    index = balanced_index(labels, 2, torch.Generator().manual_seed(0), n_classes=3)
    assert labels[index].tolist() == [0, 0, 1, 1, 2, 2]
    small = balanced_index(labels, 1, torch.Generator().manual_seed(4), n_classes=3)
    large = balanced_index(labels, 3, torch.Generator().manual_seed(4), n_classes=3)
    assert set(small) <= set(large)  # one permutation: a larger budget contains the smaller
    assert len(balanced_index(labels, 3, torch.Generator(), n_classes=3)) == 8  # class 2 has 2
    with pytest.raises(ValueError, match="per class"):
        balanced_index(labels, 3, torch.Generator(), n_classes=3, strict=True)
    assert np.array_equal(balanced_index(labels, 0, torch.Generator()), np.arange(9))
