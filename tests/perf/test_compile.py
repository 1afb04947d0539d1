"""torch.compile of the whole model: no graph breaks (inference and training), one graph for every image
size with ``dynamic=True`` (detection-style inputs), Inductor's logits and gradients equal eager's, and
inference compiled with the weights frozen in (``compile_frozen``)."""
import os
import subprocess
import sys

import pytest
import timm
import torch
import torch.nn.functional as F
from torch._dynamo.testing import CompileCounter

import ravlt  # noqa: F401
import reference
from ravlt.bench.cli import AVX2_ENV
from ravlt.models import RALA
from ravlt.models.rope import RoPE2d
from ravlt.tools.compile import compile_frozen


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def loss_of(model):
    def step(x):
        return F.cross_entropy(model(x), torch.arange(x.shape[0]) % 10)

    return step


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_no_graph_breaks(mode):
    model = timm.create_model("ravlt_t", num_classes=10).train(mode == "train")
    x = torch.randn(2, 3, 64, 96)
    fn = loss_of(model) if mode == "train" else torch.no_grad()(model)
    explanation = torch._dynamo.explain(fn)(x)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_training_graph_holds_the_lean_nodes():
    """Compiled training traces the lean nodes (RALA's attention and the FFN) instead of plain autograd:
    their recompute plan is what makes the compiled step faster and leaner than Inductor's own choice."""
    model = timm.create_model("ravlt_t", num_classes=10, attn_types="llvv").train()
    explanation = torch._dynamo.explain(loss_of(model))(torch.randn(2, 3, 64, 96))
    code = "\n".join(graph.code for graph in explanation.graphs)
    # 4 RALA attentions and all 12 FFNs; the 8 softmax attentions stay plain (their backward is not traceable)
    # apart from their LePE convolution's node (its fast weight gradient)
    assert code.count("autograd_function_apply(") == 4 + 12 + 8


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_compiled_rala_has_the_plain_gradients_and_copies_no_matrices(dtype):
    """RALA's core under Inductor (its compile-only branches: RoPE on q and k apart, the rank-one updates as
    broadcasting) against autograd through the plain formulas; and none of its matrix products copies its
    operands matrix by matrix (with RoPE on the stacked q, k Inductor's layout made every one of them do so)."""
    torch.manual_seed(0)
    attn = RALA(32, 2).to(dtype)
    sin, cos = RoPE2d(16).to(dtype)(8, 8)
    x = torch.randn(2, 32, 8, 8, dtype=dtype).contiguous(memory_format=torch.channels_last)
    weights = torch.linspace(-1, 2, x.numel(), dtype=dtype).view_as(x)

    def grads(fn):
        attn.zero_grad(set_to_none=True)
        leaf = x.clone().requires_grad_()
        (fn(leaf) * weights).sum().backward()
        return [leaf.grad, *(p.grad for p in attn.parameters())]

    compiled = torch.compile(lambda t: attn(t, sin, cos))
    grads(compiled)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        got = grads(compiled)
    want = grads(lambda t: reference.attention(attn, t, sin, cos))
    for g, w in zip(got, want, strict=True):
        assert (g - w).norm() <= (1e-4 if dtype == torch.float32 else 1e-10) * w.norm()
    copies = [e.name for e in prof.events() if e.name in ("aten::clone", "aten::addmm_") and inside_a_product(e)]
    assert not copies


def inside_a_product(event) -> bool:
    return event.cpu_parent is not None and event.cpu_parent.name in ("aten::bmm", "aten::baddbmm")


def test_dynamic_sizes_compile_once():
    """Feature maps of every size, as a detector feeds them: one graph, no recompilation per size."""
    model = timm.create_model("ravlt_t", features_only=True).eval()
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter, dynamic=True)
    with torch.no_grad():
        for height, width in ((96, 128), (160, 96), (224, 224), (100, 70)):
            feats = compiled(torch.randn(2, 3, height, width))
            assert feats[0].shape[-2:] == ((height + 3) // 4, (width + 3) // 4)
    assert counter.frame_count == 1


@pytest.mark.slow
def test_inductor_logits_and_gradients_equal_eager():
    torch.manual_seed(0)
    model = timm.create_model("ravlt_t", num_classes=10).train()
    compiled = torch.compile(loss_of(model))
    x = torch.randn(2, 3, 64, 96)
    results = []
    for fn in (loss_of(model), compiled):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        loss = fn(x)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss, grads), (want, want_grads) = results[1], results[0]
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)
    # a floor for the parameters whose exact gradient is zero (a conv bias before a training-mode BatchNorm):
    # theirs is rounding noise in both
    floor = 1e-6 * max(g.norm() for g in want_grads.values())
    for name, g in grads.items():
        assert (g - want_grads[name]).norm() <= 1e-4 * want_grads[name].norm() + floor, name
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model)(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_compile_frozen_gives_eager_logits_with_the_weights_folded_in():
    """Eager's logits, and the weights are constants of the frozen graph: changed in place afterwards, they
    do not reach its output (a plain torch.compile's output follows them)."""
    torch.manual_seed(0)
    model = timm.create_model("ravlt_t", num_classes=10).eval()
    x = torch.randn(2, 3, 64, 96)
    frozen = compile_frozen(model)
    with torch.no_grad():
        torch.testing.assert_close(frozen(x), model(x), rtol=1e-5, atol=1e-5)
        for p in model.parameters():
            p.mul_(0.5)
        changed = model(x)
        assert (frozen(x) - changed).abs().max() > 0.01 * changed.abs().max()


COMPILE_IN_A_FRESH_PROCESS = """
import timm, torch
import ravlt
from ravlt.tools.compile import inductor_cache_per_cpu_capability
inductor_cache_per_cpu_capability()  # as every compiling entry point of the package does
torch.manual_seed(0)
model = timm.create_model("ravlt_t", num_classes=10, depths=(1, 1, 1, 1)).eval()
x = torch.randn(2, 3, 64, 64).contiguous(memory_format=torch.channels_last)
with torch.no_grad():
    print(torch.backends.cpu.get_cpu_capability(), (torch.compile(model)(x) - model(x)).abs().max().item())
"""


@pytest.mark.slow
@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() != "AVX512", reason="needs a CPU with AVX-512")
def test_cpu_classes_never_share_compiled_kernels(tmp_path):
    """The bench's two CPU classes compile in turn on one machine: the imitated AVX2 class must not load the
    AVX-512 class's cached kernels (Inductor's cache key leaves the capability out; they computed NaN)."""
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path)}
    for cpu_class in ("AVX512", "AVX2"):
        run_env = {**env, **(AVX2_ENV if cpu_class == "AVX2" else {})}
        out = subprocess.run([sys.executable, "-c", COMPILE_IN_A_FRESH_PROCESS], env=run_env, capture_output=True,
                             text=True, check=True).stdout.split()
        assert out[0] == cpu_class
        assert float(out[1]) < 1e-4, f"{cpu_class}: compiled logits differ from eager by {out[1]}"
    assert {p.name for p in tmp_path.iterdir()} == {"avx512", "avx2"}
