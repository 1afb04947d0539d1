"""The lean autograd nodes (``ravlt.models.lean``, RALA's own backward) against autograd through the plain
formulas of ``tests/reference.py``: same values and same gradients, float32 and float64; and that they keep
what they promise to keep (a saved-bytes count, not a timing)."""
from collections import Counter

import pytest
import timm
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import ravlt  # noqa: F401
import reference
from ravlt.models import RALA, SoftmaxAttention, attention
from ravlt.models.ravlt import ConvFFN
from ravlt.models.rope import RoPE2d

TOL = {torch.float32: 2e-5, torch.float64: 1e-10}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def randomise(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    module = module.to(dtype)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.4)
    return module


def run(fn, module, x, *extra):
    """Value of ``fn(x)`` and the gradients of a fixed weighted sum of it: for x, every parameter of
    ``module`` and each tensor in ``extra``."""
    module.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_()
    extra = [t.detach().clone().requires_grad_() for t in extra]
    out = fn(x, *extra)
    out.backward(torch.linspace(-1, 2, out.numel(), dtype=out.dtype).view_as(out))
    grads = {"input": x.grad, **{f"extra{i}": t.grad for i, t in enumerate(extra)}}
    grads.update((n, p.grad) for n, p in module.named_parameters())
    return out.detach(), grads


def assert_same(fast, plain, dtype):
    (out, grads), (want, want_grads) = fast, plain
    assert rel_err(out, want) < TOL[dtype]
    assert grads.keys() == want_grads.keys()
    for name, want_grad in want_grads.items():
        assert rel_err(grads[name], want_grad) < TOL[dtype], name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "make",
    [lambda: RALA(32, 2), lambda: RALA(32, 2, use_alpha=False, use_gate=False), lambda: SoftmaxAttention(32, 2)],
    ids=["rala", "plain-linear", "softmax"],
)
def test_attention_node_gradients_equal_the_plain_formulas(make, dtype):
    attn = randomise(make(), dtype)
    sin, cos = RoPE2d(16).to(dtype)(5, 7)
    gamma = torch.rand(32, dtype=dtype)
    x = torch.randn(3, 32, 5, 7, dtype=dtype).contiguous(memory_format=torch.channels_last)
    fast = run(lambda t, g: attn(t, sin, cos, gamma=g), attn, x, gamma)
    plain = run(lambda t, g: g.view(1, -1, 1, 1) * reference.attention(attn, t, sin, cos), attn, x, gamma)
    assert_same(fast, plain, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ffn_node_gradients_equal_the_plain_formulas(dtype):
    ffn = randomise(ConvFFN(16, 56), dtype)
    gamma = torch.rand(16, dtype=dtype)
    x = torch.randn(2, 16, 6, 5, dtype=dtype).contiguous(memory_format=torch.channels_last)
    fast = run(lambda t, g: ffn(t, gamma=g), ffn, x, gamma)
    plain = run(lambda t, g: g.view(1, -1, 1, 1) * reference.ffn(ffn, t), ffn, x, gamma)
    assert_same(fast, plain, dtype)


@pytest.mark.parametrize("size", [3, 5])  # 5×5 takes the grouped-convolution weight gradient, 3×3 oneDNN's
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_depthwise_conv_backward_equals_autograd(size, dtype):
    from ravlt.models.lean import conv_backward

    x = torch.randn(3, 8, 9, 7, dtype=dtype).contiguous(memory_format=torch.channels_last).requires_grad_()
    weight = torch.randn(8, 1, size, size, dtype=dtype, requires_grad=True)
    bias = torch.randn(8, dtype=dtype, requires_grad=True)
    out = torch.nn.functional.conv2d(x, weight, bias, padding=size // 2, groups=8)
    grad = torch.randn_like(out)
    want = torch.autograd.grad(out, (x, weight, bias), grad)
    got = conv_backward(grad, x.detach(), weight.detach(), groups=8)
    for g, w in zip(got, want):
        assert g.shape == w.shape and rel_err(g, w) < TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_depthwise_conv_node_gradients_equal_autograd(dtype):
    """LePE's node (softmax blocks under torch.compile), on a strided slice as the projection hands it over."""
    from ravlt.models.lean import DepthwiseConv

    conv = randomise(torch.nn.Conv2d(8, 8, 5, padding=2, groups=8), dtype)
    x = torch.randn(3, 32, 9, 7, dtype=dtype).contiguous(memory_format=torch.channels_last)
    fast = run(lambda t: DepthwiseConv.apply(t[:, 16:24], conv.weight, conv.bias), conv, x)
    plain = run(lambda t: conv(t[:, 16:24]), conv, x)
    assert_same(fast, plain, dtype)


def test_rala_core_gradients_equal_the_plain_formulas_float64():
    """The core alone (``attn.mix``), strided q/k/v views of one projection as in the model."""
    attn = RALA(32, 2).double()
    sin, cos = RoPE2d(16).double()(4, 6)
    proj = torch.randn(2, 4 * 32, 4, 6, dtype=torch.float64) * 2

    def views(t):
        return [c.reshape(2, 2, 16, 24).transpose(-1, -2) for c in t.chunk(4, 1)[:3]]

    grads = []
    for mix in (attn.mix, lambda *a: reference.rala_mix(attn, *a)):
        t = proj.clone().contiguous(memory_format=torch.channels_last).requires_grad_()
        out = mix(*views(t), sin, cos)
        out.backward(torch.cos(torch.arange(out.numel(), dtype=out.dtype)).view_as(out))
        grads.append((out.detach(), t.grad))
    assert rel_err(grads[0][0], grads[1][0]) < 1e-12
    assert rel_err(grads[0][1], grads[1][1]) < 1e-12


@pytest.mark.parametrize("attn_types", [pytest.param("llvv", marks=pytest.mark.slow), "llll"])
def test_model_gradients_equal_the_plain_formulas_float64(attn_types):
    """The whole model in training mode: batch-statistics BatchNorm and drop path (same masks)."""
    fast = timm.create_model("ravlt_t", num_classes=7, attn_types=attn_types, drop_path_rate=0.3).double().train()
    plain = timm.create_model("ravlt_t", num_classes=7, attn_types=attn_types, drop_path_rate=0.3).double().train()
    with torch.no_grad():
        for name, p in fast.named_parameters():
            p.copy_(torch.rand_like(p) * 0.8 + 0.2 if name.endswith(("gamma_1", "gamma_2")) else p * 2.5)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(3, 3, 64, 48, dtype=torch.float64)
    outs = []
    for forward in (fast, lambda t: reference.forward(plain, t)):
        torch.manual_seed(3)
        out = forward(x)
        out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype))
        outs.append(out.detach())
    assert rel_err(outs[0], outs[1]) < 1e-10
    plain_grads = dict(plain.named_parameters())
    floor = 1e-12 * max(p.grad.norm() for p in plain_grads.values())
    for name, p in fast.named_parameters():
        want = plain_grads[name].grad
        assert (p.grad - want).norm() <= 1e-9 * want.norm() + floor, name


