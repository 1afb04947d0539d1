"""The other fast paths: torch.compile (real-arithmetic RoPE) and CUDA (bf16 autocast)."""
import pytest
import timm
import torch

import ravlt  # noqa: F401
import reference
from ravlt.models import RALA, SoftmaxAttention
from ravlt.models.rope import RoPE2d


@pytest.mark.slow
@pytest.mark.parametrize("attention", [RALA, SoftmaxAttention])
def test_compiled_attention_matches_eager(attention):
    torch._dynamo.reset()
    attn = attention(32, 2).eval()
    sin, cos = RoPE2d(16)(6, 5)
    x = torch.randn(2, 32, 6, 5).contiguous(memory_format=torch.channels_last)
    compiled = torch.compile(attn, dynamic=False)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x, sin, cos), attn(x, sin, cos), rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_cuda_fp32_matches_reference():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = timm.create_model("ravlt_t").cuda().eval()
    x = torch.randn(2, 3, 96, 128, device="cuda")
    with torch.no_grad():
        got, want = model(x), reference.forward(model, x)
    assert ((got - want).norm() / want.norm()).item() < 1e-5


@pytest.mark.gpu
def test_cuda_bf16_training_step_is_finite_and_rala_core_fp32():
    model = timm.create_model("ravlt_t", num_classes=10).cuda().train()
    x = torch.randn(4, 3, 128, 128, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(x)
        attn = model.layers[0].blocks[0].attn
        q = torch.randn(1, 1, 16, 64, device="cuda", dtype=torch.bfloat16)
        sin, cos = (t.cuda() for t in RoPE2d(64)(4, 4))
        assert attn.mix(q, q, q, sin, cos).dtype == torch.float32
    out.float().square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.gpu
def test_bench_runs_on_cuda(tmp_path):
    from ravlt.bench.cli import main

    result = main(["--quick", "--device", "cuda", "--models", "ravlt_t", "convnext_tiny", "--repeats", "1",
                   "--min-seconds", "0", "--no-flops", "--out", str(tmp_path)])
    assert result["meta"]["dtype"] == "bfloat16"
    assert all(r["img_per_s"] > 0 and r["peak_mib"] > 0 for r in result["rows"])
