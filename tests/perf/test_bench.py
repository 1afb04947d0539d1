"""``make bench``: the script end to end on tiny inputs, its target checks, and the memory probe."""
import json

import torch

from ravlt.bench.cli import main, softmax_attention_memory
from ravlt.bench.report import targets
from ravlt.bench.timing import peak_memory_mib


def test_bench_quick_run_writes_table_json_and_plot(tmp_path, capsys):
    result = main(["--quick", "--cpu-class", "native", "--models", "ravlt_t", "convnext_tiny", "--repeats", "2",
                   "--min-seconds", "0", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "| eval b2 64² | ravlt_t |" in printed and "GFLOP/s" in printed
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(result["rows"]))
    assert {(r["model"], r["workload"]) for r in saved["rows"]} == {
        (m, w) for m in ("ravlt_t", "convnext_tiny") for w in ("eval b2 64²", "train b2 64²", "eval b1 64²", "eval b1 128²")
    }
    for row in saved["rows"]:
        assert len(row["seconds"]) == 2 and row["img_per_s"] > 0 and row["peak_mib"] > 0
        assert row["gflop_per_img"] > 0 and 0 < row["sgemm_fraction"]
        if row["model"] == "convnext_tiny":
            assert row["ratio"] == 1.0
    assert saved["sgemm_gflops"] > 0
    assert (tmp_path / "throughput_vs_resolution.png").stat().st_size > 0


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
    ]
    checks = targets(rows, None)

    def find(text):
        (check,) = [c for c in checks if text in c["what"]]
        return check

    assert len(checks) == 5
    assert find("inference b16 224²")["met"] is True and find("training step")["met"] is False
    assert abs(find("training peak memory")["value"] - 2000 / 1700) < 1e-9 and find("peak memory")["met"] is True
    assert abs(find("torch.compile")["value"] - 1.25) < 1e-9 and find("torch.compile")["met"] is True
    assert abs(find("1024² / 512²")["value"] - 4.2) < 1e-9


def test_avx2_class_runs_in_its_own_process(tmp_path):
    """The AVX2-only class is imitated through environment variables read at start-up: the bench's
    subprocess for it must report AVX2 kernels."""
    results = main(["--quick", "--models", "ravlt_t", "--workloads", "eval", "--repeats", "1", "--min-seconds", "0",
                    "--no-flops", "--no-memory", "--out", str(tmp_path)])
    assert results["avx2"]["meta"]["cpu_capability"] == "AVX2"
    assert results["native"]["meta"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
