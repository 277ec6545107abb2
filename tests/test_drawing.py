"""The drawing pad's Python side (digits/drawing.py): batch norm folding, the numpy forward pass
the page's script mirrors, the script asset, and the MNIST-style preprocessing.

The page's JavaScript is checked against these in tests/test_browser.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from digits import drawing
from digits.models import BestCNN


def trained_like_cnn(seed: int = 0) -> BestCNN:
    """A BestCNN whose batch norms hold non-trivial statistics and affine parameters (a fresh
    one has mean 0, variance 1, gamma 1, beta 0, which folding would leave untested)."""
    torch.manual_seed(seed)
    model = BestCNN(0.1307, 0.3081)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.2, 3.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    return model.eval()


def saved_like_classifiers(model: BestCNN) -> dict:
    """What the classifiers section saves as `best`."""
    return {"state_dict": {k: v.clone() for k, v in model.state_dict().items()},
            "mean": float(model.standardize.mean), "std": float(model.standardize.std),
            "dropout": 0.4}


def digits_like(n: int, seed: int = 0) -> torch.Tensor:
    """uint8 [n, 28, 28]: random strokes on black, about a fifth of the pixels inked."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
    images[torch.rand(n, 28, 28, generator=g) > 0.2] = 0
    return images


def as_input(images: torch.Tensor) -> torch.Tensor:
    return images[:, None].float() / 255


# --- folding and the forward pass ------------------------------------------------------------


def test_folded_network_equals_the_trained_one_in_eval_mode() -> None:
    model = trained_like_cnn()
    rebuilt = drawing.best_cnn(saved_like_classifiers(model))
    net = drawing.fold_batch_norm(rebuilt)
    kinds = [(layer.kind, layer.relu) for layer in net.layers]
    assert kinds == [("conv", True), ("conv", True), ("pool", False), ("conv", True),
                     ("conv", True), ("pool", False), ("dense", True), ("dense", False)]
    assert [layer.weight.shape[0] for layer in net.conv_layers] == [32, 32, 64, 64]
    assert net.mean == pytest.approx(0.1307) and net.std == pytest.approx(0.3081)
    # Folding removes the batch norms' parameters and adds one bias per conv and the first dense.
    bn = sum(m.weight.numel() + m.bias.numel() for m in model.modules()
             if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)))
    assert net.parameters == sum(p.numel() for p in model.parameters()) - bn // 2
    x = as_input(digits_like(64))
    with torch.no_grad():
        expected = model(x)
        folded = drawing.folded_module(drawing.as_float32(net))(x)
    assert float((folded - expected).abs().max()) < 1e-5
    assert float(expected.std()) > 0.1  # the logits are not all alike (the check is not empty)


def test_dropout_and_training_mode_do_not_leak_into_the_fold() -> None:
    """Folding reads the running statistics, never the batch's: a model left in training mode
    folds to the same network."""
    model = trained_like_cnn()
    eval_net = drawing.fold_batch_norm(model)
    train_net = drawing.fold_batch_norm(model.train())
    for a, b in zip(eval_net.layers, train_net.layers):
        if a.weight is not None:
            np.testing.assert_array_equal(a.weight, b.weight)
            np.testing.assert_array_equal(a.bias, b.bias)


def test_numpy_forward_matches_torch_logits_and_every_conv_map() -> None:
    model = trained_like_cnn(1)
    net = drawing.as_float32(drawing.fold_batch_norm(model))
    images = digits_like(32, seed=1)
    logits, maps = drawing.forward(net, images.numpy())
    with torch.no_grad():
        expected = model(as_input(images))
    assert logits.dtype == np.float32 and logits.shape == (32, 10)
    assert float(np.abs(logits - expected.numpy()).max()) < 1e-4
    # Each conv layer's maps after ReLU against torch's, read with hooks on the ReLUs.
    relus = [block[2] for block in model.features if isinstance(block, nn.Sequential)]
    seen: list[torch.Tensor] = []
    handles = [r.register_forward_hook(lambda m, i, o: seen.append(o.clone())) for r in relus]
    with torch.no_grad():
        model(as_input(images))
    for handle in handles:
        handle.remove()
    assert [m.shape[1:] for m in maps] == [(32, 28, 28), (32, 28, 28), (64, 14, 14), (64, 14, 14)]
    for ours, theirs in zip(maps, seen):
        assert float(np.abs(ours - theirs.numpy()).max()) < 1e-4


