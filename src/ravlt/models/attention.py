"""RALA (rank-augmented linear attention) and the softmax attention of RAVLT (docs/method.md §2).

Both share the layout of the released models: one 1×1 conv producing q, k, v, o (in that order),
a 5×5 depth-wise LePE on v, the output gate ``o`` and a 1×1 output projection.

The code is written for speed and training memory and keeps the numbers of the plain formulas
(``tests/reference.py`` holds them and ``tests/perf`` compares the two, values and gradients):

- heads are strided views of the projection (no copies in a channels-last model), RoPE is one complex
  multiplication, and RALA's α moves from the keys onto the values (the ``N`` of ``k̃ = N·α·φ(k)``
  cancels against the ``1/N`` of the KV buffer);
- RALA's core has its own backward (:func:`rala_backward`): it keeps q, k, v (views of the projection,
  which is kept anyway) and five small tensors, and recomputes φ and RoPE from them instead of keeping
  six full-size intermediates;
- everything after the q/k/v/o projection runs in one autograd node (:class:`ravlt.models.lean.GatedMix`)
  that keeps only the projection and ``attention + LePE`` (softmax attention on the CPU also the flash kernel's
  output and log-sum-exp, so that its backward does not run the forward again).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .lean import Core, CoreSpec, GatedMix, compiling_or_tracing, lean_node_runs, needs_grad
from .packed import PointwiseConv2d
from .rope import rotate, rotation_table


def phi(t: torch.Tensor) -> torch.Tensor:
    """RALA's kernel φ(t) = ELU(t) + 1, as exp(min(t, 0)) + max(t, 0): several times faster than
    ``F.elu`` on the CPU (whose expm1 is not vectorised). In place on ``t`` (one pass fewer) when
    autograd does not record it: callers pass a fresh tensor."""
    if needs_grad(t):
        return torch.exp(t.clamp_max(0)) + t.clamp_min(0)
    return t.clamp_min(0).add_(t.clamp_max_(0).exp_())


CORE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def operands(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``t`` as an operand of RALA's O(N·d²) products: unchanged for float32 (the core's own precision,
    fp64 in an fp64 model), else cast to the low-precision ``dtype``."""
    return t if dtype == torch.float32 else t.to(dtype)


def real_dtype(table: torch.Tensor) -> torch.dtype:
    """The real precision of a RoPE table from :func:`ravlt.models.rope.rotation_table` (complex or real pairs)."""
    return table.real.dtype if table.is_complex() else table.dtype


