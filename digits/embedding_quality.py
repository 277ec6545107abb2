"""How good is a low-dimensional map? kNN accuracy, trustworthiness and the most confused pairs.

Pure functions over numpy arrays (features [n, d], integer labels [n]); no plotting, no I/O.
"""

from __future__ import annotations

import numpy as np
from sklearn.manifold import trustworthiness as _sk_trustworthiness
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier


def knn_cv_predict(features: np.ndarray, labels: np.ndarray, *, k: int = 10, folds: int = 5,
                   seed: int = 0, n_jobs: int | None = None) -> np.ndarray:
    """Out-of-fold predictions of a k-nearest-neighbour classifier (stratified k-fold CV)."""
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} feature rows but {len(labels)} labels")
    # Brute force: exact, and as fast as trees for d >= ~20; KD-trees win for 2-D maps.
    algorithm = "kd_tree" if features.shape[1] <= 3 else "brute"
    model = KNeighborsClassifier(n_neighbors=k, algorithm=algorithm, n_jobs=n_jobs)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % 2**32)
    return cross_val_predict(model, features, labels, cv=cv)


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Share of predictions equal to the labels."""
    return float(np.mean(np.asarray(labels) == np.asarray(predictions)))


def per_class_accuracy(labels: np.ndarray, predictions: np.ndarray,
                       n_classes: int = 10) -> np.ndarray:
    """Accuracy within each true class (NaN for a class without samples)."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    out = np.full(n_classes, np.nan)
    for c in range(n_classes):
        mask = labels == c
        if mask.any():
            out[c] = float(np.mean(predictions[mask] == c))
    return out


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray,
                     n_classes: int = 10) -> np.ndarray:
    """Counts [true, predicted] as an int64 matrix."""
    flat = np.asarray(labels, dtype=np.int64) * n_classes + np.asarray(predictions, np.int64)
    return np.bincount(flat, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def confused_pairs(labels: np.ndarray, predictions: np.ndarray, *, top: int = 5,
                   n_classes: int = 10) -> list[tuple[int, int, int]]:
    """The unordered class pairs (a < b) with the most errors either way, most first.

    Ties are broken by the pair itself so that the order is deterministic.
    """
    cm = confusion_matrix(labels, predictions, n_classes)
    pairs = [(a, b, int(cm[a, b] + cm[b, a]))
             for a in range(n_classes) for b in range(a + 1, n_classes)]
    pairs = [p for p in pairs if p[2] > 0]
    pairs.sort(key=lambda p: (-p[2], p[0], p[1]))
    return pairs[:top]


def trustworthiness(high: np.ndarray, low: np.ndarray, *, k: int = 10) -> float:
    """sklearn's trustworthiness in [0, 1]: 1 = every map neighbour is a true neighbour.

    It penalises points that are among the k nearest in the map but far in the original space,
    weighted by their rank there; it costs O(n^2) memory, so pass a sample of a few thousand.
    """
    if len(high) != len(low):
        raise ValueError(f"{len(high)} original rows but {len(low)} embedded rows")
    if not k < len(high) / 2:
        raise ValueError(f"trustworthiness needs k < n/2 (k={k}, n={len(high)})")
    return float(_sk_trustworthiness(high, low, n_neighbors=k))


def cumulative_variance_counts(explained_ratio: np.ndarray,
                               levels: tuple[float, ...] = (0.9, 0.95, 0.99)) -> dict[float, int]:
    """How many leading components reach each level of cumulative explained variance."""
    cumulative = np.cumsum(np.asarray(explained_ratio, dtype=np.float64))
    counts = {}
    for level in levels:
        if cumulative[-1] < level - 1e-12:
            raise ValueError(f"the components explain only {cumulative[-1]:.4f} < {level}")
        counts[level] = int(np.searchsorted(cumulative, level - 1e-12) + 1)
    return counts