def saved_feature_maps(block: torch.nn.Module, x: torch.Tensor, *args) -> float:
    """Bytes autograd keeps for one forward of ``block``, in units of the block input's size."""
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        block(x, *args)
    return sum(n for n in storages.values() if n >= x.nbytes // 4) / x.nbytes


@pytest.mark.parametrize(("attn_type", "maps"), [("l", 13.5), ("v", 14.5)])
def test_a_training_block_keeps_few_feature_maps(attn_type, maps):
    """Plain autograd keeps 29.5 maps of the block's width (26.5 for a softmax block; q/k/v/o alone are 4,
    each of the FFN's hidden maps 3.5); the lean nodes keep the block input, the two LayerNorm inputs and
    outputs, q/k/v/o, attention + LePE and the FFN's hidden map: 13.5, and a softmax block on the CPU also
    the flash kernel's output (its backward reads it): 14.5."""
    model = timm.create_model("ravlt_t", attn_types=attn_type * 4).train()
    block, stage = model.layers[1].blocks[0], model.layers[1]
    x = torch.randn(4, 128, 32, 32).contiguous(memory_format=torch.channels_last).requires_grad_()
    sin, cos = stage.RoPE(32, 32)
    assert saved_feature_maps(block, x, sin, cos) <= maps


class OpCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format], ids=["channels-last", "nchw"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_softmax_backward_reuses_the_flash_kernels_forward(layout, dtype, monkeypatch):
    """On the CPU a softmax block's backward runs the flash kernel's backward from its saved output and
    log-sum-exp: one forward call of the kernel per training step (recomputing would make two), and the same
    gradients as recomputing (an NCHW model, whose v rows are strided, recomputes through SDPA)."""
    attn = randomise(SoftmaxAttention(32, 2), dtype)
    sin, cos = RoPE2d(16).to(dtype)(5, 7)
    x = torch.randn(3, 32, 5, 7, dtype=dtype).contiguous(memory_format=layout)
    counter = OpCounter()
    with counter:
        fast = run(lambda t: attn(t, sin, cos), attn, x)
    kernel = "_scaled_dot_product_flash_attention_for_cpu"
    if layout == torch.channels_last:
        assert (counter.calls[kernel], counter.calls[f"{kernel}_backward"]) == (1, 1)
    monkeypatch.setattr(attention, "takes_cpu_flash", lambda *args: False)
    recomputed = run(lambda t: attn(t, sin, cos), attn, x)
    assert_same(fast, recomputed, dtype)
