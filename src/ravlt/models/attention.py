"""RALA (rank-augmented linear attention) and the softmax attention of RAVLT (docs/method.md §2).

Both share the layout of the released models: one 1×1 conv producing q, k, v, o (in that order),
a 5×5 depth-wise LePE on v, the output gate ``o`` and a 1×1 output projection.

The code is written for speed and keeps the numbers of the plain formulas (``tests/reference.py`` holds them
and ``tests/perf`` compares the two): heads are strided views of the projection (no copies in a
channels-last model), RoPE is one complex multiplication, RALA's ``+ 1`` of ELU(t) + 1 and its α are
folded into reductions and products instead of extra passes over the tokens, and intermediates are
updated in place when autograd is not recording them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .rope import rotate, rotation_table


def split_heads(t: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, heads, N, d): a view in both NCHW and channels-last memory."""
    b, c, h, w = t.shape
    return t.reshape(b, num_heads, c // num_heads, h * w).transpose(-1, -2)


def merge_heads(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`split_heads`."""
    return t.transpose(-1, -2).reshape(shape)


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

    def mix(self, q, k, v, sin, cos) -> torch.Tensor:  # pragma: no cover - abstract
        """(B, heads, N, d) q, k, v and (N, d) RoPE tables -> (B, heads, N, d) attention output."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
        q, k, v, o = self.qkvo(x).chunk(4, dim=1)
        lepe = self.lepe(v)
        heads = self.num_heads
        res = self.mix(split_heads(q, heads), split_heads(k, heads), split_heads(v, heads), sin, cos)
        out = split_heads(lepe, heads)  # the sum takes LePE's (channels-last) memory layout
        if lepe.requires_grad or res.requires_grad:
            out = out + res.to(out.dtype)
            if self.use_gate:
                out = out * split_heads(o, heads)
        else:
            out.add_(res)
            if self.use_gate:
                out.mul_(split_heads(o, heads))
        return self.proj(merge_heads(out, lepe.shape))


CORE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def kv_product(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``q @ (kᵀ @ v)``, RALA's two O(N·d²) products, in the precision of q, or with ``dtype`` operands
    (bf16/fp16: the GPU's matrix units, products accumulated in fp32) and the result back in q's type."""
    if dtype == torch.float32:
        return q @ (k.transpose(-1, -2) @ v)
    return (q.to(dtype) @ (k.transpose(-1, -2).to(dtype) @ v.to(dtype))).to(q.dtype)


class RALA(_GatedAttention):
    """Rank-augmented linear attention.

    ``use_alpha`` and ``use_gate`` exist for the rank analysis: switching both off gives plain linear
    attention with the same ELU+1 kernel, RoPE and LePE.

    ``core_dtype`` (an option, measured by ``python -m ravlt.bench --suite cuda``): float32 (the default)
    keeps the whole core in fp32 (fp64 for an fp64 model); bfloat16 / float16 runs the two O(N·d²)
    products (:func:`kv_product`) with low-precision operands and fp32 accumulation, while α's softmax,
    the normaliser, ELU and RoPE stay fp32.
    """

    kind = "l"

    def __init__(
        self,
        dim: int,
        num_heads: int,
        use_alpha: bool = True,
        use_gate: bool = True,
        core_dtype: torch.dtype = torch.float32,
    ):
        super().__init__(dim, num_heads)
        if core_dtype not in CORE_DTYPES:
            raise ValueError(f"core_dtype must be one of {', '.join(map(str, CORE_DTYPES))}, got {core_dtype}")
        self.use_alpha = use_alpha
        self.use_gate = use_gate
        self.core_dtype = core_dtype

    def mix(self, q, k, v, sin, cos):
        # α's softmax, the normaliser and the KV product accumulate in fp32 even under autocast.
        with torch.autocast(device_type=q.device.type, enabled=False):
            dtype = torch.promote_types(q.dtype, torch.float32)
            table = rotation_table(sin, cos, dtype)
            # ELU of q and k in one pass over one fresh contiguous (2, B, h, N, d) tensor (ELU is several
            # times slower on strided views). φ(t) = ELU(t) + 1 is kept as ELU(t): every use below adds
            # the 1 where it costs nothing.
            qk = F.elu_(torch.stack((q, k)).to(dtype))
            e_q, e_k = qk.unbind(0)
            v = v.to(dtype)
            if self.use_alpha:
                q_mean = e_q.mean(dim=-2, keepdim=True) + 1.0  # mean of φ(q), (B, h, 1, d)
                # softmax_N(scale·q̄·φ(k_j)) = softmax_N(scale·q̄·ELU(k_j)): the q̄·1 term is constant in j
                alpha = torch.softmax(e_k @ (self.scale * q_mean).transpose(-1, -2), dim=-2)  # (B, h, N, 1)
                k_mean = alpha.transpose(-1, -2) @ e_k + 1.0  # mean of k̃ = Σ_j α_j φ(k_j), (B, h, 1, d)
                # Σ_j RoPE(k̃_j)ᵀ v_j / N with k̃_j = N α_j φ(k_j): the N cancels, α moves onto v
                v = alpha * v
            else:
                k_mean = e_k.mean(dim=-2, keepdim=True) + 1.0
                v = v / q.shape[-2]
            # z = 1 / (φ(q)·k̄ + 1e-6) with φ(q)·k̄ = ELU(q)·k̄ + Σ k̄
            denom = e_q @ k_mean.transpose(-1, -2) + (k_mean.sum(-1, keepdim=True) + 1e-6)  # (B, h, N, 1)
            rope_q, rope_k = rotate(qk, table, add_one=True).unbind(0)  # RoPE(φ(q)), RoPE(φ(k))
            num = kv_product(rope_q, rope_k, v, self.core_dtype)
            return num.div_(denom) if not num.requires_grad else num / denom


class SoftmaxAttention(_GatedAttention):
    """Softmax attention with RoPE on q and k, through the fused SDPA kernel (never an N×N tensor
    where a memory-efficient kernel exists)."""

    kind = "v"

    def mix(self, q, k, v, sin, cos):
        dtype = torch.promote_types(q.dtype, torch.float32)
        table = rotation_table(sin, cos, dtype)
        q = rotate(q.to(dtype), table).to(v.dtype)
        k = rotate(k.to(dtype), table).to(v.dtype)
        return F.scaled_dot_product_attention(q, k, v)


ATTENTION_TYPES = {"l": RALA, "v": SoftmaxAttention}
