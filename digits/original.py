"""The original post's published numbers ("MNIST — Exploration to Execution" and its notebook).

These are quotations, not results and not settings: the only numbers typed into the project that
the page shows. Analyses compare against them; prose reaches them as `original.<name>` and says
each time that they are the original's. Its notebook used torch 1.3, seed 7 and batches of 32.
"""

from __future__ import annotations

from types import MappingProxyType

BATCH_SIZE = 32  # training and test loaders; its test accuracy divided by batches x 32
EPOCHS = 10  # models 1 and 2, and every optimizer of its race
TEST_IMAGES = 10_000  # MNIST's test set, which it scored on
TRAIN_BATCHES = 1_875  # its "whole training set": 1,875 batches drawn with replacement
LR = 0.01  # SGD, models 1 and 2
MOMENTUM = 0.5

MODEL1_TEST_ACC = 0.9777  # one conv, fc 128
MODEL2_TEST_ACC = 0.9801  # two convs
MODEL1_PARAMS = 2.77e6  # as printed, rounded to 0.01 M
MODEL2_PARAMS = 4.74e6

# Its optimizer race: model 2, 10 epochs, one run each, settings differing per optimizer.
OPTIMIZER_TEST_ACC = MappingProxyType({"sgd": 0.9805, "rmsprop": 0.9847, "adam": 0.9467,
                                       "adadelta": 0.9735, "adagrad": 0.9326})
ADADELTA_LR_FRACTION = 0.1  # of Adadelta's usual learning rate, 1.0

VGG16_TEST_ACC = 0.9904  # frozen features, 10 epochs
VGG16_EPOCH_SECONDS = 135

GAN_Z = 100
GAN_LR = 2e-4
GAN_BATCH = 100
GAN_EPOCHS = 201
GAN_SECONDS = 1_425


def facts() -> dict[str, object]:
    """Every fact above by lower-case name, for the prose (`original.model1_test_acc`)."""
    return {name.lower(): (dict(value) if isinstance(value, MappingProxyType) else value)
            for name, value in globals().items() if name.isupper()}


def denominator(n_test: int, batch: int = BATCH_SIZE) -> int:
    """What the original divided the number correct by: test batches x batch size."""
    return -(-n_test // batch) * batch


def true_accuracy(reported: float, n_test: int = TEST_IMAGES, batch: int = BATCH_SIZE) -> float:
    """The original's reported accuracy corrected for its denominator (correct / n_test)."""
    correct = round(reported * denominator(n_test, batch))
    return correct / n_test
