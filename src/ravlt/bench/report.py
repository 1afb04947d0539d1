"""The bench's outputs: the printed table and target checks, the JSON record, the log-log plot."""
from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

from ravlt.files import write_text_atomically

from .timing import SETTLED_FAULTS

# The issue's targets for RAVLT-S against convnext_tiny, CPU fp32, same run.
RATIO_TARGETS = (
    ("eval b16 224²", 0.95, "RAVLT-S / convnext_tiny img/s, inference b16 224²"),
    ("train b16 224²", 0.9, "RAVLT-S / convnext_tiny img/s, training step b16 224²"),
    ("eval b1 224²", 0.8, "RAVLT-S / convnext_tiny img/s, inference b1 224²"),
    ("eval b1 1024²", 0.45, "RAVLT-S / convnext_tiny img/s, inference b1 1024²"),
)
LINEAR_SCALING_LIMIT = 4.5  # all-RALA RAVLT-S: time(1024²) / time(512²)
MEMORY_LIMIT = 1.2  # RAVLT-S training peak / convnext_tiny's
TRAIN = "train b16 224²"


def _row(rows: list[dict], model: str, workload: str) -> dict | None:
    return next((r for r in rows if r["model"] == model and r["workload"] == workload), None)


def _speedup(fast: dict, slow: dict) -> float:
    """Median over rounds of the per-round speed ratio (each round times both close together)."""
    return statistics.median(s / f for f, s in zip(fast["seconds"], slow["seconds"]))


def _check(what: str, value: float, limit: str | None = None, met: bool | None = None) -> dict:
    return dict(what=what, value=value, limit=limit, met=met)


def targets(rows: list[dict], softmax_memory: dict | None) -> list[dict]:
    """Each target with its measured value (``met`` None: reported, no target); targets whose rows were
    not measured are left out."""
    checks = []
    for workload, minimum, what in RATIO_TARGETS:
        row = _row(rows, "ravlt_s", workload)
        if row and row.get("ratio") is not None:
            checks.append(_check(what, row["ratio"], f">= {minimum}", row["ratio"] >= minimum))
    low, high = _row(rows, "ravlt_s_llll", "eval b1 512²"), _row(rows, "ravlt_s_llll", "eval b1 1024²")
    if low and high:
        growth = high["seconds_median"] / low["seconds_median"]
        what = "all-RALA RAVLT-S time 1024² / 512² (4.0 = linear in pixels)"
        checks.append(_check(what, growth, f"<= {LINEAR_SCALING_LIMIT}", growth <= LINEAR_SCALING_LIMIT))
    base = _row(rows, "convnext_tiny", TRAIN)
    for model in ("ravlt_s", "ravlt_t", "ravlt_b", "ravlt_s_ckpt", "ravlt_s_compiled"):
        row = _row(rows, model, TRAIN)
        if base and row and row.get("peak_mib") and base.get("peak_mib"):
            ratio = row["peak_mib"] / base["peak_mib"]
            what = f"{model} / convnext_tiny training peak memory, b16 224² fp32"
            checks.append(_check(what, ratio, f"<= {MEMORY_LIMIT}", ratio <= MEMORY_LIMIT) if model == "ravlt_s"
                          else _check(what, ratio))
    eager = {w: _row(rows, "ravlt_s", w) for w in ("eval b16 224²", TRAIN, "eval b1 224²", "eval b1 1024²")}
    ckpt = _row(rows, "ravlt_s_ckpt", TRAIN)
    if ckpt and eager[TRAIN]:
        checks.append(
            _check("ravlt_s with set_grad_checkpointing() / without, training img/s", _speedup(ckpt, eager[TRAIN]))
        )
    for workload in ("eval b16 224²", TRAIN):
        compiled = _row(rows, "ravlt_s_compiled", workload)
        if compiled and eager[workload]:
            ratio = _speedup(compiled, eager[workload])
            checks.append(_check(f"ravlt_s torch.compile / eager img/s, {workload}", ratio, ">= 1.0", ratio >= 1.0))
    for workload, row in eager.items():
        frozen, frozen_base = _row(rows, "ravlt_s_frozen", workload), _row(rows, "convnext_tiny_frozen", workload)
        if frozen and row:
            checks.append(_check(f"ravlt_s frozen (compile_frozen) / eager img/s, {workload}", _speedup(frozen, row)))
        if frozen and frozen_base:
            what = f"ravlt_s / convnext_tiny img/s, both frozen (compile_frozen), {workload}"
            checks.append(_check(what, _speedup(frozen, frozen_base)))
        fused = _row(rows, "ravlt_s_fused", workload)
        if fused and row:
            what = f"ravlt_s fused (RAVLT.fuse: BatchNorm folded, 1×1 weights packed) / eager img/s, {workload}"
            checks.append(_check(what, _speedup(fused, row)))
        onnx = _row(rows, "ravlt_s_onnxruntime", workload)
        if onnx and row:
            checks.append(_check(f"ravlt_s onnxruntime / PyTorch eager img/s, {workload}", _speedup(onnx, row)))
    if softmax_memory:
        checks.append(
            _check(
                f"softmax attention peak MiB at {softmax_memory['tokens']} tokens "
                f"(one N×N map per head would be {softmax_memory['nxn_mib']:.0f} MiB)",
                softmax_memory["peak_mib"],
                f"< {softmax_memory['nxn_mib'] / softmax_memory['heads']:.0f} (one N×N map)",
                softmax_memory["peak_mib"] < softmax_memory["nxn_mib"] / softmax_memory["heads"],
            )
        )
    return checks