def test_conv3x3_is_torchs_same_padded_cross_correlation() -> None:
    g = torch.Generator().manual_seed(2)
    x, w, b = torch.randn(2, 3, 7, 5, generator=g), torch.randn(4, 3, 3, 3, generator=g), \
        torch.randn(4, generator=g)
    ours = drawing.conv3x3(x.numpy(), w.numpy(), b.numpy())
    np.testing.assert_allclose(ours, F.conv2d(x, w, b, padding=1).numpy(), atol=1e-5)


def test_multiply_adds_of_the_stronger_cnn() -> None:
    net = drawing.fold_batch_norm(trained_like_cnn())
    convs = 9 * (1 * 32 * 28 * 28 + 32 * 32 * 28 * 28 + 32 * 64 * 14 * 14 + 64 * 64 * 14 * 14)
    assert drawing.multiply_adds(net) == convs + 64 * 7 * 7 * 256 + 256 * 10


def test_other_layers_are_refused() -> None:
    with pytest.raises(ValueError, match="3x3 same"):
        drawing.fold_batch_norm(nn.Sequential(nn.Conv2d(1, 2, 5, padding=2)))
    with pytest.raises(ValueError, match="cannot run"):
        drawing.fold_batch_norm(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.GELU()))


# --- the script asset ------------------------------------------------------------------------


def test_script_round_trip_holds_the_float16_weights_and_the_examples() -> None:
    net = drawing.fold_batch_norm(trained_like_cnn())
    half = drawing.half_rounded(net)
    images = digits_like(3).numpy()
    examples = [{"index": i, "label": i, "predicted": (i + 1) % 10, "probability": 0.5,
                 "mistake": i == 2, "pixels": images[i]} for i in range(3)]
    script = drawing.encode_pad_script(net, examples)
    assert script.startswith(f"window.{drawing.PAD_GLOBAL}={{") and script.count("\n") == 1
    decoded, shown = drawing.decode_pad_script(script)
    assert (decoded.mean, decoded.std) == (half.mean, half.std)
    for a, b in zip(decoded.layers, half.layers):
        assert (a.kind, a.relu) == (b.kind, b.relu)
        if a.weight is not None:
            np.testing.assert_array_equal(a.weight, b.weight)  # float16 values, exactly
            np.testing.assert_array_equal(a.bias, b.bias)
    for e, original in zip(shown, examples):
        np.testing.assert_array_equal(e["pixels"], original["pixels"])
        assert {k: v for k, v in e.items() if k != "pixels"} == \
            {k: v for k, v in original.items() if k != "pixels"}
    # Two bytes a parameter, base64 (4 characters per 3 bytes), plus the JSON around them.
    assert 2 * net.parameters * 4 / 3 < len(script) < 2 * net.parameters * 4 / 3 + 20_000
    with pytest.raises(ValueError):
        drawing.decode_pad_script("window.somethingElse={};")


