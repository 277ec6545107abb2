"""digits.metrics: the one confusion matrix and per-class accuracy of the project."""

from __future__ import annotations

import numpy as np
import torch

from digits import metrics


def test_confusion_matrix_rows_are_true_classes() -> None:
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    predicted = torch.tensor([0, 1, 1, 1, 2, 2])
    matrix = metrics.confusion_matrix(labels, predicted, n_classes=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]
    assert matrix.dtype == np.int64
    # Every class gets a row and a column, seen or not.
    assert metrics.confusion_matrix([0], [0], n_classes=4).shape == (4, 4)


def test_per_class_accuracy_and_accuracy() -> None:
    labels, predicted = np.array([0, 0, 1, 1, 1, 2]), np.array([0, 1, 1, 1, 2, 2])
    per_class = metrics.per_class_accuracy(labels, predicted, n_classes=4)
    assert np.allclose(per_class[:3], [0.5, 2 / 3, 1.0])
    assert np.isnan(per_class[3])  # a class without examples has no accuracy
    assert metrics.accuracy(labels, predicted) == 4 / 6


def test_top_confusions() -> None:
    matrix = np.array([[9, 1, 4], [0, 9, 2], [4, 0, 9]])
    # Ties keep reading order (row by row), so (0, 2) comes before (2, 0).
    assert metrics.top_confusions(matrix, 3) == [(0, 2, 4), (2, 0, 4), (1, 2, 2)]


def test_top_confusions_leaves_out_cells_without_errors() -> None:
    matrix = np.array([[5, 0, 2], [0, 5, 0], [0, 0, 5]])
    assert metrics.top_confusions(matrix, 3) == [(0, 2, 2)]
    assert metrics.top_confusions(np.eye(3, dtype=int) * 5, 3) == []