def target_lines(checks: list[dict]) -> list[str]:
    lines = []
    for t in checks:
        status = "info" if t["met"] is None else "met" if t["met"] else "MISSED"
        limit = f" (target {t['limit']})" if t["limit"] else ""
        lines.append(f"  [{status}] {t['what']}: {shown_value(t['value'], t['limit'])}{limit}")
    return lines


def shown_value(value: float, limit: str | None) -> str:
    """Two decimals, or three where two would print the limit itself (0.448 against >= 0.45)."""
    text = f"{value:.2f}"
    bound = re.search(r"\d+(\.\d+)?", limit or "")
    return f"{value:.3f}" if bound and float(text) == float(bound.group()) else text


def _machine(meta: dict) -> str:
    threads = meta["threads"]
    return meta["device_name"] + (f" ({threads} thread{'s' * (threads != 1)})" if threads else "")


def _cpu_class(meta: dict) -> str:
    return f", CPU class {meta['cpu_capability']}" if meta.get("cpu_capability") else ""


def _budget(meta: dict) -> str:
    if not meta.get("compiled_models"):
        return ""
    budget = meta["compile_memory_budget"]
    return f", compiled training's memory budget {'torch default' if budget is None else budget}"


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _heap_growth(row: dict, round_: int) -> str:
    growth = row.get("heap_growth_mib_per_step", [])
    return f", heap grown by {growth[round_]:,.1f} MiB" if round_ < len(growth) and growth[round_] is not None else ""


def faults_line(result: dict) -> str | None:
    """The warm rounds' page faults and the timed steps that still faulted (CPU); None where nothing was counted."""
    settled = result["meta"].get("settle_faults")
    if not settled:
        return None
    faulting = [f"{r['model']} {r['workload']} {f:,.0f} (round {i + 1}{_heap_growth(r, i)})" for r in result["rows"]
                for i, f in enumerate(r.get("faults_per_step", [])) if f >= SETTLED_FAULTS]
    reserve = result["meta"].get("heap_reserve_mib")
    return (f"heap settled by {len(settled)} warm round{'s' * (len(settled) != 1)} of every step "
            f"(page faults per round: {' / '.join(f'{f:,}' for f in settled)})"
            f"{f', then grown by {reserve:,} MiB faulted in at its top' if reserve else ''}; timed steps with "
            f"{SETTLED_FAULTS}+ page faults: {', '.join(faulting) or 'none'}")


def table(result: dict) -> str:
    meta = result["meta"]
    lines = [
        f"RAVLT bench: {_machine(meta)}{_cpu_class(meta)}, {meta['dtype']}"
        f"{', torch.compile' if meta['compile'] else ''}{_budget(meta)}"
        f"{', RAVLT inference fused' if meta['fuse'] else ''}"
        f"{', WHAT-IF: RALA core free (zeros)' if meta.get('free_rala_core') else ''}, "
        f"torch {meta['torch']}, timm {meta['timm']}, malloc: {meta['malloc']}; "
        f"{meta['clock']} clock, median of {meta['repeats']} "
        f"interleaved rounds (ratios: median of per-round ratios); "
        f"load average {meta['load_before']} -> {meta['load_after']}",
        f"sgemm (torch.mm {meta['sgemm_n']}², fp32): {result['sgemm_gflops']:.0f} GFLOP/s",
        *filter(None, [faults_line(result)]),
        "",
        "| workload | model | img/s | × convnext_tiny | peak MiB | GFLOP/img | GFLOP/s | % of sgemm |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['workload']} | {r['model']} | {r['img_per_s']:.2f} | {_fmt(r['ratio'], '.2f')} | "
            f"{_fmt(r['peak_mib'], '.0f')} | {_fmt(r['gflop_per_img'], '.1f')} | {_fmt(r['gflop_per_s'], '.0f')} | "
            f"{_fmt(r['sgemm_fraction'] and 100 * r['sgemm_fraction'], '.0f')} |"
        )
    if result["targets"]:
        lines += ["", "Targets (same run):", *target_lines(result["targets"])]
    return "\n".join(lines)


def write_json(result: dict, path: Path) -> None:
    write_text_atomically(path, json.dumps(result, indent=2, ensure_ascii=False) + "\n")


def plot(result: dict, path: Path) -> bool:
    """Throughput against input side, log-log, for the resolution sweep. Returns False if there is
    no sweep (fewer than two sizes) to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullLocator

    sweep_batch = result["meta"]["sweep_batch"]
    series: dict[str, list[tuple[int, float]]] = {}
    for r in result["rows"]:
        if r["group"] == "sweep":
            series.setdefault(r["model"], []).append((r["size"], r["img_per_s"]))
    series = {m: sorted(p) for m, p in series.items() if len(p) >= 2}
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(7, 5))
    for model, points in series.items():
        sizes, speeds = zip(*points)
        ax.plot(sizes, speeds, marker="o", label=model)
        (s0, v0), (s1, v1) = points[-2], points[-1]
        slope = math.log(v1 / v0) / math.log(s1 / s0)
        ax.annotate(f"{slope:.2f}", (s1, v1), textcoords="offset points", xytext=(6, 0), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    sizes = sorted({s for p in series.values() for s, _ in p})
    ax.set_xticks(sizes, [f"{s}²" for s in sizes])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("input resolution")
    ax.set_ylabel(f"images / s (batch {sweep_batch})")
    meta = result["meta"]
    ax.set_title(f"Inference throughput vs resolution ({_machine(meta)}, {meta['dtype']})", fontsize=9)
    ax.text(0.01, 0.01, "slope of the last segment: -2 = cost linear in pixels, -4 = quadratic",
            transform=ax.transAxes, fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
