"""How good is a low-dimensional map? kNN accuracy, trustworthiness and the most confused pairs.

Pure functions over numpy arrays (features [n, d], integer labels [n]); no plotting, no I/O.
"""

from __future__ import annotations

import numpy as np
from sklearn.manifold import trustworthiness as _sk_trustworthiness
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

from digits.metrics import confusion_matrix


def stratified_folds(labels: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """The fold (0..folds-1) in which each sample is held out, for stratified shuffled k-fold.

    The same split `knn_cv_predict` uses with the same seed: it depends only on the labels.
    """
    labels = np.asarray(labels)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed % 2**32)
    fold = np.empty(len(labels), dtype=np.int64)
    for i, (_, held_out) in enumerate(cv.split(np.zeros((len(labels), 1)), labels)):
        fold[held_out] = i
    return fold


def knn_cv_predict(features: np.ndarray, labels: np.ndarray, *, k: int = 10, folds: int = 5,
                   seed: int = 0, n_jobs: int | None = None) -> np.ndarray:
    """Out-of-fold predictions of a k-nearest-neighbour classifier (stratified k-fold CV)."""
    if len(features) != len(labels):
        raise ValueError(f"{len(features)} feature rows but {len(labels)} labels")
    # Brute force: exact, and as fast as trees for d >= ~20; KD-trees win for 2-D maps.
    algorithm = "kd_tree" if features.shape[1] <= 3 else "brute"
    model = KNeighborsClassifier(n_neighbors=k, algorithm=algorithm, n_jobs=n_jobs)
    fold = stratified_folds(labels, folds, seed)
    splits = [(np.flatnonzero(fold != i), np.flatnonzero(fold == i)) for i in range(folds)]
    return cross_val_predict(model, features, labels, cv=splits)


def fold_accuracies(labels: np.ndarray, predictions: np.ndarray,
                    fold: np.ndarray) -> np.ndarray:
    """Accuracy of out-of-fold predictions within each fold, in fold order.

    Folds are numbered 0..max(fold); a fold without samples (possible when `labels` is one
    class's share of a split) is left out rather than reported as NaN.
    """
    labels, predictions, fold = np.asarray(labels), np.asarray(predictions), np.asarray(fold)
    if not len(labels) == len(predictions) == len(fold):
        raise ValueError(f"{len(labels)} labels, {len(predictions)} predictions and "
                         f"{len(fold)} fold numbers")
    correct = labels == predictions
    return np.array([correct[fold == i].mean() for i in range(int(fold.max()) + 1)
                     if (fold == i).any()])


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