def test_pad_examples_are_right_ones_then_the_most_confident_mistakes() -> None:
    labels = np.array([0, 1, 0, 3, 4, 5])
    logits = np.full((6, 10), 0.0)
    logits[np.arange(6), [0, 7, 0, 9, 4, 8]] = [5, 3, 5, 6, 5, 7]  # 1, 3 and 5 are wrong
    images = np.arange(6, dtype=np.uint8)[:, None, None] * np.ones((6, 28, 28), np.uint8)
    examples = drawing.pad_examples(images, labels, logits, correct=2, mistakes=2)
    # Right ones: one per digit (image 2 is a second 0), then the mistakes, most confident first.
    assert [(e["index"], e["mistake"]) for e in examples] == [(0, False), (4, False),
                                                               (5, True), (3, True)]
    assert [e["predicted"] for e in examples] == [0, 4, 8, 9]
    assert examples[2]["pixels"][0, 0] == 5 and 0 < examples[3]["probability"] < 1


# --- preprocessing ---------------------------------------------------------------------------


def test_preprocess_scales_the_box_to_twenty_and_centres_the_mass() -> None:
    ink = np.zeros((300, 300))
    ink[50:250, 120:220] = 255  # a 200 x 100 block: 20 x 10 once scaled, all full pixels
    out = drawing.preprocess(ink)
    assert out.dtype == np.uint8 and out.shape == (28, 28)
    rows, cols = np.flatnonzero(out.any(1)), np.flatnonzero(out.any(0))
    assert (rows[0], rows[-1], cols[0], cols[-1]) == (4, 23, 9, 18)
    assert (out[4:24, 9:19] == 255).all() and out.sum() == 255 * 200


def test_preprocess_averages_areas_like_average_pooling() -> None:
    """Where the box divides evenly, area averaging is average pooling."""
    g = np.random.default_rng(0)
    ink = np.zeros((260, 260))
    ink[30:230, 30:230] = g.integers(0, 256, (200, 200))
    ink[30, 30:230] = ink[229, 30:230] = ink[30:230, 30] = ink[30:230, 229] = 255  # the box
    pooled = F.avg_pool2d(torch.from_numpy(ink[30:230, 30:230])[None], 10)[0].numpy()
    out = drawing.preprocess(ink)
    mass = pooled.sum()
    cy = ((np.arange(20) + 0.5) * pooled.sum(1)).sum() / mass
    cx = ((np.arange(20) + 0.5) * pooled.sum(0)).sum() / mass
    oy, ox = int(np.floor(14 - cy + 0.5)), int(np.floor(14 - cx + 0.5))
    expected = np.zeros((28, 28))
    expected[oy:oy + 20, ox:ox + 20] = pooled
    # The same up to float rounding: a mean of a hundred integers can end in exactly .5, where
    # the last bit of either sum decides the rounding.
    difference = np.abs(out.astype(int) - np.floor(expected + 0.5))
    assert difference.max() <= 1 and (difference == 0).mean() > 0.99


def test_preprocess_keeps_the_aspect_of_a_thin_stroke_and_blank_is_black() -> None:
    ink = np.zeros((400, 400), np.uint8)
    ink[40:360, 198:202] = 255  # a "1": 320 tall, 4 wide -> 20 x 0.25 pixels once scaled
    out = drawing.preprocess(ink)
    assert np.flatnonzero(out.any(1)).size == 20 and np.flatnonzero(out.any(0)).size == 1
    assert out.max() == 64  # a quarter of a pixel's width covered: anti-aliased, not solid
    assert not drawing.preprocess(np.zeros((50, 80))).any()


def test_preprocess_moves_the_centre_of_mass_not_the_box_centre() -> None:
    ink = np.full((200, 200), 60.0)
    ink[:, 0:40] = 255  # a heavy left part: the mass sits at x = 68.5 of 200, 6.85 of 20
    out = drawing.preprocess(ink).astype(float)
    total = out.sum()
    cy = ((np.arange(28) + 0.5) * out.sum(1)).sum() / total
    cx = ((np.arange(28) + 0.5) * out.sum(0)).sum() / total
    assert abs(cy - 14) <= 0.5 and abs(cx - 14) <= 0.5
    rows, cols = np.flatnonzero(out.any(1)), np.flatnonzero(out.any(0))
    assert (rows[0], cols[0]) == (4, 7)  # centred box would start at column 4
