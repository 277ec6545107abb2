"""digits.augment: shape and range kept, exact shifts, seeded reproducibility, identity at zero."""

from __future__ import annotations

import torch

from digits.augment import RandomAffine, affine, random_affine


def batch(n: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def test_shape_dtype_and_range_are_kept() -> None:
    x = batch()
    y = random_affine(x, torch.Generator().manual_seed(1), max_shift=2, max_degrees=10)
    assert y.shape == x.shape and y.dtype == x.dtype
    # Bilinear weights are a convex combination, zero fill adds zeros: stays in [0, 1].
    assert y.min() >= 0 and y.max() <= 1 + 1e-6
    assert not torch.equal(x, y)


def test_seeded_generator_reproduces_and_different_seeds_differ() -> None:
    x = batch()
    aug = RandomAffine(max_shift=2, max_degrees=10)
    a = aug(x, torch.Generator().manual_seed(5))
    b = aug(x, torch.Generator().manual_seed(5))
    c = aug(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_each_image_gets_its_own_transform() -> None:
    one = batch(1)
    x = one.repeat(8, 1, 1, 1)
    y = random_affine(x, torch.Generator().manual_seed(0))
    assert len({tuple(img.flatten()[:200].tolist()) for img in y}) == 8


def test_zero_magnitude_is_identity() -> None:
    x = batch()
    y = random_affine(x, torch.Generator().manual_seed(0), max_shift=0, max_degrees=0)
    # Not bit-exact: normalising and unnormalising the grid costs about 1e-6 px of rounding.
    assert torch.allclose(x, y, atol=1e-5)


def test_integer_shift_moves_a_pixel_exactly() -> None:
    x = torch.zeros(2, 1, 28, 28)
    x[:, 0, 10, 12] = 1.0
    y = affine(x, torch.zeros(2), torch.tensor([[1.0, 0.0], [-2.0, 3.0]]))
    assert y[0, 0, 10, 13] == 1 and y[0].sum() == 1  # one pixel to the right
    assert y[1, 0, 13, 10] == 1 and y[1].sum() == 1  # two left, three down


def test_quarter_turn_about_the_centre() -> None:
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 10, 12] = 1.0  # (dx, dy) = (-1.5, -3.5) from the centre (13.5, 13.5)
    y = affine(x, torch.tensor([90.0]), torch.zeros(1, 2))
    # Clockwise as displayed: (dx, dy) -> (-dy, dx) = (3.5, -1.5) -> row 12, column 17.
    assert torch.isclose(y[0, 0, 12, 17], torch.tensor(1.0), atol=1e-5)
    assert torch.isclose(y.sum(), torch.tensor(1.0), atol=1e-5)
