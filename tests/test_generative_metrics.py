"""Metrics of generated digits (digits.generative_metrics) on synthetic features."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from digits.generative_metrics import (
    conditional_accuracy,
    diversity,
    frechet_distance,
    inception_score,
    judge_outputs,
    one_nn_accuracy,
    per_class,
    precision_recall,
)
from digits.metrics import accuracy
from digits.models import BestCNN


def gaussian(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim))


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_noise() -> None:
    x = gaussian(500)
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(1)
    distances = [frechet_distance(x, x + rng.normal(scale=s, size=x.shape))
                 for s in (0.1, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in itertools.pairwise(distances)), distances
    assert distances[0] > 0


def test_frechet_distance_of_a_shifted_set_is_the_squared_shift() -> None:
    x = gaussian(400)
    assert frechet_distance(x, x + 3.0) == pytest.approx(9.0 * x.shape[1], rel=1e-6)


def test_a_collapsed_set_has_recall_zero_and_diversity_zero() -> None:
    real = gaussian(300)
    collapsed = np.repeat(real[:1] + 0.01, 300, axis=0)  # one image repeated
    precision, recall = precision_recall(real, collapsed, k=3)
    assert recall < 0.02
    assert precision == 1.0  # the one point lies on the real manifold
    assert diversity(collapsed) == 0.0
    assert diversity(real) > 1.0


def test_precision_and_recall_of_a_set_against_itself_are_one() -> None:
    x = gaussian(200)
    assert precision_recall(x, x, k=3) == (1.0, 1.0)
    far = x + 100.0
    assert precision_recall(x, far, k=3) == (0.0, 0.0)


def test_one_nn_accuracy_of_two_halves_of_one_set_is_about_half() -> None:
    x = gaussian(1_000, seed=3)
    assert abs(one_nn_accuracy(x[:500], x[500:]) - 0.5) < 0.06
    assert one_nn_accuracy(x[:500], x[500:] + 50.0) == 1.0


def test_inception_score_between_one_and_the_number_of_classes() -> None:
    confident = torch.eye(10).repeat(20, 1) * 50  # every class, each predicted with certainty
    assert inception_score(confident) == pytest.approx(10.0, rel=1e-3)
    one_class = torch.zeros(200, 10)
    one_class[:, 3] = 50
    assert inception_score(one_class) == pytest.approx(1.0, rel=1e-3)


def test_judge_features_give_the_models_own_logits_and_conditional_accuracy_is_accuracy() -> None:
    torch.manual_seed(0)
    model = BestCNN(0.13, 0.31, width=4, hidden=16)
    model.train()  # judge_outputs must switch to eval itself (dropout off, running BN stats)
    images = torch.randint(0, 256, (64, 28, 28), dtype=torch.uint8)
    labels = torch.randint(0, 10, (64,))
    features, logits = judge_outputs(model, images, batch_size=20)
    assert model.training  # restored
    assert features.shape == (64, 16) and (features >= 0).all()  # after the ReLU
    model.eval()
    with torch.no_grad():
        direct = model(images.unsqueeze(1).float() / 255)
    torch.testing.assert_close(logits, direct, rtol=1e-4, atol=1e-5)
    # Real digits asked for by their own labels: conditional accuracy is the model's accuracy.
    assert conditional_accuracy(logits, labels) == accuracy(labels, direct.argmax(1))


def test_per_class_splits_by_label() -> None:
    real = np.concatenate([np.zeros((5, 2)), np.ones((5, 2))])
    labels = np.repeat([0, 1], 5)
    counts = per_class(lambda r, f: len(r) + 10 * len(f), real, labels, real[:3], labels[:3],
                       n_classes=2)
    assert counts.tolist() == [5 + 30, 5]
