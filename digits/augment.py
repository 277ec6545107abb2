"""Data augmentation on the device: small random affine maps (shift, rotation) per image.

The batch never leaves the device: one `affine_grid` + `grid_sample` warps all images at once.
Only the 3 random numbers per image are drawn on the CPU from the caller's generator and then
moved, so a seed gives the same transforms on every device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


def affine_matrices(degrees: torch.Tensor, shifts: torch.Tensor, height: int,
                    width: int) -> torch.Tensor:
    """theta [B, 2, 3] for F.affine_grid: turn the content by `degrees` about the centre
    (positive = clockwise as displayed, rows going down), then move it by `shifts` [B, 2] =
    (dx right, dy down) in pixels."""
    angle = torch.deg2rad(degrees)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # affine_grid maps each output location to the input location it samples from, in
    # coordinates normalised to [-1, 1], so the inverse transform goes in theta: rotate by
    # -angle and shift by -shift (one pixel = 2 / size in normalised units).
    tx = -2.0 * shifts[:, 0] / width
    ty = -2.0 * shifts[:, 1] / height
    theta = torch.stack([
        torch.stack([cos, sin, cos * tx + sin * ty], dim=1),
        torch.stack([-sin, cos, -sin * tx + cos * ty], dim=1),
    ], dim=1)
    return theta


def affine(images: torch.Tensor, degrees: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Warp float images [B, C, H, W] by per-image rotations and shifts (bilinear, zero fill)."""
    _, _, height, width = images.shape
    theta = affine_matrices(degrees, shifts, height, width).to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    # Zero fill is the background: inputs are in [0, 1] before the model standardises them.
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def random_affine(images: torch.Tensor, generator: torch.Generator, max_shift: float = 2.0,
                  max_degrees: float = 10.0) -> torch.Tensor:
    """Each image shifted by up to ±max_shift px per axis and rotated by up to ±max_degrees."""
    batch = images.shape[0]
    # Drawn on the CPU from the caller's generator: the same draws on every device.
    u = torch.rand(batch, 3, generator=generator).mul_(2).sub_(1)
    if images.device.type == "cuda":
        # A copy from pageable memory would wait for the GPU to finish the previous step;
        # from pinned memory it is queued behind it and the CPU runs ahead.
        u = u.pin_memory().to(images.device, non_blocking=True)
    return affine(images, u[:, 0] * max_degrees, u[:, 1:] * max_shift)


@dataclass(frozen=True)
class RandomAffine:
    """The augmentation as a callable for `digits.training.train(augment=...)`."""

    max_shift: float = 2.0  # pixels, each axis: 2 px is 7 % of the 28 px image
    max_degrees: float = 10.0

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment one float batch [B, 1, 28, 28]."""
        return random_affine(images, generator, self.max_shift, self.max_degrees)

