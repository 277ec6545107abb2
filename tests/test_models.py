"""digits.models: the original's parameter counts and shapes, and the stronger CNN."""

from __future__ import annotations

import torch
from torch import nn

from digits.models import BestCNN, Model1, Model2, Standardize, count_parameters


def output_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            module.register_forward_hook(
                lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:])))
    model.eval()
    with torch.no_grad():
        model(torch.rand(2, 1, 28, 28))
    return shapes


def test_original_parameter_counts() -> None:
    # The original printed 2.77 M and 4.74 M; these are the exact counts of those layers.
    assert count_parameters(Model1()) == 2_770_634
    assert count_parameters(Model2()) == 4_738_826


def test_original_shapes() -> None:
    assert output_shapes(Model1()) == {"conv1": (32, 26, 26), "fc1": (128,), "fc2": (10,)}
    assert output_shapes(Model2()) == {"conv1": (32, 26, 26), "conv2": (64, 24, 24),
                                       "fc1": (128,), "fc2": (10,)}


def test_best_cnn_shapes_and_size() -> None:
    model = BestCNN()
    shapes = output_shapes(model)
    assert list(shapes.values())[-2:] == [(256,), (10,)]
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert any(isinstance(m, nn.Dropout) for m in model.modules())
    assert count_parameters(model) < count_parameters(Model1())
    small = BestCNN(width=4, hidden=8)
    assert small(torch.rand(3, 1, 28, 28)).shape == (3, 10)


def test_standardize_is_buffers_not_parameters() -> None:
    layer = Standardize(0.5, 0.25)
    assert torch.allclose(layer(torch.tensor([0.5, 1.0])), torch.tensor([0.0, 2.0]))
    assert count_parameters(layer) == 0
    assert set(dict(layer.named_buffers())) == {"mean", "std"}
    # The constants travel with the state dict, so a saved model carries its normalisation.
    assert {"standardize.mean", "standardize.std"} <= set(Model2(0.13, 0.31).state_dict())
