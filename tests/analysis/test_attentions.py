"""The three attention variants of the rank analysis against the RALA / softmax modules and naive formulas."""
import pytest
import torch
import torch.nn.functional as F

from ravlt.analysis.attentions import (
    kv_buffers,
    linear_kv_buffer,
    project_qkv,
    split_heads,
    token_weights,
    variant_module,
)
from ravlt.analysis.spectrum import effective_rank, numerical_rank, singular_values
from ravlt.models import RALA, RoPE2d, SoftmaxAttention, apply_rope

DIM, HEADS, H, W = 32, 2, 5, 6


def block_input(batch=2, dtype=torch.float64):
    sin, cos = RoPE2d(DIM // HEADS)(H, W)
    return torch.randn(batch, DIM, H, W, dtype=dtype), sin.to(dtype), cos.to(dtype)


def rala(**flags) -> RALA:
    attn = RALA(DIM, HEADS, **flags).double().eval()
    with torch.no_grad():  # weights large enough that α is far from uniform
        attn.qkvo.weight.normal_(0, 0.3)
        attn.qkvo.bias.normal_(0, 0.3)
    return attn


def naive_plain_linear_attention(attn, x, sin, cos):
    """out_i = Σ_j <RoPE(φ(q_i)), RoPE(φ(k_j))> v_j / Σ_j <φ(q_i), φ(k_j)>, token pair by token pair,
    plus LePE, through the output projection; no α, no gate."""
    q, k, v, _ = attn.qkvo(x).chunk(4, dim=1)
    lepe = attn.lepe(v)
    q, k, v = (split_heads(t, HEADS) for t in (q, k, v))
    phi_q, phi_k = F.elu(q) + 1, F.elu(k) + 1
    rq, rk = apply_rope(phi_q, sin, cos), apply_rope(phi_k, sin, cos)
    out = torch.zeros_like(v)
    n = H * W
    for i in range(n):
        num = sum((rq[..., i, :] * rk[..., j, :]).sum(-1, keepdim=True) * v[..., j, :] for j in range(n))
        den = sum((phi_q[..., i, :] * phi_k[..., j, :]).sum(-1, keepdim=True) for j in range(n))
        out[..., i, :] = num / den
    out = out.transpose(-1, -2).reshape(x.shape)
    return attn.proj(out + lepe)


def test_alpha_and_gate_off_is_plain_linear_attention():
    x, sin, cos = block_input()
    built = rala()  # α and gate on, as in the model
    plain = variant_module(built, "plain")
    assert (plain.use_alpha, plain.use_gate) == (False, False)
    with torch.no_grad():
        expected = naive_plain_linear_attention(built, x, sin, cos)
        assert torch.allclose(plain(x, sin, cos), expected, rtol=1e-6, atol=1e-6)  # 1e-6: the normaliser's eps
        assert not torch.allclose(built(x, sin, cos), expected, rtol=1e-3)


@pytest.mark.parametrize("use_alpha", [True, False])
def test_kv_buffer_is_the_one_the_module_reads(use_alpha):
    """RoPE(φ(q)) · KV / (φ(q) · Σ_j w_j φ(k_j)) with our buffer reproduces RALA's own attention."""
    x, sin, cos = block_input()
    attn = rala(use_alpha=use_alpha)
    with torch.no_grad():
        q, k, v = project_qkv(attn, x)
        kv = linear_kv_buffer(q, k, v, sin, cos, attn.scale, use_alpha)
        w = token_weights(q, k, attn.scale, use_alpha)
        z = (F.elu(q) + 1) @ ((F.elu(k) + 1) * w.unsqueeze(-1)).sum(-2, keepdim=True).transpose(-1, -2)
        ours = apply_rope(F.elu(q) + 1, sin, cos) @ kv / (z + 1e-6)
        assert torch.allclose(ours, attn.mix(q, k, v, sin, cos), rtol=1e-6, atol=1e-9)
    assert kv.shape == (2, HEADS, DIM // HEADS, DIM // HEADS)
    assert torch.allclose(w.sum(-1), torch.ones(2, HEADS, dtype=w.dtype))


def test_softmax_map_rows_are_the_attention_weights():
    x, sin, cos = block_input()
    attn = SoftmaxAttention(DIM, HEADS).double().eval()
    with torch.no_grad():
        q, k, v = project_qkv(attn, x)
        probs = kv_buffers(attn, x, sin, cos)["softmax"]
        assert torch.allclose(probs @ v, attn.mix(q, k, v, sin, cos), atol=1e-10)
        # a softmax-built block analysed as softmax is the block itself
        assert torch.allclose(variant_module(attn, "softmax")(x, sin, cos), attn(x, sin, cos))
    assert probs.shape == (2, HEADS, H * W, H * W)


def salient_tokens(batch, dim, height, width, salient, amplitude=2.0, noise=0.1):
    """Features like those of a photograph: one shared background vector with small per-token noise, and a
    few salient tokens at random positions with their own, larger, random features."""
    x = torch.randn(batch, dim, 1, 1) + noise * torch.randn(batch, dim, height, width)
    x = x.flatten(2)
    for b in range(batch):
        where = torch.randperm(height * width)[:salient]
        x[b, :, where] = amplitude * torch.randn(dim, salient)
    return x.view(batch, dim, height, width)


def test_rala_raises_the_kv_rank_on_random_salient_tokens():
    """RALA's query-aware weights lift the salient tokens out of the background, so its KV buffer has more
    significant directions than plain linear attention's, which the repeated background dominates.

    (On i.i.d. Gaussian tokens, with nothing to single out, α does not raise the rank; it can lower it by
    concentrating on a few tokens. The rank gain is a property of structured features.)
    """
    torch.manual_seed(0)
    attn = RALA(64, 1).eval()  # the model's own initialisation
    sin, cos = RoPE2d(64)(14, 14)
    x = salient_tokens(8, 64, 14, 14, salient=16)
    with torch.no_grad():
        buffers = kv_buffers(attn, x, sin, cos)
    sv_rala, sv_plain = singular_values(buffers["rala"]), singular_values(buffers["plain"])
    rank_rala, rank_plain = numerical_rank(sv_rala, 1e-2), numerical_rank(sv_plain, 1e-2)
    erank_rala, erank_plain = effective_rank(sv_rala), effective_rank(sv_plain)
    assert rank_rala.double().mean() > rank_plain.double().mean() + 2
    assert erank_rala.mean() > 1.5 * erank_plain.mean()
    assert (erank_rala > erank_plain).all()
