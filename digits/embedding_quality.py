"""Making and scoring a low-dimensional map, one way for every section that draws one.

PCA, then openTSNE from its leading components; each space scored by the out-of-fold accuracy
of a k-nearest-neighbour classifier on the same stratified folds, and by trustworthiness on
disjoint samples. `MAP_SCORING` holds the settings both the embeddings and the transfer
sections use, so that their maps and scores compare. Pure functions over numpy arrays
(features [n, d], integer labels [n]); no plotting, no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.decomposition import PCA
from sklearn.manifold import trustworthiness as _sk_trustworthiness
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

from digits.metrics import confusion_matrix


@dataclass(frozen=True)
class MapScoring:
    """How a map is made and scored (fixed in advance, the same in every section)."""

    pca_dims: int = 50  # t-SNE starts from this many principal components ("PCA-50")
    perplexity: float = 30.0  # openTSNE's default
    knn_k: int = 10  # neighbours of the kNN classifier that scores each space
    knn_folds: int = 5  # its stratified cross-validation folds
    trust_k: int = 10  # neighbourhood size of trustworthiness


MAP_SCORING = MapScoring()
# openTSNE's FFT gradients cost O(n) but have a fixed grid cost (45 ms an iteration for 500
# points on 2 busy cores against ~1 ms with Barnes-Hut): "auto" takes FFT above this many points.
FFT_ABOVE = 10_000


def fit_pca(x: np.ndarray) -> PCA:
    """PCA of all components through the covariance's eigenvectors (exact, nothing random;
    a second or two for 70,000 x 784)."""
    return PCA(svd_solver="covariance_eigh").fit(x)


def project(pca: PCA, x: np.ndarray, dims: int) -> np.ndarray:
    """The first `dims` principal components of `x` (float32 [n, dims])."""
    return pca.transform(x)[:, :dims].astype(np.float32)


def tsne_map(x: np.ndarray, *, seed: int, threads: int, perplexity: float = MAP_SCORING.perplexity,
             gradients: str = "auto", callbacks: Any = None, every: int = 50) -> np.ndarray:
    """openTSNE's 2-D map of `x` [n, d] (PCA initialisation), float64 [n, 2].

    Perplexity is capped at (n - 1) / 3, openTSNE's limit for small samples. `gradients` is
    "fft", "bh" or "auto" (FFT above FFT_ABOVE points). `callbacks` get every `every`
    iterations (250 of early exaggeration, then 500).
    """
    from openTSNE import TSNE

    if gradients == "auto":
        gradients = "fft" if len(x) > FFT_ABOVE else "bh"
    if gradients not in ("fft", "bh"):
        raise ValueError(f"t-SNE gradients must be 'fft', 'bh' or 'auto', not {gradients!r}")
    tsne = TSNE(perplexity=min(perplexity, (len(x) - 1) / 3), initialization="pca",
                negative_gradient_method=gradients, n_jobs=threads, random_state=seed,
                verbose=False, callbacks=callbacks,
                callbacks_every_iters=every)
    return np.asarray(tsne.fit(x), dtype=np.float64)


@dataclass(frozen=True)
class KnnScores:
    """kNN scores of several spaces on the same folds."""

    folds: np.ndarray  # the fold in which each image is held out
    predictions: Mapping[str, np.ndarray]  # out-of-fold predictions per space
    accuracies: Mapping[str, np.ndarray]  # per-fold accuracy per space


def knn_scores(spaces: Mapping[str, np.ndarray], labels: np.ndarray, *, seed: int,
               scoring: MapScoring = MAP_SCORING, threads: int | None = None,
               each: Callable[[str, np.ndarray], None] | None = None) -> KnnScores:
    """Out-of-fold kNN predictions and per-fold accuracies of each space, on one set of
    stratified folds (the same seed), so that per-fold accuracies pair up across spaces.
    `each(name, accuracies)` is called after each space (for progress lines)."""
    folds = stratified_folds(labels, scoring.knn_folds, seed)
    predictions, accuracies = {}, {}
    for name, features in spaces.items():
        predictions[name] = knn_cv_predict(features, labels, k=scoring.knn_k,
                                           folds=scoring.knn_folds, seed=seed, n_jobs=threads)
        accuracies[name] = fold_accuracies(labels, predictions[name], folds)
        if each is not None:
            each(name, accuracies[name])
    return KnnScores(folds, predictions, accuracies)


def trustworthiness_samples(high: np.ndarray, maps: Mapping[str, np.ndarray],
                            samples: Sequence[np.ndarray],
                            scoring: MapScoring = MAP_SCORING) -> dict[str, np.ndarray]:
    """Trustworthiness of each map against `high` on each sample of row indices."""
    return {name: np.array([trustworthiness(high[pos], low[pos], k=scoring.trust_k)
                            for pos in samples]) for name, low in maps.items()}


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
