"""2-D rotary position embedding (RoPE) as released with RAVLT (docs/method.md §4).

Two equivalent ways to apply it:

- :func:`apply_rope` — the formula as written, ``x·cos θ + rot(x)·sin θ``; the plain reference.
- :func:`rotate` — the fast path. Both channels of a pair share one angle, so RoPE is a complex
  multiplication ``(x_{2i} + i·x_{2i+1}) · e^{iθ_i}``: one kernel, no pair-swapping copies.
"""
from __future__ import annotations

import torch
from torch import nn


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """Map each adjacent channel pair (x0, x1) to (-x1, x0)."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    return torch.stack((-x2, x1), dim=-1).flatten(-2)


def apply_rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """RoPE(x) = x·cos θ + rot(x)·sin θ; x is (..., N, d), sin/cos are (N, d)."""
    return x * cos + rotate_pairs(x) * sin


def rotation_table(sin: torch.Tensor, cos: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The table :func:`rotate` reads, from a (N, d) sin/cos pair whose channels come in equal pairs (as
    :class:`RoPE2d` makes them), in real ``dtype`` (float32 or float64): ``e^{iθ}`` as (N, d/2) complex,
    or, under ``torch.compile`` (Inductor generates no complex code), (N, d/2, 2) real (cos θ, sin θ)."""
    if torch.compiler.is_compiling():
        return torch.stack((cos[:, 0::2], sin[:, 0::2]), dim=-1).to(dtype)
    return torch.complex(cos[:, 0::2].to(dtype), sin[:, 0::2].to(dtype))


def _as_complex(x: torch.Tensor) -> torch.Tensor:
    pairs = x.unflatten(-1, (-1, 2))
    if pairs.storage_offset() % 2 or any(s % 2 for s in pairs.stride()[:-1]):
        pairs = pairs.contiguous()
    return torch.view_as_complex(pairs)


def rotate(x: torch.Tensor, table: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """RoPE(x), or RoPE⁻¹(x) = RoPEᵀ(x) with ``inverse`` (a backward's rotation), through ``table`` from
    :func:`rotation_table`; x is real (..., N, d) in the real type of ``table``."""
    if not table.is_complex():  # real arithmetic for torch.compile, which fuses it into one kernel
        real, imag = x.unflatten(-1, (-1, 2)).unbind(-1)
        cos, sin = table.unbind(-1)
        if inverse:
            sin = -sin
        return torch.stack((real * cos - imag * sin, real * sin + imag * cos), dim=-1).flatten(-2)
    out = _as_complex(x) * (table.conj() if inverse else table)
    return torch.view_as_real(out).flatten(-2)


class RoPE2d(nn.Module):
    """Sin/cos tables of the 2-D RoPE for one stage.

    The angle buffer (``d/2`` values: ``1/10000^linspace(0, 1, d/4)``, each repeated twice) is part of
    the released checkpoints. The first half of θ comes from the row index, the second from the column.
    Tables are computed once per feature-map size per forward and shared by all blocks of the stage.
    """

    def __init__(self, head_dim: int):
        super().__init__()
        if head_dim % 4:
            raise ValueError(f"2-D RoPE needs a head dim divisible by 4, got {head_dim}")
        angle = 1.0 / (10000 ** torch.linspace(0, 1, head_dim // 4))
        self.register_buffer("angle", angle.repeat_interleave(2))

    def forward(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        return rope_tables(self.angle, height, width)


@torch.fx.wrap  # FX tracing records one call (the dtype choice below is not traceable)
def rope_tables(angle: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, d) sin and cos of θ for a height × width map, row-major, in float32 (float64 for a float64 angle)."""
    angle = angle if angle.dtype == torch.float64 else angle.float()
    theta_h = torch.arange(height, device=angle.device, dtype=angle.dtype)[:, None] * angle
    theta_w = torch.arange(width, device=angle.device, dtype=angle.dtype)[:, None] * angle
    theta = torch.cat(
        (
            theta_h[:, None, :].expand(height, width, -1),
            theta_w[None, :, :].expand(height, width, -1),
        ),
        dim=-1,
    ).flatten(0, 1)
    return theta.sin(), theta.cos()
