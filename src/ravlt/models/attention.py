"""RALA (rank-augmented linear attention) and the softmax attention of RAVLT (spec §2).

Both share the layout of the released models: one 1×1 conv producing q, k, v, o (in that order),
a 5×5 depth-wise LePE on v, the output gate ``o`` and a 1×1 output projection.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .rope import apply_rope


class _GatedAttention(nn.Module):
    """q/k/v/o projection, LePE, gate and output projection shared by both attention types."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkvo = nn.Conv2d(dim, 4 * dim, 1)
        self.lepe = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.proj = nn.Conv2d(dim, dim, 1)
        self.use_gate = True

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, heads, N, d)."""
        b, _, h, w = t.shape
        return t.reshape(b, self.num_heads, self.head_dim, h * w).transpose(-1, -2)

    def mix(self, q, k, v, sin, cos) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v, o = self.qkvo(x).chunk(4, dim=1)
        lepe = self.lepe(v)
        res = self.mix(self._heads(q), self._heads(k), self._heads(v), sin, cos)
        res = res.transpose(-1, -2).reshape(b, c, h, w).to(lepe.dtype)
        out = res + lepe
        return self.proj(out * o if self.use_gate else out)


class RALA(_GatedAttention):
    """Rank-augmented linear attention.

    ``use_alpha`` and ``use_gate`` exist for the rank analysis: switching both off gives plain linear
    attention with the same ELU+1 kernel, RoPE and LePE.
    """

    kind = "l"

    def __init__(self, dim: int, num_heads: int, use_alpha: bool = True, use_gate: bool = True):
        super().__init__(dim, num_heads)
        self.use_alpha = use_alpha
        self.use_gate = use_gate

    def mix(self, q, k, v, sin, cos):
        # α's softmax, the normaliser and the KV product accumulate in fp32 even under autocast.
        with torch.autocast(device_type=q.device.type, enabled=False):
            dtype = torch.promote_types(q.dtype, torch.float32)
            q, k, v, sin, cos = (t.to(dtype) for t in (q, k, v, sin, cos))
            n = q.shape[-2]
            q = F.elu(q) + 1.0
            k = F.elu(k) + 1.0
            if self.use_alpha:
                q_mean = q.mean(dim=-2, keepdim=True)  # (B, h, 1, d)
                alpha = torch.softmax(self.scale * (q_mean @ k.transpose(-1, -2)), dim=-1)
                k = k * (alpha.transpose(-1, -2) * n)  # (B, h, N, d)
            z = 1.0 / (q @ k.mean(dim=-2, keepdim=True).transpose(-1, -2) + 1e-6)  # (B, h, N, 1)
            kv = (apply_rope(k, sin, cos).transpose(-1, -2) @ v) / n  # (B, h, d, d)
            return (apply_rope(q, sin, cos) @ kv) * z


class SoftmaxAttention(_GatedAttention):
    """Softmax attention with RoPE on q and k, through the fused SDPA kernel (never an N×N tensor
    where a memory-efficient kernel exists)."""

    kind = "v"

    def mix(self, q, k, v, sin, cos):
        q = apply_rope(q, sin.to(q.dtype), cos.to(q.dtype))
        k = apply_rope(k, sin.to(k.dtype), cos.to(k.dtype))
        return F.scaled_dot_product_attention(q, k, v)


ATTENTION_TYPES = {"l": RALA, "v": SoftmaxAttention}
