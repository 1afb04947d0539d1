"""``python -m ravlt.bench --suite cuda`` on the CPU: its plan, a quick run of the same code, the budget that
stops it, and the SDPA kernel detector the CUDA tests rely on."""
import json

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from ravlt.bench.cli import main
from ravlt.bench.cuda import MEMORY_BUDGET, SUITE_MODELS, Item, LogitCheck, plan
from ravlt.models import SoftmaxAttention
from ravlt.models.rope import RoPE2d
from ravlt.tools.sdpa import sdpa_backends


def test_plan_covers_the_issue_workloads_in_priority_order():
    items = plan()
    labels = [i.label for i in items]
    assert len(labels) == len(set(labels))
    measured = {(i.model, i.workload.label, i.compiled, i.core) for i in items if isinstance(i, Item)}
    for model in SUITE_MODELS:
        for workload in ("eval b128 224²", "eval b1 512²", "eval b8 512²", "eval b1 1024²", "eval b8 1024²"):
            assert (model, workload, False, "fp32") in measured
        assert (model, "eval b128 224²", True, "fp32") in measured
        if model != "ravlt_s_llll":  # the all-RALA ablation is an inference model
            assert (model, "train b128 224²", False, "fp32") in measured
    assert {
        "ravlt_t", "ravlt_s", "ravlt_b", "ravlt_s_llll", "convnext_tiny", "convnext_small", "swin_tiny"
    } == set(SUITE_MODELS)
    assert ("ravlt_s", "eval b128 224²", False, "bf16") in measured
    assert {(c.model, c.size) for c in items if isinstance(c, LogitCheck)} == {("ravlt_s", 224), ("ravlt_s_llll", 1024)}
    # every eager measurement at batch 128 comes before any compiled one, the compiled training steps last
    first_compiled = next(n for n, i in enumerate(items) if getattr(i, "compiled", False))
    assert all(n < first_compiled for n, i in enumerate(items) if isinstance(i, Item) and i.workload.batch == 128
               and not i.compiled and i.core == "fp32")  # fmt: skip
    assert [i.compiled and i.workload.mode for i in items[-3:]] == ["train", "train", "train"]
    assert (items[-1].model, items[-1].memory_budget) == ("ravlt_s", MEMORY_BUDGET)  # beside torch's default
    assert items[-1].label == "train b128 224² ravlt_s (compile, memory budget 0.5)"


@pytest.mark.slow  # about 20 s on 2 idle cores
def test_quick_cpu_run_measures_records_and_compares_cores(tmp_path, capsys):
    # fp32: bf16 autocast is emulated (slow) on CPUs without bf16 instructions
    result = main(["--suite", "cuda", "--device", "cpu", "--quick", "--no-compile",
                   "--models", "ravlt_s", "convnext_tiny", "--dtype", "float32",
                   "--min-seconds", "0", "--repeats", "1", "--budget", "600", "--out", str(tmp_path)])  # fmt: skip
    saved = json.loads((tmp_path / "bench_cuda.json").read_text())
    assert saved["items"] == json.loads(json.dumps(result["items"]))
    statuses = {r["label"]: r["status"] for r in saved["items"]}
    assert set(statuses.values()) == {"ok"}, statuses
    assert {
        "eval b2 64² ravlt_s", "train b2 64² convnext_tiny", "eval b1 96² ravlt_s", "eval b2 64² ravlt_s (bf16 core)"
    } <= set(statuses)
    rows = [r for r in saved["items"] if r["kind"] == "eager"]
    assert all(r["img_per_s"] > 0 and r["peak_mib"] > 0 and len(r["seconds"]) == 1 for r in rows)
    assert all(r["vs_baseline"] == 1.0 for r in rows if r["model"] == "convnext_tiny")
    (check,) = [r for r in saved["items"] if r["kind"] == "logits"]
    assert check["rala_layers"] == 8  # RAVLT-S: 3 + 5 blocks in the two RALA stages
    assert 0 < check["bf16_core_vs_fp32_core"] < 0.05 and check["autocast_vs_fp32"] == 0  # no autocast in fp32
    md = (tmp_path / "bench_cuda.md").read_text()
    assert "| eval b2 64² | ravlt_s | eager | bf16 |" in md and "| ravlt_s | b2 64² |" in md
    assert "bench_cuda.md" in capsys.readouterr().out


def test_budget_stops_the_suite_and_says_so(tmp_path):
    result = main(["--suite", "cuda", "--device", "cpu", "--quick", "--budget", "0", "--out", str(tmp_path)])
    assert result["items"] and all(r["status"].startswith("not run: 0 s of the budget left") for r in result["items"])
    assert json.loads((tmp_path / "bench_cuda.json").read_text())["items"] == result["items"]


def test_sdpa_detector_tells_the_fused_kernel_from_the_math_one():
    attn = SoftmaxAttention(64, 2).eval()
    sin, cos = RoPE2d(32)(8, 8)
    x = torch.randn(1, 64, 8, 8).contiguous(memory_format=torch.channels_last)  # as inside RAVLT

    def forward():
        with torch.no_grad():
            attn(x, sin, cos)

    assert sdpa_backends(forward) == {"flash (cpu)": 1}
    with sdpa_kernel(SDPBackend.MATH):
        assert sdpa_backends(forward) == {"math": 1}