def rotate_each(pair: torch.Tensor, table: torch.Tensor, inverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE on both halves of a stacked (q-side, k-side) pair: one kernel in eager mode. Under torch.compile each
    half on its own: Inductor copied the halves of a stacked result into buffers with batch × heads innermost,
    which every matrix product then copied again, matrix by matrix (docs/performance.md)."""
    if torch.compiler.is_compiling():
        return rotate(pair[0], table, inverse), rotate(pair[1], table, inverse)
    return rotate(pair, table, inverse).unbind(0)


def rala_forward(q, k, v, table, spec: CoreSpec):
    """RALA per head (docs/method.md §2): (B, heads, N, d) q, k, v -> (result, what :func:`rala_backward`
    needs).

    Runs in the real dtype of the RoPE ``table`` (float32 at least), the two O(N·d²) products with
    ``spec.core_dtype`` operands. With ``w_j = α_j`` (or ``1/N``): ``kv = Σ_j RoPE(φ(k_j))ᵀ w_j v_j``,
    ``k̄ = Σ_j w_j φ(k_j)``, result ``RoPE(φ(q_i)) kv / (φ(q_i)·k̄ + 1e-6)``.
    """
    scale, use_alpha = spec.scale, spec.use_alpha
    dtype = real_dtype(table)
    phi_q, phi_k = phis = phi(torch.stack((q, k)).to(dtype))
    v = v.to(dtype)
    q_mean = None
    if use_alpha:
        q_mean = phi_q.mean(dim=-2, keepdim=True)  # (B, h, 1, d)
        weights = torch.softmax((phi_k * (scale * q_mean)).sum(-1, keepdim=True), dim=-2)  # α, (B, h, N, 1)
        k_mean = weights.transpose(-1, -2) @ phi_k  # (B, h, 1, d)
        v = weights * v
    else:
        weights = None
        k_mean = phi_k.mean(dim=-2, keepdim=True)
        v = v / v.shape[-2]
    denom = (phi_q * k_mean).sum(-1, keepdim=True).add_(1e-6)  # (B, h, N, 1)
    rope_q, rope_k = rotate_each(phis, table)
    kv = operands(rope_k, spec.core_dtype).transpose(-1, -2) @ operands(v, spec.core_dtype)  # (B, h, d, d)
    out = (operands(rope_q, spec.core_dtype) @ kv).to(dtype).div_(denom)
    return out, (weights, q_mean, k_mean, denom, kv)


def rala_backward(q, k, v, table, spec: CoreSpec, saved, grad):
    """Gradients of :func:`rala_forward`'s result with respect to q, k and v, from the inputs and the
    small saved tensors (φ and RoPE are recomputed); all in the core's full precision (a low-precision
    ``core_dtype`` changes only the forward's two products). The derivation follows the forward line by line:
    with ``num = RoPE(φq)·kv`` and ``res = num / denom``, ``∂res/∂denom`` needs no ``num``:
    ``Σ_c g_c num_c / denom² = RoPE(φq) · (g/denom · kvᵀ) / denom``."""
    scale, use_alpha = spec.scale, spec.use_alpha
    weights, q_mean, k_mean, denom, kv = saved
    dtype = denom.dtype
    kv = kv.to(dtype)
    n = q.shape[-2]
    phis = phi(torch.stack((q, k)).to(dtype))
    phi_q, phi_k = phis
    rope_q, rope_k = rotate_each(phis, table)
    v = v.to(dtype)
    v_w = weights * v if use_alpha else v / n

    g_num = grad.to(dtype) / denom
    g_kv = rope_q.transpose(-1, -2) @ g_num  # (B, h, d, d)
    g_rope = torch.empty_like(phis)
    torch.matmul(g_num, kv.transpose(-1, -2), out=g_rope[0])
    torch.matmul(v_w, g_kv.transpose(-1, -2), out=g_rope[1])
    g_denom = (rope_q * g_rope[0]).sum(-1, keepdim=True).div_(denom).neg_()  # (B, h, N, 1)
    g_v_w = rope_k @ g_kv
    g_phi_q, g_phi_k = rotate_each(g_rope, table, inverse=True)  # RoPE is orthogonal: its transpose rotates back
    g_k_mean = g_denom.transpose(-1, -2) @ phi_q  # (B, h, 1, d)
    if use_alpha:
        g_v = weights * g_v_w
        g_weights = (phi_k @ g_k_mean.transpose(-1, -2)).add_((g_v_w * v).sum(-1, keepdim=True))  # (B, h, N, 1)
        g_logits = weights * (g_weights - (weights * g_weights).sum(-2, keepdim=True))
        g_q_mean = scale * (g_logits.transpose(-1, -2) @ phi_k)
        # rank-one updates: φk += α ⊗ ∂k̄ + ∂logits ⊗ scale·q̄, φq += ∂denom ⊗ k̄ + 1 ⊗ ∂q̄/N; in eager mode one
        # batched product each (one pass), under torch.compile broadcasting, which Inductor fuses (its batched
        # products of these operands copied them matrix by matrix)
        if torch.compiler.is_compiling():
            g_phi_k += weights * g_k_mean + g_logits * (scale * q_mean)
            g_phi_q += g_denom * k_mean + g_q_mean / n
        else:
            g_phi_k.flatten(0, 1).baddbmm_(torch.cat((weights, g_logits), -1).flatten(0, 1),
                                           torch.cat((g_k_mean, scale * q_mean), -2).flatten(0, 1))
            g_phi_q.flatten(0, 1).baddbmm_(torch.cat((g_denom, torch.ones_like(g_denom)), -1).flatten(0, 1),
                                           torch.cat((k_mean, g_q_mean / n), -2).flatten(0, 1))
    else:
        g_v = g_v_w / n
        g_phi_k += g_k_mean / n
        g_phi_q.addcmul_(g_denom, k_mean)
    d_phi_q, d_phi_k = phis.clamp_max_(1.0)  # φ'(t) = 1 for t > 0, e^t = φ(t) otherwise
    g_phi_q.mul_(d_phi_q)
    g_phi_k.mul_(d_phi_k)
    return g_phi_q, g_phi_k, g_v


def rope_qk(q, k, v, table) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE on q and k in the table's precision, returned in v's dtype (the attention kernel's operands)."""
    dtype = real_dtype(table)
    return rotate(q.to(dtype), table).to(v.dtype), rotate(k.to(dtype), table).to(v.dtype)


def softmax_forward(q, k, v, table, spec: CoreSpec):
    """Softmax attention with RoPE on q and k, through the fused SDPA kernel (never an N×N tensor where a
    memory-efficient kernel exists). On the CPU it calls the flash kernel SDPA picks there itself and keeps its
    output and log-sum-exp, from which :func:`softmax_backward` runs the kernel's backward; elsewhere nothing
    is kept and the backward recomputes the forward."""
    q, k = rope_qk(q, k, v, table)
    if takes_cpu_flash(q, k, v):
        out, logsumexp = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)[:2]
        return out, (out, logsumexp)
    return F.scaled_dot_product_attention(q, k, v), ()


def takes_cpu_flash(q, k, v) -> bool:
    """Whether :func:`softmax_forward` calls the CPU flash kernel itself: where SDPA would pick it (CPU, a dtype
    it has, rows of unit stride, flash not switched off), and not under torch.compile or tracing, which see SDPA."""
    return (
        not compiling_or_tracing()
        and q.device.type == "cpu"
        and q.dtype in CPU_FLASH_DTYPES
        and torch.backends.cuda.flash_sdp_enabled()  # SDPA's switch for flash kernels on every device
        and all(t.stride(-1) == 1 for t in (q, k, v))
    )


