"""The three attention variants compared on the same block input, and the matrices whose rank is measured.

For one attention block (its q/k/v/o projection, LePE and output projection) and its input x:

- ``rala``: RALA as built (α re-weighting of the KV buffer and the output gate ``o``);
- ``plain``: the same block with α and the gate switched off: plain linear attention with the same
  ELU+1 kernel, RoPE and LePE;
- ``softmax``: softmax attention with the same projections (RoPE on q and k, LePE, gate).

Measured matrices, per variant:

- the **KV buffer** of a linear variant, per head: ``Σ_j w_j RoPE(φ(k_j))ᵀ v_j`` (d×d) with
  ``w_j = α_j`` for RALA and ``1/N`` for plain linear attention; every query reads the values through it.
  Softmax attention has no d×d buffer: each query reads the values through its own row of the N×N
  attention map ``softmax(d^-½ RoPE(q) RoPE(k)ᵀ)``. That map is measured in its place, so its rank
  is out of N, not d. (The ranks of the linear buffers bound the ranks of their N×N token-mixing
  matrices, so both say how many independent directions the attention can pass on.)
- the **output feature map** of the attention module (N×C): what the block adds to its residual
  stream before LayerScale, ``proj((attention + LePE) ⊙ o)`` (``proj(attention + LePE)`` without the gate).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ravlt.models import RALA, SoftmaxAttention, apply_rope
from ravlt.models.lean import split_heads

ATTENTIONS = ("rala", "plain", "softmax")
ATTENTION_LABELS = {"rala": "RALA", "plain": "plain linear", "softmax": "softmax"}


def block_type(attn: nn.Module) -> str:
    """``rala`` or ``softmax``: the variant a block was built as."""
    if isinstance(attn, RALA):
        return "rala"
    if isinstance(attn, SoftmaxAttention):
        return "softmax"
    raise TypeError(f"not a RAVLT attention module: {type(attn).__name__}")


def variant_module(attn: nn.Module, variant: str) -> nn.Module:
    """A copy of ``attn``'s weights inside the attention module of ``variant``."""
    dim = attn.qkvo.in_channels
    if variant == "softmax":
        module = SoftmaxAttention(dim, attn.num_heads)
    elif variant in ("rala", "plain"):
        full = variant == "rala"
        module = RALA(dim, attn.num_heads, use_alpha=full, use_gate=full)
    else:
        raise ValueError(f"unknown variant {variant!r}; choose one of {ATTENTIONS}")
    weight = attn.qkvo.weight
    module.to(device=weight.device, dtype=weight.dtype).load_state_dict(attn.state_dict())
    return module.eval()


def project_qkv(attn: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q, k, v of the block, per head, in float64."""
    q, k, v, _ = attn.qkvo(x).chunk(4, dim=1)
    return tuple(split_heads(t, attn.num_heads).double() for t in (q, k, v))


def kernel(t: torch.Tensor) -> torch.Tensor:
    """φ(t) = ELU(t) + 1, the positive feature map of RALA's linear attention."""
    return F.elu(t) + 1.0


def token_weights(q: torch.Tensor, k: torch.Tensor, scale: float, use_alpha: bool) -> torch.Tensor:
    """(B, heads, N) weights of the tokens in the KV buffer: α (sums to 1) or uniform 1/N."""
    n = k.shape[-2]
    if not use_alpha:
        return k.new_full(k.shape[:-1], 1.0 / n)
    q_mean = kernel(q).mean(dim=-2, keepdim=True)
    return torch.softmax(scale * (q_mean @ kernel(k).transpose(-1, -2)), dim=-1).squeeze(-2)


def linear_kv_buffer(q, k, v, sin, cos, scale: float, use_alpha: bool) -> torch.Tensor:
    """(B, heads, d, d) KV buffer ``Σ_j w_j RoPE(φ(k_j))ᵀ v_j`` of RALA (``use_alpha``) or plain linear
    attention. (RALA's ``k̃_j = N α_j φ(k_j)`` and its ``1/N`` cancel to the α weights.)"""
    w = token_weights(q, k, scale, use_alpha)
    k_rope = apply_rope(kernel(k), sin.to(k.dtype), cos.to(k.dtype))
    return (k_rope * w.unsqueeze(-1)).transpose(-1, -2) @ v


def softmax_attention_map(q, k, sin, cos, scale: float) -> torch.Tensor:
    """(B, heads, N, N) attention probabilities ``softmax(d^-½ RoPE(q) RoPE(k)ᵀ)``."""
    q = apply_rope(q, sin.to(q.dtype), cos.to(q.dtype))
    k = apply_rope(k, sin.to(k.dtype), cos.to(k.dtype))
    return torch.softmax(scale * q @ k.transpose(-1, -2), dim=-1)


def kv_buffers(attn: nn.Module, x, sin, cos) -> dict[str, torch.Tensor]:
    """Per variant, per head: the KV buffer (linear variants, d×d) or the attention map (softmax, N×N)."""
    q, k, v = project_qkv(attn, x)
    return {
        "rala": linear_kv_buffer(q, k, v, sin, cos, attn.scale, use_alpha=True),
        "plain": linear_kv_buffer(q, k, v, sin, cos, attn.scale, use_alpha=False),
        "softmax": softmax_attention_map(q, k, sin, cos, attn.scale),
    }


def output_maps(attn: nn.Module, x, sin, cos) -> dict[str, torch.Tensor]:
    """Per variant: the attention module's (B, N, C) output on x."""
    return {name: variant_module(attn, name)(x, sin, cos).flatten(2).transpose(1, 2) for name in ATTENTIONS}
