"""What the CPU can do, where it changes results: the engine's cache key and `digits` ask here."""

from __future__ import annotations

import torch


def cpu_bf16() -> bool:
    """True where the CPU multiplies bf16 natively (AVX512-BF16 or AMX)."""
    # Private helpers of torch.cpu (present since torch 2.1); without them, assume no bf16.
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def cpu_capability() -> str:
    """torch's CPU kernel level (e.g. "AVX512"), with "+bf16" where bf16 is native."""
    return torch.backends.cpu.get_cpu_capability() + ("+bf16" if cpu_bf16() else "")