CPU_FLASH_DTYPES = (torch.float32, torch.float64, torch.bfloat16)


def softmax_backward(q, k, v, table, spec: CoreSpec, saved, grad):
    """Gradients of :func:`softmax_forward`: from the flash kernel's saved output and log-sum-exp through its
    backward (RoPE applied again, its transpose on the gradients), or by recomputing the forward under autograd."""
    if not saved:
        with torch.enable_grad():
            inputs = [t.detach().requires_grad_() for t in (q, k, v)]
            out, _ = softmax_forward(*inputs, table, spec)
            return torch.autograd.grad(out, inputs, grad)
    out, logsumexp = saved
    g_q, g_k, g_v = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward(
        grad.to(v.dtype), *rope_qk(q, k, v, table), v, out, logsumexp, 0.0, False
    )
    dtype = real_dtype(table)
    g_q, g_k = (rotate(g.to(dtype), table, inverse=True).to(t.dtype) for g, t in ((g_q, q), (g_k, k)))
    return g_q, g_k, g_v


class _GatedAttention(nn.Module):
    """q/k/v/o projection, LePE, gate and output projection shared by both attention types."""

    kind: str

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.qkvo = PointwiseConv2d(dim, 4 * dim)
        self.lepe = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.proj = PointwiseConv2d(dim, dim)
        self.use_alpha = False
        self.use_gate = True
        self.core_dtype = torch.float32

    def spec(self) -> CoreSpec:
        return CoreSpec(self.kind, self.num_heads, self.scale, self.use_alpha, self.use_gate, self.core_dtype)

    def mix(self, q, k, v, sin, cos) -> torch.Tensor:
        """(B, heads, N, d) q, k, v and (N, d) RoPE tables -> (B, heads, N, d) attention output."""
        table = rotation_table(sin, cos, torch.promote_types(q.dtype, torch.float32))
        with torch.autocast(device_type=q.device.type, enabled=False):
            if needs_grad(q, k, v) and lean_node_runs(traceable_backward=self.kind in TRACEABLE_BACKWARDS):
                return Core.apply(q, k, v, table, self.spec())
            return CORES[self.kind][0](q, k, v, table, self.spec())[0]

    def forward(self, x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor, gamma: torch.Tensor | None = None):
        """The block's attention output ``proj((attention + LePE) ⊙ o)``, times the per-channel ``gamma``
        (LayerScale) if given; ``gamma`` is folded into the projection's weights."""
        lepe, proj = self.lepe, self.proj
        return gated_attention(
            self.qkvo(x), sin, cos, lepe.weight, lepe.bias, proj.weight, proj.bias, gamma, self.spec()
        )


@torch.fx.wrap  # FX tracing records one call instead of tracing into the run-time choices below
def gated_attention(qkvo, sin, cos, lepe_w, lepe_b, proj_w, proj_b, gamma, spec: CoreSpec) -> torch.Tensor:
    """Everything after the q/k/v/o projection: the lean autograd node where autograd records (see
    :func:`ravlt.models.lean.lean_node_runs`), in place without autograd."""
    if gamma is not None:
        proj_w, proj_b = proj_w * gamma.view(-1, 1, 1, 1), proj_b * gamma.view(-1)
    table = rotation_table(sin, cos, torch.promote_types(qkvo.dtype, torch.float32))
    args = (qkvo, table, lepe_w, lepe_b, proj_w, proj_b)
    grad = needs_grad(*args)
    if grad and lean_node_runs(traceable_backward=spec.kind in TRACEABLE_BACKWARDS):
        return GatedMix.apply(*args, spec)
    return GatedMix.infer(*args, spec, grad=grad)[0]



class RALA(_GatedAttention):
    """Rank-augmented linear attention.

    ``use_alpha`` and ``use_gate`` exist for the rank analysis: switching both off gives plain linear
    attention with the same ELU+1 kernel, RoPE and LePE.

    ``core_dtype`` (an option, measured by ``python -m ravlt.bench --suite cuda``): float32 (the default)
    keeps the whole core in fp32 (fp64 for an fp64 model); bfloat16 / float16 runs the two O(N·d²)
    products (in :func:`rala_forward`) with low-precision operands and fp32 accumulation, while α's softmax,
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


class SoftmaxAttention(_GatedAttention):
    """Softmax attention with RoPE on q and k, through the fused SDPA kernel."""

    kind = "v"


CORES = {"l": (rala_forward, rala_backward), "v": (softmax_forward, softmax_backward)}
TRACEABLE_BACKWARDS = {"l"}  # softmax_backward calls torch.autograd.grad, which Dynamo does not trace
ATTENTION_TYPES = {"l": RALA, "v": SoftmaxAttention}
