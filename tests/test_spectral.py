"""The spectral-normalised batched linear layer (digits/spectral.py) against autograd's form."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from digits.spectral import SpectralLinear, refine_v, spectral_linear

FLAGS = torch.tensor([True, False, True])


def layer_inputs(dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
    """x [3, 5, 7], weight [3, 7, 4], bias [3, 1, 4] needing gradients; unit v [3, 7], u [3, 4]."""
    g = torch.Generator().manual_seed(0)
    x, weight, bias = (torch.randn(*shape, generator=g, dtype=dtype).requires_grad_(True)
                       for shape in ((3, 5, 7), (3, 7, 4), (3, 1, 4)))
    u = F.normalize(torch.randn(3, 4, generator=g, dtype=dtype), dim=1)
    v = F.normalize(torch.randn(3, 7, generator=g, dtype=dtype), dim=1)
    return x, weight, bias, u, v


def reference(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, v: torch.Tensor,
              ) -> torch.Tensor:
    """torch.nn.utils.spectral_norm's form through autograd: W / sigma, sigma = u^T W^T v with
    u = normalise(W^T v) held constant (a detached copy)."""
    wt_v = torch.bmm(v[:, None, :], weight)  # [R, 1, out]
    u = F.normalize(wt_v.detach(), dim=2)
    sigma = torch.bmm(wt_v, u.transpose(1, 2))[:, 0, 0]
    scale = torch.where(FLAGS, sigma, 1.0)
    return torch.baddbmm(bias, x, weight / scale[:, None, None])


def test_output_and_gradients_equal_autograds_through_w_over_sigma() -> None:
    x, weight, bias, u, v = layer_inputs()
    ours = spectral_linear(x, weight, bias, v, FLAGS, u.clone(), iterate=False)
    theirs = reference(x, weight, bias, v)
    torch.testing.assert_close(ours, theirs)
    probe = torch.randn_like(ours)
    for a, b in zip(torch.autograd.grad((ours * probe).sum(), (x, weight, bias)),
                    torch.autograd.grad((theirs * probe).sum(), (x, weight, bias))):
        torch.testing.assert_close(a, b)
    # A run without the flag is a plain linear layer.
    torch.testing.assert_close(ours[1], torch.baddbmm(bias[1:2], x[1:2], weight[1:2])[0])


def test_gradcheck_in_float64() -> None:
    x, weight, bias, u, v = layer_inputs()
    assert torch.autograd.gradcheck(
        lambda x, w, b: SpectralLinear.apply(x, w, b, v, FLAGS, u.clone(), False)[0],
        (x, weight, bias))


def test_power_iteration_converges_to_the_largest_singular_value() -> None:
    """refine_v then a training call (which writes u) are one step of the power iteration."""
    x, weight, bias, u, v = layer_inputs()
    weight = weight.detach()
    for _ in range(50):
        refine_v(weight, u, v)
        before = u.clone()
        spectral_linear(x, weight, bias, v, FLAGS, u, iterate=True)
    assert not torch.equal(before, u)
    sigma = torch.linalg.vector_norm(torch.bmm(v[:, None, :], weight), dim=(1, 2))
    torch.testing.assert_close(sigma, torch.linalg.matrix_norm(weight, ord=2), rtol=1e-6,
                               atol=0)
    torch.testing.assert_close(u, F.normalize(torch.bmm(v[:, None, :], weight)[:, 0], dim=1))
    # Without iterating (G's step), u is left as it is, even where it is not W^T v's direction.
    u.copy_(before)
    spectral_linear(x, weight, bias, v, FLAGS, u, iterate=False)
    assert torch.equal(u, before)


def test_under_bf16_autocast_dtypes_stay_consistent() -> None:
    """The eager step's autocast: the product in bf16, sigma and the weight's gradient in
    float32, close to the float32 layer."""
    x, weight, bias, u, v = layer_inputs(torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = spectral_linear(x.bfloat16(), weight, bias, v, FLAGS, u.clone(), iterate=False)
    assert low.dtype == torch.bfloat16
    (grad_w,) = torch.autograd.grad(low.float().sum(), weight)
    assert grad_w.dtype == torch.float32
    full = spectral_linear(x, weight, bias, v, FLAGS, u.clone(), iterate=False)
    (grad_full,) = torch.autograd.grad(full.sum(), weight)
    torch.testing.assert_close(low.float(), full, rtol=0.05, atol=0.05)
    torch.testing.assert_close(grad_w, grad_full, rtol=0.05, atol=0.05)
