"""``make bench``: the script end to end on tiny inputs, its target checks, and the memory probe."""
import json

import pytest
import torch

from ravlt.bench.cli import main, parse_args, settle_cpu_diagnostics, softmax_attention_memory
from ravlt.bench.report import faults_line, target_lines, targets
from ravlt.bench.timing import peak_memory_mib
from ravlt.models import RALA, SoftmaxAttention
from ravlt.models.rope import RoPE2d
from ravlt.tools.malloc import heap_bytes


def test_bench_quick_run_writes_table_json_and_plot(tmp_path, capsys):
    result = main(["--quick", "--cpu-class", "native", "--models", "ravlt_t", "convnext_tiny", "--repeats", "2",
                   "--min-seconds", "0", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "| eval b2 64² | ravlt_t |" in printed and "GFLOP/s" in printed
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    assert {(r["model"], r["workload"]) for r in saved["rows"]} == {
        (m, w)
        for m in ("ravlt_t", "convnext_tiny")
        for w in ("eval b2 64²", "train b2 64²", "eval b1 64²", "eval b1 128²")
    }
    for row in saved["rows"]:
        assert len(row["seconds"]) == 2 and row["img_per_s"] > 0 and row["peak_mib"] > 0
        assert row["gflop_per_img"] > 0 and 0 < row["sgemm_fraction"]
        if row["model"] == "convnext_tiny":
            assert row["ratio"] == 1.0
        assert len(row["faults_per_step"]) == 2 and min(row["faults_per_step"]) >= 0
        if heap_bytes() is not None:  # glibc >= 2.33 reports the heap
            assert len(row["heap_growth_mib_per_step"]) == 2 and min(row["heap_growth_mib_per_step"]) >= 0
    assert saved["sgemm_gflops"] > 0 and 1 <= len(saved["meta"]["settle_faults"]) <= 4
    assert "heap settled by " in printed
    if heap_bytes() is not None:  # glibc >= 2.33 reports the heap
        assert saved["meta"]["heap_reserve_mib"] >= 64 and "MiB faulted in at its top" in printed
    assert (tmp_path / "throughput_vs_resolution.png").stat().st_size > 0


def fresh_pages(mib: int):
    """Anonymous memory of its own, every 4-KiB page written once (no huge pages: one fault per page)."""
    import mmap

    memory = mmap.mmap(-1, mib << 20)
    memory.madvise(mmap.MADV_NOHUGEPAGE)
    memory[::4096] = b"x" * ((mib << 20) // 4096)
    return memory


def test_settle_warms_until_a_round_maps_no_fresh_memory():
    pytest.importorskip("resource")
    from ravlt.bench.timing import settle

    kept = []

    def grows_twice():  # maps fresh memory in on its first two calls, as a heap that is still growing
        if len(kept) < 2:
            kept.append(fresh_pages(8))

    faults = settle([grows_twice, lambda: None], max_rounds=4)
    assert len(faults) == 3 and min(faults[:2]) >= 2048 > 256 > faults[2], faults
    assert len(settle([lambda: fresh_pages(8).close()], max_rounds=3)) == 3  # never settles: stops at the limit


def test_sgemm_yardstick_allocates_once():
    from ravlt.bench.timing import sgemm_yardstick

    gflops = sgemm_yardstick(torch.device("cpu"), n=128)
    assert gflops(2) > 0
    assert peak_memory_mib(lambda: gflops(2), torch.device("cpu")) == 0


def test_softmax_attention_never_holds_an_nxn_matrix():
    """RAVLT-S stage 3 at 1024² input: 4096 tokens, 5 heads; one fp32 N×N map of one head is 64 MiB.
    Four times the tokens must cost about four times the memory, not sixteen."""
    cpu = torch.device("cpu")
    probe, quarter = softmax_attention_memory(cpu, torch.float32), softmax_attention_memory(cpu, torch.float32, 32)
    assert probe["tokens"] == 4 * quarter["tokens"] == 4096
    assert probe["peak_mib"] < probe["nxn_mib"] / probe["heads"]
    assert probe["peak_mib"] < 5 * quarter["peak_mib"]


def test_peak_memory_sees_a_materialised_matrix():
    q = torch.randn(1, 1, 2048, 8)
    explicit = peak_memory_mib(lambda: torch.softmax(q @ q.transpose(-1, -2), -1) @ q, torch.device("cpu"))
    assert explicit >= 2048 * 2048 * 4 / 2**20  # the 16 MiB score matrix


def test_targets_read_the_rows():
    def row(model, workload, ratio, seconds, peak=None):
        return dict(model=model, workload=workload, ratio=ratio, seconds_median=seconds, seconds=[seconds] * 3,
                    peak_mib=peak)

    rows = [
        row("ravlt_s", "eval b16 224²", 1.1, 1.0),
        row("ravlt_s", "train b16 224²", 0.7, 1.0, peak=2000.0),
        row("convnext_tiny", "train b16 224²", 1.0, 1.0, peak=1700.0),
        row("ravlt_s_compiled", "train b16 224²", None, 0.8),
        row("ravlt_s_llll", "eval b1 512²", None, 1.0),
        row("ravlt_s_llll", "eval b1 1024²", None, 4.2),
        row("ravlt_s_frozen", "eval b16 224²", None, 0.8),
        row("convnext_tiny_frozen", "eval b16 224²", None, 0.6),
        row("ravlt_s_fused", "eval b16 224²", None, 0.8),
    ]
    checks = targets(rows, None)

    def find(text):
        (check,) = [c for c in checks if text in c["what"]]
        return check

    assert len(checks) == 8
    assert find("inference b16 224²")["met"] is True and find("training step")["met"] is False
    assert abs(find("training peak memory")["value"] - 2000 / 1700) < 1e-9 and find("peak memory")["met"] is True
    assert abs(find("torch.compile")["value"] - 1.25) < 1e-9 and find("torch.compile")["met"] is True
    assert abs(find("1024² / 512²")["value"] - 4.2) < 1e-9
    assert abs(find("frozen (compile_frozen) / eager")["value"] - 1.25) < 1e-9
    assert abs(find("both frozen")["value"] - 0.75) < 1e-9 and find("both frozen")["met"] is None
    assert abs(find("fused (RAVLT.fuse")["value"] - 1.25) < 1e-9


def test_faults_line_names_each_faulted_timed_step_with_its_heap_growth():
    result = {"meta": {"settle_faults": [52_000, 12], "heap_reserve_mib": 1055},
              "rows": [{"model": "ravlt_b", "workload": "train b16 224²", "faults_per_step": [3, 30_836.0],
                        "heap_growth_mib_per_step": [0.0, 120.4]},
                       {"model": "convnext_tiny", "workload": "train b16 224²", "faults_per_step": [0, 255]}]}
    assert faults_line(result) == (
        "heap settled by 2 warm rounds of every step (page faults per round: 52,000 / 12), then grown by 1,055 MiB "
        "faulted in at its top; timed steps with 256+ page faults: ravlt_b train b16 224² 30,836 (round 2, heap grown "
        "by 120.4 MiB)"
    )


def test_a_missed_target_never_prints_as_its_limit():
    def line(value, met, limit=">= 0.45"):
        (text,) = target_lines([dict(what="ratio", value=value, limit=limit, met=met)])
        return text

    assert line(0.448, False) == "  [MISSED] ratio: 0.448 (target >= 0.45)"
    assert line(0.47, True) == "  [met] ratio: 0.47 (target >= 0.45)"
    assert line(1.0516, True, "<= 1.2") == "  [met] ratio: 1.05 (target <= 1.2)"
    assert line(3.0, None, None) == "  [info] ratio: 3.00"


@pytest.mark.slow
def test_frozen_rows_run_compiled(tmp_path):
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    result = main(["--quick", "--cpu-class", "native", "--models", "ravlt_s_frozen", "convnext_tiny_frozen",
                   "--workloads", "eval", "--repeats", "1", "--min-seconds", "0", "--no-flops", "--out", str(tmp_path)])
    rows = {r["model"]: r for r in result["rows"]}
    assert set(rows) == {"ravlt_s_frozen", "convnext_tiny_frozen"}
    assert all(r["workload"] == "eval b2 64²" and r["img_per_s"] > 0 and r["peak_mib"] > 0 for r in rows.values())
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= graphs + 2


def test_avx2_class_runs_in_its_own_process(tmp_path, capsys):
    """The AVX2-only class is imitated through environment variables read at start-up: the bench's
    subprocess for it must report AVX2 kernels. A CPU without AVX-512 is that class already: one run."""
    results = main(["--quick", "--models", "ravlt_t", "--workloads", "eval", "--repeats", "1", "--min-seconds", "0",
                    "--no-flops", "--no-memory", "--out", str(tmp_path)])
    native = torch.backends.cpu.get_cpu_capability()
    assert results["native"]["meta"]["cpu_capability"] == native
    if native.startswith("AVX512"):
        assert results["avx2"]["meta"]["cpu_capability"] == "AVX2"
    else:
        assert list(results) == ["native"] and "=== CPU class avx2 ===" not in capsys.readouterr().out


def test_stage_parts_chain_to_the_forward_and_share_out_the_flops():
    """``--stages``: the parts timed one by one are the whole forward, and their GFLOP add up to fvcore's total."""
    import timm

    from ravlt.bench.stages import part_gflops, stage_parts
    from ravlt.tools.flops import count

    x = torch.randn(2, 3, 64, 64)
    for name in ("ravlt_s", "convnext_tiny"):
        model = timm.create_model(name).eval()
        parts = stage_parts(model)
        assert [label for label, _, _ in parts] == ["stem", "stage 1", "stage 2", "stage 3", "stage 4", "head"]
        with torch.no_grad():
            out = x
            for _, _, fn in parts:
                out = fn(out)
            torch.testing.assert_close(out, model(x), rtol=1e-5, atol=1e-5)
        gflops = part_gflops(model, parts, 64)
        assert all(g > 0 for g in gflops[:-1]) and gflops[-1] >= 0
        assert abs(sum(gflops) - 2 * count(name, 64)[1]) < 1e-6


def test_stages_table_from_a_quick_run(tmp_path, capsys):
    main(["--quick", "--cpu-class", "native", "--models", "ravlt_t", "--workloads", "eval", "--repeats", "1",
          "--min-seconds", "0", "--no-memory", "--no-flops", "--stages", "--out", str(tmp_path)])
    assert "| ravlt_s | stage 1 |" in capsys.readouterr().out
    rows = json.loads((tmp_path / "bench.json").read_text())["stages"]["rows"]
    assert len(rows) == 12 and all(r["ms"] > 0 and r["gflop_per_s"] > 0 for r in rows)


def test_free_rala_core_leaves_the_rest_of_the_block_and_is_undone():
    """``--free-rala-core``: inside, a RALA block is ``proj(LePE(v) ⊙ o)`` (the core gives zeros, forward and
    backward), softmax attention is untouched; afterwards the real core is back."""
    from ravlt.bench.headroom import free_rala_core

    torch.manual_seed(0)
    rala, softmax = RALA(64, 2), SoftmaxAttention(64, 2)
    x = torch.randn(2, 64, 7, 7, requires_grad=True)
    sin, cos = RoPE2d(32)(7, 7)
    real, real_softmax = rala(x, sin, cos), softmax(x, sin, cos)
    with free_rala_core():
        free = rala(x, sin, cos)
        free.sum().backward()
        with torch.no_grad():
            q, k, v, o = rala.qkvo(x).chunk(4, dim=1)
            torch.testing.assert_close(free, rala.proj(rala.lepe(v) * o))
        torch.testing.assert_close(softmax(x, sin, cos), real_softmax)
    assert x.grad is not None and x.grad.abs().sum() > 0  # the gradient flows through LePE, gate, projections
    assert not torch.allclose(real, free, atol=1e-3)
    torch.testing.assert_close(rala(x, sin, cos), real)


def test_free_rala_core_run_is_marked_and_judges_no_targets(tmp_path, capsys):
    result = main(["--quick", "--cpu-class", "native", "--models", "ravlt_t", "--workloads", "eval", "--repeats", "1",
                   "--min-seconds", "0", "--no-memory", "--no-flops", "--free-rala-core", "--out", str(tmp_path)])
    assert "WHAT-IF: RALA core free" in capsys.readouterr().out
    assert result["meta"]["free_rala_core"] is True and result["targets"] == []


def test_compile_memory_budget_option_is_recorded_and_checked(tmp_path, capsys):
    common = ["--quick", "--cpu-class", "native", "--models", "ravlt_t", "--workloads", "eval", "--repeats", "1",
              "--min-seconds", "0", "--no-memory", "--no-flops", "--out", str(tmp_path)]  # fmt: skip
    assert main(common)["meta"]["compile_memory_budget"] is None
    assert main([*common, "--compile-memory-budget", "0.5"])["meta"]["compile_memory_budget"] == 0.5
    with pytest.raises(SystemExit) as stop:
        main([*common, "--compile-memory-budget", "1.5"])
    assert stop.value.code == 2 and "--compile-memory-budget" in capsys.readouterr().err


def test_timed_ops_fall_into_their_kinds_forward_and_backward():
    """``--ops``: each kind of layer, run forward and backward or in inference under the op timer, lands in its own
    kind and in no other (besides 'other', which gets the loss and autograd's own ops, and 'outside ops')."""
    import torch.nn.functional as F

    from ravlt.bench.ops import KINDS, step_times

    def leaf(*shape):
        return torch.randn(*shape).requires_grad_()

    x = torch.randn(2, 8, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_()
    q, k, v = leaf(2, 2, 9, 4), leaf(2, 2, 9, 4), leaf(2, 2, 9, 4)
    layers = {
        "pointwise": [lambda: F.conv2d(x, leaf(16, 8, 1, 1)), lambda: F.linear(leaf(5, 8), leaf(3, 8), leaf(3))],
        "dense conv": [lambda: F.conv2d(x, leaf(4, 8, 3, 3), padding=1),
                       lambda: F.conv2d(x, leaf(4, 8, 3, 3), stride=2)],
        "depth-wise": [lambda: F.conv2d(x, leaf(8, 1, 5, 5), padding=2, groups=8)],
        "attention": [lambda: F.scaled_dot_product_attention(q, k, v), lambda: q @ k.transpose(-1, -2)],
    }

    def training(forward):
        forward().sum().backward()

    def inference(forward):  # ops such as linear and matmul reach the timer undecomposed
        with torch.inference_mode():
            forward()

    for kind, forwards in layers.items():
        for forward in forwards:
            for mode in (training, inference):
                ms = step_times(lambda mode=mode, forward=forward: mode(forward)).ms
                assert set(ms) == set(KINDS) and ms[kind] > 0, (kind, mode.__name__, ms)
                assert all(ms[other] == 0 for other in KINDS if other not in (kind, "other", "outside ops")), (
                    kind, mode.__name__, ms)
            assert "sum" in step_times(lambda forward=forward: training(forward)).other_ops  # the loss


def test_time_outside_the_ops_is_not_any_ops():
    """Each op's own time, not the step's: a step that spends 50 ms in Python beside a small convolution has
    that time in 'outside ops' and a fraction of it in the convolution's kind."""
    import time

    import torch.nn.functional as F

    from ravlt.bench.ops import step_times

    x, weight = torch.randn(1, 8, 16, 16), torch.randn(8, 8, 3, 3)

    def step():
        time.sleep(0.05)
        F.conv2d(x, weight, padding=1)

    ms = step_times(step).ms
    assert ms["outside ops"] >= 45 and 0 < ms["dense conv"] < 10, ms


def test_ops_breakdown_from_a_quick_run(tmp_path, capsys):
    main(["--quick", "--cpu-class", "native", "--models", "ravlt_t", "--workloads", "eval", "train", "--repeats", "1",
          "--min-seconds", "0", "--no-memory", "--no-flops", "--ops", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "| train b2 64² | depth-wise conv |" in printed
    assert "with RAVLT-S's 'other' and 'outside ops' free" in printed
    assert "  eval b2 64², ravlt_s: " in printed  # the largest ops of 'other'
    ops = json.loads((tmp_path / "bench.json").read_text())["ops"]
    rows = {(r["model"], r["workload"]): r for r in ops["rows"]}
    assert rows.keys() == {(m, w) for m in ("ravlt_s", "convnext_tiny") for w in ("eval b2 64²", "train b2 64²")}
    for (model, _), row in rows.items():
        assert row["total_ms"] == pytest.approx(sum(row["ms"].values()))
        assert row["ms"]["pointwise"] > 0 and row["ms"]["depth-wise"] > 0 and row["ms"]["other"] > 0
        assert 0 < sum(row["other_ops"].values()) <= row["ms"]["other"] + 1e-9
        assert row["faults"] >= 0 and row["system_ms"] >= 0
        assert (row["ms"]["attention"] > 0) == (model == "ravlt_s")  # ConvNeXt has no attention
    for s in ops["summary"]:
        ravlt, base = rows["ravlt_s", s["workload"]], rows["convnext_tiny", s["workload"]]
        assert s["ratio"] == pytest.approx(base["total_ms"] / ravlt["total_ms"])
        assert s["ratio_other_free"] > s["ratio"]


def test_ops_is_refused_in_bfloat16_on_the_cpu(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--quick", "--cpu-class", "native", "--models", "ravlt_t", "--dtype", "bfloat16", "--ops",
              "--out", str(tmp_path)])
    assert stop.value.code == 2 and "--ops measure the CPU in float32: leave out --dtype" in capsys.readouterr().err


def test_cpu_diagnostics_step_aside_on_a_gpu(capsys):
    """`make bench` passes --stages --ops everywhere: on a CUDA run they are dropped with a note, not an error."""
    args = parse_args(["--stages", "--ops"])
    settle_cpu_diagnostics(args, torch.device("cuda"), torch.bfloat16)
    assert not args.stages and not args.ops
    assert "skipping --stages and --ops: CPU diagnostics, this run is on cuda" in capsys.readouterr().out
    args = parse_args(["--stages"])
    settle_cpu_diagnostics(args, torch.device("cpu"), torch.float32)
    assert args.stages
