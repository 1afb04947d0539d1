"""Autograd nodes that keep little for backward: RAVLT's training memory.

Plain autograd keeps every intermediate an op needs for its gradient: for one RALA block that is
about 31 feature maps of the block's width, most of them cheap to recompute. The two nodes here keep
only what is expensive to recompute (products of the 1×1 projections) and recompute the rest in
backward, with exactly the gradients of the plain formulas (``tests/perf`` compares them with autograd
through ``tests/reference.py``, in float32 and float64):

- :class:`GatedMix`, everything after the q/k/v/o projection: LePE, the attention core (its own
  backward: ``attention.py``), gate and output projection. Keeps the projection, ``attention + LePE``
  and what the core keeps; its gradient for the projection is one channels-last tensor (autograd's
  ``chunk`` would concatenate four and then copy them into the layout the convolution wants).
- :class:`ConvFFN`, the feed-forward ``fc2(h' + DWConv(h'))`` with ``h' = GELU(fc1(x))``. Keeps x and
  ``fc1(x)``; GELU (:func:`gelu`, oneDNN's kernel on channels-last maps) and the depth-wise convolution are
  recomputed.

Each also has an ``infer`` path for when no gradient is needed: the same arithmetic in place. (:class:`Gelu`
only routes the stem's GELU through the same kernels as the FFN's; it keeps what autograd's would.)

Under ``torch.compile`` Dynamo traces the nodes, backward included, and Inductor compiles their plan
(:func:`lean_node_runs`); softmax attention's backward recomputes its forward there through
``torch.autograd.grad``, which Dynamo does not trace, so its node steps aside and Inductor decides what
those blocks keep; their LePE still takes the fast weight gradient (:class:`DepthwiseConv`).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.autograd import Function

from .packed import pointwise_conv


class CoreSpec(NamedTuple):
    """What an attention module's arithmetic depends on besides tensors; ``kind`` picks the core in
    ``attention.CORES``: a (forward, backward) pair working on (B, heads, N, d) views."""

    kind: str  # "l" (RALA) or "v" (softmax)
    heads: int
    scale: float
    use_alpha: bool
    use_gate: bool
    core_dtype: torch.dtype  # operands of RALA's two O(N·d²) products


def needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def lean_node_runs(traceable_backward: bool = True) -> bool:
    """Whether a lean node runs where autograd records: in eager mode, and under torch.compile when Dynamo
    can trace its backward (Inductor then compiles the node's keep-little-and-recompute plan with its exact
    gradients: faster and leaner than its own choice); never under torch.jit.trace (a trace, such as
    fvcore's FLOP count, must see the ops inside)."""
    return not torch.jit.is_tracing() and (traceable_backward or not torch.compiler.is_compiling())


def conv_backward(grad, input, weight, needs=(True, True, True), groups: int = 1):
    """(∂input, ∂weight, ∂bias) of a stride-1 'same' convolution; ``weight`` is cast to the dtype the
    forward ran in (autocast casts it there)."""
    weight = weight.to(input.dtype)
    size = weight.shape[-1]
    padding = [weight.shape[-2] // 2, size // 2]
    fast_weight_grad = needs[1] and groups == input.shape[1] > 1 and size >= 5 and input.device.type == "cpu"
    aten_needs = [needs[0], needs[1] and not fast_weight_grad, needs[2] and not fast_weight_grad]
    grads = torch.ops.aten.convolution_backward(
        grad, input, weight, [weight.shape[0]], [1, 1], padding, [1, 1], False, [0, 0], groups, aten_needs
    )
    if not fast_weight_grad:
        return grads
    return grads[0], depthwise_weight_grad(grad, input, size), grad.sum((0, 2, 3)) if needs[2] else None


def depthwise_weight_grad(grad: torch.Tensor, input: torch.Tensor, size: int) -> torch.Tensor:
    """∂weight of a stride-1 'same' depth-wise size × size convolution: one grouped convolution of the
    input, zero-padded by the convolution itself, with the gradient as its kernel (a group per sample and
    channel), summed over the batch. On the CPU 1.1–1.8× as fast as oneDNN's weight gradient of a 5×5 depth-wise
    kernel on the machines measured (docs/performance.md); slower for 3×3, which keeps oneDNN's."""
    b, c, h, w = input.shape
    per_sample = F.conv2d(
        grouped_by_sample(input), grad.contiguous().view(b * c, 1, h, w), padding=size // 2, groups=b * c
    )
    return per_sample.view(b, c, size, size).sum(0).unsqueeze(1)


def grouped_by_sample(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) as (1, B·C, H, W), one channel per sample and channel: contiguous in eager mode (the
    layout oneDNN's grouped convolution is fastest in), channels-last under torch.compile, whose layout
    optimisation turns a convolution's input channels-last anyway; from a channels-last map (or a channel slice
    of one) that is one copy moving whole pixel rows instead of a transposition and back."""
    b, c, h, w = x.shape
    if torch.compiler.is_compiling():
        return x.permute(2, 3, 0, 1).contiguous().view(h, w, b * c).permute(2, 0, 1).unsqueeze(0)
    if x.stride(1) == 1 and not x.is_contiguous():
        # a channel slice of a channels-last map (LePE's v) is made dense before it is transposed: transposed
        # directly, each element read costs a cache line, and a sample's slice that outgrows the cache (stage 1 of
        # RAVLT-S at b16, 224²) was read from memory several times (3× slower; docs/performance.md)
        x = x.contiguous(memory_format=torch.channels_last)
    return x.contiguous().view(1, b * c, h, w)


def memory_order(t: torch.Tensor) -> torch.Tensor:
    """A channels-last (B, C, H, W) tensor as the contiguous (B, H, W, C) view of its memory; any other
    tensor unchanged."""
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1)
    return t


def gelu(x: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """GELU without autograd (in place with ``inplace``). ATen hands GELU to oneDNN only for contiguous
    tensors and runs its own kernel, up to 2× slower, on a channels-last map, so a channels-last map goes
    in as the contiguous view of its memory (docs/performance.md)."""
    view = x if compiling_or_tracing() else memory_order(x)
    if inplace:
        torch.ops.aten.gelu_(view)
        return x
    return F.gelu(x) if view is x else F.gelu(view).permute(0, 3, 1, 2)


def gelu_backward(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """∂GELU(x) · grad, through oneDNN (see :func:`gelu`) when both are channels-last maps."""
    g_view, x_view = (grad, x) if compiling_or_tracing() else (memory_order(grad), memory_order(x))
    if g_view is grad or x_view is x:  # not both channels-last maps: never mix the layouts (10× slower)
        return torch.ops.aten.gelu_backward(grad, x)
    return torch.ops.aten.gelu_backward(g_view, x_view).permute(0, 3, 1, 2)


def compiling_or_tracing() -> bool:
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def write(out: torch.Tensor, op, *args) -> torch.Tensor:
    """``op(*args, out=out)``; Dynamo cannot trace ``out=`` into a strided view (a graph break), so under
    torch.compile the result is copied in instead."""
    if torch.compiler.is_compiling():
        return out.copy_(op(*args))
    return op(*args, out=out)


def split_heads(t: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, heads, N, d), a view in both NCHW and channels-last memory (never a copy:
    :class:`GatedMix`'s backward writes through it)."""
    b, c, h, w = t.shape
    return t.view(b, num_heads, c // num_heads, h * w).transpose(-1, -2)


def autocast_state(device_type: str) -> tuple:
    """The forward's autocast state, for :func:`replay_autocast` in backward (recomputed ops must see
    the same dtypes)."""
    return device_type, torch.is_autocast_enabled(device_type), torch.get_autocast_dtype(device_type)


def replay_autocast(state: tuple):
    device_type, enabled, dtype = state
    return torch.autocast(device_type, dtype=dtype, enabled=enabled)


class Gelu(Function):
    """GELU under autograd through :func:`gelu` and :func:`gelu_backward` (oneDNN's kernels on channels-last
    maps); keeps its input, as autograd's own GELU does."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return gelu(x)

    @staticmethod
    def backward(ctx, grad):
        return gelu_backward(grad, ctx.saved_tensors[0])


def depthwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A stride-1 'same' depth-wise convolution (one group per channel of ``x``)."""
    return F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2, groups=x.shape[1])


class DepthwiseConv(Function):
    """A stride-1 'same' depth-wise convolution under autograd, backward through :func:`conv_backward` (its
    5×5 weight gradient is :func:`depthwise_weight_grad`); keeps what autograd's would. LePE of the blocks
    whose :class:`GatedMix` steps aside under torch.compile, which would otherwise get oneDNN's slower weight
    gradient there (docs/performance.md)."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return depthwise(x, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        return conv_backward(grad, x, weight, ctx.needs_input_grad, x.shape[1])


def depthwise_conv(x, weight, bias) -> torch.Tensor:
    """LePE's convolution: through :class:`DepthwiseConv` where autograd records it and a lean node may run."""
    if needs_grad(x, weight, bias) and lean_node_runs():
        return DepthwiseConv.apply(x, weight, bias)
    return depthwise(x, weight, bias)


class Core(Function):
    """The attention core alone, (B, heads, N, d) q, k, v -> (B, heads, N, d): ``attention.CORES[kind]``."""

    @staticmethod
    def forward(ctx, q, k, v, table, spec):
        from .attention import CORES

        ctx.spec = spec
        out, saved = CORES[spec.kind][0](q, k, v, table, spec)
        ctx.save_for_backward(q, k, v, table, *saved)
        return out

    @staticmethod
    def backward(ctx, grad):
        from .attention import CORES

        q, k, v, table, *saved = ctx.saved_tensors
        spec = ctx.spec
        return *CORES[spec.kind][1](q, k, v, table, spec, saved, grad), None, None


class GatedMix(Function):
    """``proj((core(q, k, v) + LePE(v)) ⊙ o)`` from the (B, 4C, H, W) projection ``qkvo``; ``spec`` is a
    :class:`CoreSpec`."""

    @staticmethod
    def infer(qkvo, table, lepe_w, lepe_b, proj_w, proj_b, spec, grad: bool = False):
        """The forward arithmetic; in place where that is safe without autograd (``grad=False``). Returns
        the output, ``attention + LePE`` and the core's saved tensors."""
        from .attention import CORES

        heads = spec.heads
        q, k, v, o = qkvo.chunk(4, dim=1)
        lepe = depthwise_conv(v, lepe_w, lepe_b)
        with torch.autocast(qkvo.device.type, enabled=False):  # the core picks its own precision
            res, saved = CORES[spec.kind][0](*(split_heads(t, heads) for t in (q, k, v)), table, spec)
        split_heads(lepe, heads).add_(res)  # attention + LePE, in LePE's (channels-last) memory
        gated = (lepe * o if grad else lepe.mul_(o)) if spec.use_gate else lepe
        return pointwise_conv(gated, proj_w, proj_b), lepe, saved

    @staticmethod
    def forward(ctx, qkvo, table, lepe_w, lepe_b, proj_w, proj_b, spec):
        out, mixed, saved = GatedMix.infer(qkvo, table, lepe_w, lepe_b, proj_w, proj_b, spec, grad=True)
        ctx.spec = spec
        ctx.autocast = autocast_state(qkvo.device.type)
        ctx.save_for_backward(qkvo, table, lepe_w, proj_w, mixed, *saved)
        return out

    @staticmethod
    def backward(ctx, grad):
        from .attention import CORES

        qkvo, table, lepe_w, proj_w, mixed, *saved = ctx.saved_tensors
        spec = ctx.spec
        heads, use_gate = spec.heads, spec.use_gate
        q, k, v, o = qkvo.chunk(4, dim=1)
        with replay_autocast(ctx.autocast):
            gated = mixed * o if use_gate else mixed
            needs = ctx.needs_input_grad
            g_gated, g_proj_w, g_proj_b = conv_backward(grad, gated, proj_w, (True, needs[4], needs[5]))
            del gated
            g_qkvo = torch.empty_like(qkvo)
            g_q, g_k, g_v, g_o = g_qkvo.chunk(4, dim=1)
            if use_gate:
                write(g_o, torch.mul, g_gated, mixed)
                g_gated.mul_(o)  # now the gradient of attention + LePE
            else:
                g_o.zero_()
            g_v_lepe, g_lepe_w, g_lepe_b = conv_backward(g_gated, v, lepe_w, (True, needs[2], needs[3]), v.shape[1])
        with torch.autocast(qkvo.device.type, enabled=False):
            dq, dk, dv = CORES[spec.kind][1](
                *(split_heads(t, heads) for t in (q, k, v)), table, spec, saved, split_heads(g_gated, heads)
            )
        split_heads(g_q, heads).copy_(dq)
        split_heads(g_k, heads).copy_(dk)
        write(split_heads(g_v, heads), torch.add, split_heads(g_v_lepe, heads), dv)
        return g_qkvo, None, g_lepe_w, g_lepe_b, g_proj_w, g_proj_b, None


class ConvFFN(Function):
    """``fc2(d)`` with ``d = DWConv(GELU(fc1(x)))`` (the caller folds the FFN's identity into the
    depth-wise kernel, and LayerScale into fc2)."""

    @staticmethod
    def infer(x, w1, b1, w_dw, b_dw, w2, b2, grad: bool = False):
        h = pointwise_conv(x, w1, b1)
        h = F.gelu(h) if grad else gelu(h, inplace=True)
        return pointwise_conv(depthwise(h, w_dw, b_dw), w2, b2)

    @staticmethod
    def forward(ctx, x, w1, b1, w_dw, b_dw, w2, b2):
        hidden = F.conv2d(x, w1, b1)
        d = depthwise(gelu(hidden), w_dw, b_dw)
        ctx.autocast = autocast_state(x.device.type)
        ctx.save_for_backward(x, hidden, w1, w_dw, b_dw, w2)
        return F.conv2d(d, w2, b2)

    @staticmethod
    def backward(ctx, grad):
        x, hidden, w1, w_dw, b_dw, w2 = ctx.saved_tensors
        needs = ctx.needs_input_grad
        with replay_autocast(ctx.autocast):
            act = gelu(hidden)
            d = depthwise(act, w_dw, b_dw)
            g_d, g_w2, g_b2 = conv_backward(grad, d, w2, (True, needs[5], needs[6]))
            del d
            g_act, g_w_dw, g_b_dw = conv_backward(g_d, act, w_dw, (True, needs[3], needs[4]), hidden.shape[1])
            del act, g_d
            g_hidden = gelu_backward(g_act, hidden)
            del g_act
            g_x, g_w1, g_b1 = conv_backward(g_hidden, x, w1, (needs[0], needs[1], needs[2]))
        return g_x, g_w1, g_b1, g_w_dw, g_b_dw, g_w2, g_b2
