"""2-D rotary position embedding (RoPE) as released with RAVLT (spec §4)."""
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
        angle = self.angle if self.angle.dtype == torch.float64 else self.angle.float()
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
