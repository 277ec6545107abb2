"""digits/embedding_quality.py on small synthetic clusters with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.neighbors import KNeighborsClassifier

from digits import embedding_quality as quality
from digits.metrics import accuracy


def blobs(n_per_class: int = 60, classes: int = 5, dims: int = 8, spread: float = 0.3,
          seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters around centres 10 apart (spread << distance: trivially separable)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dims)) * 10
    labels = np.repeat(np.arange(classes), n_per_class)
    return centres[labels] + rng.normal(scale=spread, size=(len(labels), dims)), labels


def test_knn_on_separated_blobs_is_perfect() -> None:
    x, y = blobs()
    pred = quality.knn_cv_predict(x, y, k=10, folds=5, seed=3)
    assert pred.shape == y.shape
    assert accuracy(y, pred) == 1.0
    # The 2-D path (KD-tree) gives the same answer on the first two coordinates of wide blobs.
    x2, y2 = blobs(dims=2)
    assert accuracy(y2, quality.knn_cv_predict(x2, y2, k=10, seed=3)) >= 0.99


def test_knn_with_shuffled_labels_is_near_chance() -> None:
    x, y = blobs(n_per_class=200, classes=5)
    shuffled = np.random.default_rng(1).permutation(y)
    acc = accuracy(shuffled, quality.knn_cv_predict(x, shuffled, k=10, seed=3))
    # Chance is 1/5; 1,000 samples put the standard error near 1.3 points.
    assert 0.12 < acc < 0.28


def test_stratified_folds_balance_classes_and_match_sklearn() -> None:
    _, y = blobs(n_per_class=20, classes=3)
    fold = quality.stratified_folds(y, folds=4, seed=9)
    assert fold.shape == y.shape and set(fold.tolist()) == {0, 1, 2, 3}
    for i in range(4):  # every fold holds 5 of each class's 20 samples
        assert np.bincount(y[fold == i], minlength=3).tolist() == [5, 5, 5]
    held_out = [test for _, test in StratifiedKFold(4, shuffle=True, random_state=9).split(
        np.zeros((len(y), 1)), y)]
    for i, test in enumerate(held_out):
        assert np.array_equal(np.flatnonzero(fold == i), np.sort(test))
    assert not np.array_equal(fold, quality.stratified_folds(y, folds=4, seed=10))


def test_knn_predictions_are_those_of_sklearn_on_the_same_folds() -> None:
    x, y = blobs(spread=4.0)  # overlapping: predictions depend on the folds
    expected = cross_val_predict(KNeighborsClassifier(n_neighbors=10), x, y,
                                 cv=StratifiedKFold(5, shuffle=True, random_state=5))
    assert np.array_equal(quality.knn_cv_predict(x, y, seed=5), expected)


def test_fold_accuracies() -> None:
    y = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    p = np.array([0, 1, 1, 1, 2, 0, 0, 0])
    fold = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    # Fold 0: 3 of 4 right; fold 1: 1 of 2; fold 2: 1 of 2.
    np.testing.assert_allclose(quality.fold_accuracies(y, p, fold), [0.75, 0.5, 0.5])
    # A fold without samples is left out, not NaN (a class may miss a fold).
    np.testing.assert_allclose(quality.fold_accuracies(y[:4], p[:4], np.array([0, 0, 2, 2])),
                               [0.5, 1.0])
    with pytest.raises(ValueError, match="fold numbers"):
        quality.fold_accuracies(y, p, fold[:-1])


def test_fold_accuracies_of_knn_on_blobs() -> None:
    x, y = blobs(spread=4.0)
    fold = quality.stratified_folds(y, folds=5, seed=2)
    pred = quality.knn_cv_predict(x, y, folds=5, seed=2)
    per_fold = quality.fold_accuracies(y, pred, fold)
    assert per_fold.shape == (5,)
    # Equal folds (60 samples each): their mean is the pooled out-of-fold accuracy.
    assert per_fold.mean() == pytest.approx(accuracy(y, pred))





def test_knn_is_deterministic_and_checks_shapes() -> None:
    x, y = blobs(spread=4.0)  # overlapping: predictions depend on the folds
    a = quality.knn_cv_predict(x, y, seed=5)
    assert np.array_equal(a, quality.knn_cv_predict(x, y, seed=5))
    with pytest.raises(ValueError, match="labels"):
        quality.knn_cv_predict(x, y[:-1])


def test_confused_pairs_sums_both_directions_and_orders() -> None:
    # 4 -> 9 three times and 9 -> 4 twice (5 in all); 3 -> 5 five times; 1 -> 7 once.
    y = np.array([4, 4, 4, 9, 9, 3, 3, 3, 3, 3, 1, 0])
    p = np.array([9, 9, 9, 4, 4, 5, 5, 5, 5, 5, 7, 0])
    pairs = quality.confused_pairs(y, p, top=5)
    # 3-5 and 4-9 tie at 5 errors; ties are ordered by the pair.
    assert pairs == [(3, 5, 5), (4, 9, 5), (1, 7, 1)]
    assert quality.confused_pairs(y, p, top=1) == [(3, 5, 5)]
    assert quality.confused_pairs(y, y) == []  # no errors, no pairs


def test_trustworthiness_identity_random_and_guards() -> None:
    x, _ = blobs(n_per_class=40, dims=10)
    assert quality.trustworthiness(x, x, k=5) == pytest.approx(1.0)
    assert quality.trustworthiness(x, x[:, :2] * 3.0, k=5) > 0.8  # blobs survive a projection
    noise = np.random.default_rng(0).normal(size=(len(x), 2))
    assert quality.trustworthiness(x, noise, k=5) < 0.7  # random map: about 0.5
    with pytest.raises(ValueError, match="k < n/2"):
        quality.trustworthiness(x[:10], x[:10], k=5)
    with pytest.raises(ValueError, match="rows"):
        quality.trustworthiness(x, x[:-1], k=5)


def test_cumulative_variance_counts() -> None:
    ratio = np.array([0.5, 0.3, 0.15, 0.04, 0.01])
    assert quality.cumulative_variance_counts(ratio) == {0.9: 3, 0.95: 3, 0.99: 4}
    assert quality.cumulative_variance_counts(ratio, (0.5, 0.8)) == {0.5: 1, 0.8: 2}
    with pytest.raises(ValueError, match="explain only"):
        quality.cumulative_variance_counts(np.array([0.5, 0.3]), (0.9,))


# --- the shared way to make and score a map (used by the embeddings and transfer sections) ------


def test_map_scoring_is_one_fixed_set_of_settings() -> None:
    scoring = quality.MAP_SCORING
    assert (scoring.pca_dims, scoring.perplexity, scoring.knn_k, scoring.knn_folds,
            scoring.trust_k) == (50, 30.0, 10, 5, 10)
    with pytest.raises(AttributeError):
        scoring.knn_k = 5  # frozen: a section cannot change it for itself


def test_fit_pca_and_project() -> None:
    x, _ = blobs(n_per_class=30, dims=12)
    x = x.astype(np.float32)
    pca = quality.fit_pca(x)
    assert pca.components_.shape == (12, 12)  # every component, not just the leading ones
    assert pca.explained_variance_ratio_.sum() == pytest.approx(1.0, abs=1e-5)
    z = quality.project(pca, x, 3)
    assert z.shape == (len(x), 3) and z.dtype == np.float32
    np.testing.assert_allclose(z, (x - x.mean(0)) @ pca.components_[:3].T, atol=1e-3)
    assert np.array_equal(quality.project(quality.fit_pca(x), x, 3), z)  # nothing random


class Counter:
    """An openTSNE callback that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def optimization_about_to_start(self) -> None:
        """Called at the start of each phase."""

    def __call__(self, iteration: int, error: float, embedding: np.ndarray) -> bool:
        self.calls += 1
        return False


