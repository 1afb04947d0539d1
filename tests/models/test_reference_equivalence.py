"""RALA and softmax attention against a deliberately naive reference written from docs/method.md §2 and §4.

The reference shares no code with ``ravlt.models``: explicit per-token sums, its own RoPE angles,
its own head split. Everything runs in float64.
"""
import math

import pytest
import torch
import torch.nn.functional as F

from ravlt.models.attention import RALA, SoftmaxAttention
from ravlt.models.rope import RoPE2d


@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def spec_theta(height, width, d):
    """θ for every token (row-major), docs/method.md §4."""
    base = [1.0 / 10000 ** (i / (d // 4 - 1)) if d // 4 > 1 else 1.0 for i in range(d // 4)]
    angle = torch.tensor([a for a in base for _ in range(2)])
    rows = []
    for h in range(height):
        for w in range(width):
            rows.append(torch.cat([h * angle, w * angle]))
    return torch.stack(rows)  # (N, d)


def spec_rope(x, theta):
    """x (N, d): x·cos θ + rot(x)·sin θ with rot(x)_{2i} = -x_{2i+1}, rot(x)_{2i+1} = x_{2i}."""
    rot = torch.empty_like(x)
    rot[:, 0::2] = -x[:, 1::2]
    rot[:, 1::2] = x[:, 0::2]
    return x * theta.cos() + rot * theta.sin()


def projections(attn, x):
    """q, k, v, o of shape (B, N, C) and lepe (B, N, C) computed from the raw weights."""
    b, c, h, w = x.shape
    tokens = x.flatten(2).transpose(1, 2)  # (B, N, C)
    qkvo = torch.einsum("bnc,oc->bno", tokens, attn.qkvo.weight[:, :, 0, 0]) + attn.qkvo.bias
    q, k, v, o = qkvo.split(c, dim=-1)
    v_map = v.transpose(1, 2).reshape(b, c, h, w)
    lepe = F.conv2d(v_map, attn.lepe.weight, attn.lepe.bias, padding=2, groups=c).flatten(2).transpose(1, 2)
    return q, k, v, o, lepe


def output(attn, merged, lepe, o, x_shape):
    b, c, h, w = x_shape
    y = (merged + lepe) * o
    y = torch.einsum("bnc,oc->bno", y, attn.proj.weight[:, :, 0, 0]) + attn.proj.bias
    return y.transpose(1, 2).reshape(b, c, h, w)


def reference_rala(attn, x, use_rope=True):
    b, c, h, w = x.shape
    n, heads = h * w, attn.num_heads
    d = c // heads
    theta = spec_theta(h, w, d) if use_rope else torch.zeros(n, d)
    q, k, v, o, lepe = projections(attn, x)
    merged = torch.zeros(b, n, c)

    def elu1(t):  # ELU(t) + 1
        return torch.where(t > 0, t + 1, torch.exp(t))

    for bi in range(b):
        for hd in range(heads):
            sl = slice(hd * d, (hd + 1) * d)
            pq, pk, vv = elu1(q[bi, :, sl]), elu1(k[bi, :, sl]), v[bi, :, sl]
            q_bar = sum(pq[i] for i in range(n)) / n
            logits = torch.stack([(q_bar * pk[j]).sum() / math.sqrt(d) for j in range(n)])
            alpha = torch.exp(logits - logits.max())
            alpha = alpha / alpha.sum()
            k_t = torch.stack([pk[j] * alpha[j] * n for j in range(n)])
            rq, rk = spec_rope(pq, theta), spec_rope(k_t, theta)
            kv = sum(torch.outer(rk[j], vv[j]) for j in range(n)) / n
            k_mean = k_t.sum(0) / n
            for i in range(n):
                z = 1.0 / ((pq[i] * k_mean).sum() + 1e-6)
                merged[bi, i, sl] = (rq[i] @ kv) * z
    return output(attn, merged, lepe, o, x.shape)


def reference_softmax(attn, x, use_rope=True):
    b, c, h, w = x.shape
    n, heads = h * w, attn.num_heads
    d = c // heads
    theta = spec_theta(h, w, d) if use_rope else torch.zeros(n, d)
    q, k, v, o, lepe = projections(attn, x)
    merged = torch.zeros(b, n, c)
    for bi in range(b):
        for hd in range(heads):
            sl = slice(hd * d, (hd + 1) * d)
            rq, rk = spec_rope(q[bi, :, sl], theta), spec_rope(k[bi, :, sl], theta)
            for i in range(n):
                s = torch.stack([(rq[i] * rk[j]).sum() / math.sqrt(d) for j in range(n)])
                p = torch.exp(s - s.max())
                p = p / p.sum()
                merged[bi, i, sl] = sum(p[j] * v[bi, j, sl] for j in range(n))
    return output(attn, merged, lepe, o, x.shape)


def randomise(module):
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return module


def tables(h, w, d, use_rope):
    if use_rope:
        return RoPE2d(d).double()(h, w)
    return torch.zeros(h * w, d), torch.ones(h * w, d)


@pytest.mark.parametrize("use_rope", [True, False])
@pytest.mark.parametrize("dim,heads,hw", [(16, 2, (3, 5)), (8, 1, (4, 4))])
def test_rala_matches_spec_reference(use_rope, dim, heads, hw):
    attn = randomise(RALA(dim, heads)).double()
    x = torch.randn(2, dim, *hw)
    sin, cos = tables(*hw, dim // heads, use_rope)
    got = attn(x, sin, cos)
    want = reference_rala(attn, x, use_rope)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("use_rope", [True, False])
def test_softmax_attention_matches_spec_reference(use_rope):
    attn = randomise(SoftmaxAttention(16, 2)).double()
    x = torch.randn(2, 16, 3, 4)
    sin, cos = tables(3, 4, 8, use_rope)
    torch.testing.assert_close(attn(x, sin, cos), reference_softmax(attn, x, use_rope), rtol=1e-6, atol=1e-6)


def test_rope_tables_follow_spec():
    sin, cos = RoPE2d(16).double()(3, 5)
    theta = spec_theta(3, 5, 16)
    torch.testing.assert_close(sin, theta.sin())
    torch.testing.assert_close(cos, theta.cos())


def test_rala_without_alpha_and_gate_is_plain_linear_attention():
    """The rank analysis' 'plain' variant: uniform α (k̃ = φ(k)) and no output gate."""
    attn = randomise(RALA(8, 2, use_alpha=False, use_gate=False)).double()
    x = torch.randn(1, 8, 3, 3)
    sin, cos = tables(3, 3, 4, True)
    theta = spec_theta(3, 3, 4)
    q, k, v, o, lepe = projections(attn, x)

    def elu1(t):
        return torch.where(t > 0, t + 1, torch.exp(t))

    merged = torch.zeros(1, 9, 8)
    for hd in range(2):
        sl = slice(hd * 4, hd * 4 + 4)
        pq, pk, vv = elu1(q[0, :, sl]), elu1(k[0, :, sl]), v[0, :, sl]
        kv = spec_rope(pk, theta).T @ vv / 9
        z = 1.0 / (pq @ pk.mean(0) + 1e-6)
        merged[0, :, sl] = (spec_rope(pq, theta) @ kv) * z[:, None]
    want = output(attn, merged, lepe, torch.ones_like(o), x.shape)
    torch.testing.assert_close(attn(x, sin, cos), want, rtol=1e-6, atol=1e-6)
