"""analyses.classifiers: error-analysis helpers, the original's denominator, the contract."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from analyses import classifiers as c
from digits.models import Model2


def test_confusion_matrix_and_per_class_accuracy() -> None:
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    predicted = torch.tensor([0, 1, 1, 1, 2, 2])
    matrix = c.confusion_matrix(predicted, labels, classes=3)
    assert matrix.tolist() == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]
    assert np.allclose(c.per_class_accuracy(matrix), [0.5, 2 / 3, 1.0])
    # A class with no examples gets 0, not a division error.
    assert c.per_class_accuracy(np.zeros((2, 2), dtype=int)).tolist() == [0.0, 0.0]


def test_top_confusions() -> None:
    matrix = np.array([[9, 1, 4], [0, 9, 2], [4, 0, 9]])
    # Ties keep reading order (row by row), so (0, 2) comes before (2, 0).
    assert c.top_confusions(matrix, 3) == [(0, 2, 4), (2, 0, 4), (1, 2, 2)]


def test_most_confident_mistakes() -> None:
    probs = torch.tensor([
        [0.9, 0.1, 0.0],   # 0: true 0, right
        [0.2, 0.7, 0.1],   # 1: true 0, wrong at 0.7
        [0.05, 0.05, 0.9],  # 2: true 1, wrong at 0.9
        [0.4, 0.6, 0.0],   # 3: true 0, wrong at 0.6
        [0.3, 0.3, 0.4],   # 4: true 2, right
    ])
    labels = torch.tensor([0, 0, 1, 0, 2])
    mistakes = c.most_confident_mistakes(probs, labels, k=2)
    assert [m["index"] for m in mistakes] == [2, 1]
    assert mistakes[0] == {"index": 2, "true": 1, "predicted": 2,
                           "probability": mistakes[0]["probability"],
                           "true_probability": mistakes[0]["true_probability"]}
    assert np.isclose(mistakes[0]["probability"], 0.9)
    assert np.isclose(mistakes[0]["true_probability"], 0.05)
    assert len(c.most_confident_mistakes(probs, labels, k=10)) == 3
    assert c.most_confident_mistakes(probs[[0, 4]], labels[[0, 4]], k=5) == []


def test_original_denominator() -> None:
    # 10,000 test images in batches of 32: 313 batches, the last of 16, counted as 32.
    assert c.original_denominator(10_000, 32) == 10_016
    assert c.original_denominator(64, 32) == 64


def test_seeded_subset() -> None:
    images = torch.arange(100).reshape(100, 1, 1)
    labels = torch.arange(100)
    a = c.seeded_subset(images, labels, 10, torch.Generator().manual_seed(0))
    b = c.seeded_subset(images, labels, 10, torch.Generator().manual_seed(0))
    assert torch.equal(a[0], b[0]) and len(a[1]) == 10
    assert torch.equal(a[0].flatten(), a[1])  # images and labels stay paired
    assert len(set(a[1].tolist())) == 10  # without replacement
    full = c.seeded_subset(images, labels, 0, torch.Generator())
    assert full[0] is images


def test_layer_description_matches_the_original() -> None:
    assert c.describe_layers(Model2()) == \
        "conv 3×3 → 32×26×26 · conv 3×3 → 64×24×24 · fc → 128 · fc → 10"


def test_contract() -> None:
    analysis = c.ANALYSIS
    assert (analysis.name, analysis.title, analysis.requires) == \
        ("classifiers", "Finding a good model", ("dataset",))
    full = analysis.config
    # The full profile is the original's procedure for models 1 and 2.
    assert (full.train_subset, full.epochs, full.batch_size, full.lr, full.momentum) == \
        (0, 10, 32, 0.01, 0.5)
    assert full.best_seeds >= 3 and full.target >= 0.996
    quick = dataclasses.replace(full, **analysis.quick)
    assert 0 < quick.train_subset <= 15_000 and quick.best_seeds >= 1


def test_test_logits_callback_matches_evaluate() -> None:
    from torch import nn

    from digits.training import History, evaluate

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (50, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 10, (50,), generator=g)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
    callback = c.TestLogits(images, labels, batch_size=16)
    history = History()
    callback.on_epoch_end(1, model, history)
    expected = evaluate(model, images, labels)
    assert history.eval_acc["test"] == [expected.accuracy]
    assert np.isclose(history.eval_loss["test"][0], expected.loss)
    assert callback.logits is not None and callback.logits.shape == (50, 10)
