"""Classification metrics shared by every section: one confusion matrix, one per-class accuracy."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix as _sk_confusion_matrix


def _numpy(values: object) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, on any device
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def accuracy(labels: object, predictions: object) -> float:
    """Share of predictions equal to the labels."""
    return float(np.mean(_numpy(labels) == _numpy(predictions)))


def confusion_matrix(labels: object, predictions: object, n_classes: int = 10) -> np.ndarray:
    """Counts [true, predicted] as an int64 matrix (sklearn's, with every class present)."""
    return _sk_confusion_matrix(_numpy(labels), _numpy(predictions),
                                labels=np.arange(n_classes)).astype(np.int64)


def per_class_accuracy(labels: object, predictions: object, n_classes: int = 10) -> np.ndarray:
    """Accuracy within each true class (NaN for a class without samples)."""
    cm = confusion_matrix(labels, predictions, n_classes)
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan)


def top_confusions(confusion: np.ndarray, k: int = 3) -> list[tuple[int, int, int]]:
    """Up to k largest non-zero off-diagonal cells as (true, predicted, count), largest first."""
    off = confusion.copy()
    np.fill_diagonal(off, -1)
    flat = np.argsort(-off, axis=None, kind="stable")[:k]
    return [(int(i // off.shape[1]), int(i % off.shape[1]), int(off.flat[i]))
            for i in flat if off.flat[i] > 0]