def test_tsne_map_is_deterministic_keeps_clusters_and_calls_back() -> None:
    x, y = blobs(n_per_class=30, classes=4, dims=10)
    counter = Counter()
    first = quality.tsne_map(x, seed=1, threads=1, gradients="bh", callbacks=counter, every=50)
    assert first.shape == (len(x), 2) and first.dtype == np.float64
    assert counter.calls == (250 + 500) // 50  # early exaggeration, then the normal phase
    assert np.array_equal(first, quality.tsne_map(x, seed=1, threads=1, gradients="bh"))
    assert accuracy(y, quality.knn_cv_predict(first, y, k=5, seed=0)) == 1.0
    # Fewer points than 3 x perplexity: the perplexity is capped instead of failing.
    assert quality.tsne_map(x[:40], seed=1, threads=1, gradients="auto").shape == (40, 2)
    with pytest.raises(ValueError, match="gradients"):
        quality.tsne_map(x, seed=1, threads=1, gradients="exact")


def test_knn_scores_share_one_set_of_folds() -> None:
    x, y = blobs(n_per_class=40, classes=4, dims=6, spread=4.0)
    seen = []
    scores = quality.knn_scores({"all": x, "first2": x[:, :2]}, y, seed=4,
                                each=lambda name, acc: seen.append((name, len(acc))))
    assert seen == [("all", 5), ("first2", 5)]  # MAP_SCORING's 5 folds, in the spaces' order
    assert np.array_equal(scores.folds, quality.stratified_folds(y, 5, 4))
    for name, features in (("all", x), ("first2", x[:, :2])):
        expected = quality.knn_cv_predict(features, y, k=10, folds=5, seed=4)
        assert np.array_equal(scores.predictions[name], expected)
        np.testing.assert_allclose(scores.accuracies[name],
                                   quality.fold_accuracies(y, expected, scores.folds))
    small = quality.knn_scores({"all": x}, y, seed=4,
                               scoring=quality.MapScoring(knn_k=1, knn_folds=2))
    assert len(small.accuracies["all"]) == 2


def test_trustworthiness_samples_score_each_map_on_each_sample() -> None:
    x, _ = blobs(n_per_class=40, dims=10)
    noise = np.random.default_rng(0).normal(size=(len(x), 2))
    samples = [np.arange(0, 100), np.arange(100, 200)]
    trust = quality.trustworthiness_samples(x, {"same": x, "noise": noise}, samples)
    assert set(trust) == {"same", "noise"} and trust["same"].shape == (2,)
    np.testing.assert_allclose(trust["same"], 1.0)
    assert trust["noise"][1] == pytest.approx(
        quality.trustworthiness(x[100:200], noise[100:200], k=10))
