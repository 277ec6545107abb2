"""A batched linear layer with spectral normalisation, in the fewest kernels a GAN step allows.

Spectral normalisation (Miyato et al. 2018) divides a weight by its largest singular value,
estimated as torch.nn.utils.spectral_norm does: one power-iteration step per training call on
singular vectors u, v kept between calls, sigma = u^T W^T v with u = W^T v / |W^T v| held
constant, which equals |W^T v| in value and gradient. Here every run r of a batched model has
its weight W_r [in, out], its vectors and a flag saying whether its weight is normalised.

Why not autograd over `W / sigma`: that divides the whole weight [R, in, out] and its backward
divides and multiplies it again. Counted with torch.profiler on the CPU (five runs, D's four
layers of 794 -> 1,024 -> 512 -> 256 -> 1, one forward and backward), switching spectral
normalisation on added 104 kernel launches that way, and 68 with `SpectralLinear`, which scales
the product [R, B, out] instead (x (W / s) = (x W) / s) and writes its backward by hand: with
g = dL/dy, dL/dx = g W^T / s, dL/db = the sum of g over the batch, and dL/dW = x^T g / s, less
(g . x W) / s^3 v (W^T v)^T for a flagged run (through s; an unflagged run's s is a constant 1).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

EPS = 1e-12  # F.normalize's: keeps a zero vector from dividing by zero


def refine_v(weight: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> None:
    """The power iteration's first half, in place: v = normalise(W u); weight [R, in, out]."""
    # In the weight's precision (float32) under autocast too, as sigma below.
    with torch.no_grad(), torch.autocast(weight.device.type, enabled=False):
        w_u = torch.bmm(weight, u[:, :, None])[:, :, 0]  # [R, in]
        F.normalize(w_u, dim=1, eps=EPS, out=v)  # written into the buffer: no copy kernel


class SpectralLinear(torch.autograd.Function):
    """y = x (W / s) + b per run, s = |W^T v| for the flagged runs and 1 for the others."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                v: torch.Tensor, flags: torch.Tensor, u: torch.Tensor, iterate: bool
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [R, B, in], weight [R, in, out], bias [R, 1, out], v [R, in], flags [R] bool,
        u [R, out] -> (y [R, B, out], u); with `iterate`, the power iteration's second half
        first writes normalise(W^T v) into u."""
        ctx.set_materialize_grads(False)  # u's gradient stays None: no zeros kernel for it
        with torch.autocast(x.device.type, enabled=False):  # dtypes chosen below, explicitly
            wt_v = torch.bmm(v[:, None, :], weight)  # [R, 1, out], the weight's precision
            norm = torch.linalg.vector_norm(wt_v, dim=2, keepdim=True)  # [R, 1, 1]
            if iterate:
                torch.div(wt_v[:, 0], norm[:, 0].clamp_min(EPS), out=u)
                ctx.mark_dirty(u)
            ctx.mark_non_differentiable(u)
            scale = torch.where(flags[:, None, None], norm, 1.0)
            # The product in the activations' precision (bf16 under autocast, as nn.Linear).
            xw = torch.bmm(x, weight.to(x.dtype))
            ctx.save_for_backward(x, weight, v, flags, wt_v, scale, xw)
            ctx.bias_dtype = bias.dtype
            # Scaled and shifted in float32 (a no-op cast without autocast).
            return torch.addcdiv(bias, xw, scale).to(xw.dtype), u

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, _grad_u: torch.Tensor | None
                 ) -> tuple[torch.Tensor | None, ...]:
        """Gradients of x, the weight and the bias (see the module doc); none of the rest."""
        x, weight, v, flags, wt_v, scale, xw = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        if grad is None:  # no gradient reached y (grads are not materialised, see forward)
            return grad_x, grad_w, grad_b, None, None, None, None
        with torch.autocast(x.device.type, enabled=False):
            g = (grad / scale).to(xw.dtype)  # dL/d(xW), divided in float32
            if need_x:
                grad_x = torch.bmm(g, weight.to(g.dtype).transpose(1, 2)).to(x.dtype)
            if need_w:
                grad_w = torch.bmm(x.transpose(1, 2).to(g.dtype), g).to(weight.dtype)
                # Through s: dL/ds = -(g . xW) / s and ds/dW = v (W^T v / s)^T where flagged.
                dot = torch.bmm(g.reshape(len(g), 1, -1), xw.reshape(len(g), -1, 1).to(g.dtype))
                k = torch.where(flags[:, None, None], dot.to(scale.dtype) / scale.square(), 0.0)
                grad_w = torch.baddbmm(grad_w, v[:, :, None], wt_v * k, alpha=-1)
            if need_b:
                grad_b = grad.sum(1, keepdim=True).to(ctx.bias_dtype)
        return grad_x, grad_w, grad_b, None, None, None, None


def spectral_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, v: torch.Tensor,
                    flags: torch.Tensor, u: torch.Tensor, iterate: bool) -> torch.Tensor:
    """The layer's output, through SpectralLinear (see the class)."""
    return SpectralLinear.apply(x, weight, bias, v, flags, u, iterate)[0]
