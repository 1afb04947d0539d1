"""The plain RAVLT forward pass: the formulas of docs/method.md §2–§4 written out directly, NCHW, no fusions.

The yardstick for the fast model in ``ravlt.py`` / ``attention.py``: it reads the weights of a
:class:`~ravlt.models.RAVLT` (whatever state dict was loaded into it) and computes the same outputs the
obvious way — ``x + DWConv(x)`` as two steps, LayerScale and DropPath as written, φ = ELU + 1
materialised, ``k̃ = N·α·φ(k)``, RoPE as ``x·cos θ + rot(x)·sin θ``. ``tests/perf`` holds the fast
model to it. Drop path uses the block's own ``DropPath`` module, so with the same seed both draw the
same masks.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ravlt.models.attention import RALA, SoftmaxAttention
from ravlt.models.lean import split_heads
from ravlt.models.ravlt import RAVLT, RAVLTBlock
from ravlt.models.rope import apply_rope


def rala_mix(attn: RALA, q, k, v, sin, cos) -> torch.Tensor:
    """Spec §2 per head: (B, heads, N, d) q, k, v -> (B, heads, N, d), in fp32 at least."""
    with torch.autocast(device_type=q.device.type, enabled=False):
        dtype = torch.promote_types(q.dtype, torch.float32)
        q, k, v, sin, cos = (t.to(dtype) for t in (q, k, v, sin, cos))
        n = q.shape[-2]
        q = F.elu(q) + 1.0
        k = F.elu(k) + 1.0
        if attn.use_alpha:
            q_mean = q.mean(dim=-2, keepdim=True)
            alpha = torch.softmax(attn.scale * (q_mean @ k.transpose(-1, -2)), dim=-1)
            k = k * (alpha.transpose(-1, -2) * n)
        z = 1.0 / (q @ k.mean(dim=-2, keepdim=True).transpose(-1, -2) + 1e-6)
        kv = (apply_rope(k, sin, cos).transpose(-1, -2) @ v) / n
        return (apply_rope(q, sin, cos) @ kv) * z


def softmax_mix(attn: SoftmaxAttention, q, k, v, sin, cos) -> torch.Tensor:
    q = apply_rope(q, sin.to(q.dtype), cos.to(q.dtype))
    k = apply_rope(k, sin.to(k.dtype), cos.to(k.dtype))
    return F.scaled_dot_product_attention(q, k, v)


def attention(attn: nn.Module, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    q, k, v, o = attn.qkvo(x).chunk(4, dim=1)
    lepe = attn.lepe(v)
    mix = rala_mix if isinstance(attn, RALA) else softmax_mix
    res = mix(attn, *(split_heads(t, attn.num_heads) for t in (q, k, v)), sin, cos)
    res = res.transpose(-1, -2).reshape(b, c, h, w).to(lepe.dtype)
    out = res + lepe
    return attn.proj(out * o if attn.use_gate else out)


def layer_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return norm.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def ffn(ffn_: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = F.gelu(ffn_.fc1(x))
    x = x + ffn_.dwconv(x)
    return ffn_.fc2(x)


def block(blk: RAVLTBlock, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    x = x + blk.pos(x)
    x = x + blk.drop_path(blk.gamma_1 * attention(blk.attn, layer_norm(blk.norm1, x), sin, cos))
    return x + blk.drop_path(blk.gamma_2 * ffn(blk.ffn, layer_norm(blk.norm2, x)))


def stem(model: RAVLT, x: torch.Tensor) -> torch.Tensor:
    for layer in model.patch_embed.proj:
        x = F.gelu(x) if isinstance(layer, nn.GELU) else layer(x)
    return x


def stage_outputs(model: RAVLT, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(final feature map, each stage's output before its downsampling)."""
    x = stem(model, x)
    outputs = []
    for stage in model.layers:
        sin, cos = stage.RoPE(x.shape[-2], x.shape[-1])
        for blk in stage.blocks:
            x = block(blk, x, sin, cos)
        outputs.append(x)
        if stage.downsample is not None:
            x = stage.downsample.norm(stage.downsample.reduction(x))
    return x, outputs


def forward(model: RAVLT, x: torch.Tensor) -> torch.Tensor:
    """Logits of ``model`` on ``x`` (or pre-logits / features as its head is configured)."""
    features, _ = stage_outputs(model, x)
    return model.forward_head(features) if model.with_head else features
