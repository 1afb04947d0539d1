"""RAVLT on CUDA (stage 1 of tools/gpu_check.sh): the same numbers as on the CPU in fp32, finite under bf16
and fp16 autocast at 224² and 1024², and the softmax stages on a fused SDPA kernel, never the math one.

Each test records its measurements with ``record_property`` (they land in the junit XML the GPU check
reads); all are skipped where there is no CUDA device.
"""
import copy

import pytest
import timm
import torch
import torch.nn.functional as F

import ravlt  # noqa: F401
from ravlt.bench.cuda import ieee_fp32, rel_err
from ravlt.tools.sdpa import FUSED, sdpa_backends

pytestmark = pytest.mark.gpu

PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16}


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().float().cpu() for n, p in model.named_parameters() if p.grad is not None}


def test_cuda_fp32_logits_and_gradients_match_the_cpu(record_property):
    """Same weights, same batch: eval logits, and train-mode logits and every gradient (batch-statistics
    BatchNorm, no drop path), CUDA without TF32 against the CPU."""
    cpu = timm.create_model("ravlt_t", num_classes=10, drop_path_rate=0.0)
    gpu = copy.deepcopy(cpu).cuda()
    x = torch.randn(4, 3, 224, 224)
    target = torch.randint(0, 10, (4,))
    with ieee_fp32():
        with torch.no_grad():
            eval_err = rel_err(gpu.eval()(x.cuda()).cpu(), cpu.eval()(x))
        cpu.train(), gpu.train()
        logits_cpu = cpu(x)
        F.cross_entropy(logits_cpu, target).backward()
        logits_gpu = gpu(x.cuda())
        F.cross_entropy(logits_gpu, target.cuda()).backward()
    train_err = rel_err(logits_gpu.detach().cpu(), logits_cpu.detach())
    g_cpu, g_gpu = grads(cpu), grads(gpu)
    assert g_cpu.keys() == g_gpu.keys() and len(g_cpu) == len(list(cpu.parameters()))
    flat_cpu, flat_gpu = (
        torch.cat([g.flatten() for g in g_cpu.values()]),
        torch.cat([g.flatten() for g in g_gpu.values()]),
    )
    grad_err = rel_err(flat_gpu, flat_cpu)
    # per tensor, relative to the tensor's norm (floored, for gradients that are nearly zero)
    scale = flat_cpu.norm() / flat_cpu.numel() ** 0.5
    worst_name, worst = max(
        ((n, ((g_gpu[n] - g).norm() / max(g.norm(), scale * g.numel() ** 0.5)).item()) for n, g in g_cpu.items()),
        key=lambda t: t[1],
    )
    for key, value in dict(eval_logits_rel_err=eval_err, train_logits_rel_err=train_err, grad_rel_err=grad_err,
                           worst_param_grad_rel_err=worst, worst_param=worst_name).items():  # fmt: skip
        record_property(key, value)
    assert eval_err < 1e-4 and train_err < 1e-4
    assert grad_err < 1e-3 and worst < 1e-2, worst_name


@pytest.mark.parametrize("side,batch", [(224, 4), (1024, 1)])
@pytest.mark.parametrize("precision", list(PRECISIONS))
def test_autocast_training_step_is_finite(precision, side, batch, record_property):
    """Forward and backward under autocast: logits, loss and every gradient finite; the logits close to
    the fp32 model's (the RALA core is fp32 by design)."""
    model = timm.create_model("ravlt_t", num_classes=10, drop_path_rate=0.0).cuda().train()
    x = torch.randn(batch, 3, side, side, device="cuda")
    target = torch.randint(0, 10, (batch,), device="cuda")
    with torch.no_grad(), ieee_fp32():
        reference = model(x)
    with torch.autocast("cuda", dtype=PRECISIONS[precision]):
        logits = model(x)
        loss = F.cross_entropy(logits, target)
    loss.backward()
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    err = rel_err(logits.detach(), reference)
    record_property("logits_rel_err_vs_fp32", err)
    record_property("loss", loss.item())
    record_property("peak_mib", torch.cuda.max_memory_allocated() / 2**20)
    assert torch.isfinite(logits).all() and torch.isfinite(loss)
    assert not bad, f"non-finite gradients in {bad[:5]}"
    assert err < 0.05


@pytest.mark.parametrize("side", [224, 1024])
@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
def test_softmax_stages_run_a_fused_sdpa_kernel(precision, side, record_property):
    """The 'v' stages of RAVLT-S at the training resolution and at 1024² (64×64 = 4096 tokens in stage 3):
    flash, memory-efficient or cuDNN attention, never the math kernel that builds the N×N matrix."""
    model = timm.create_model("ravlt_s").cuda().eval()
    x = torch.randn(2, 3, side, side, device="cuda")
    softmax_blocks = sum(t == "v" for types in model.attn_types for t in types)
    autocast = torch.autocast("cuda", dtype=PRECISIONS.get(precision, torch.float32), enabled=precision != "fp32")

    def forward():
        with torch.no_grad(), autocast:
            model(x)
        torch.cuda.synchronize()

    forward()  # warm-up outside the profiler
    backends = sdpa_backends(forward)
    record_property("sdpa_backends", backends)
    assert sum(backends.values()) == softmax_blocks
    assert set(backends) <= FUSED, backends
