"""Where the time goes by kind of operation (``python -m ravlt.bench --ops``).

RAVLT-S and convnext_tiny run the bench's own steps (channels-last, fp32; a training step includes the AdamW
update) under ``torch.profiler``, one step of each model per round (after an unprofiled one), interleaved;
each ATen op's own time goes to one kind:

- ``pointwise``: 1×1 convolutions and linear layers, the GEMMs (RAVLT's projections and FFN, ConvNeXt's MLP);
- ``dense conv``: k×k convolutions that mix channels (RAVLT's stem and downsampling, ConvNeXt's);
- ``depth-wise``: depth-wise convolutions (RAVLT's LePE, positional and FFN ones, ConvNeXt's 7×7);
- ``attention``: attention's products (softmax attention's SDPA kernels, RALA's batched matmuls);
- ``other``: the rest — elementwise work (GELU, φ, RoPE, gates, residual adds), norms, copies, the optimizer,
  and the step's time outside any op (Python, autograd's engine).

The summary line per workload sets RAVLT-S's time without its ``other`` beside convnext_tiny's whole time:
the ratio fusing all of that work away could reach at most, with every convolution and attention product
as fast as it runs now. The profiler adds a little time to every op, a little more to the model with more
ops (RAVLT-S); the timed rows of the bench are the speed, this is where it goes.
"""
from __future__ import annotations

import os
import time

import torch
from torch.profiler import ProfilerActivity, profile

from .workloads import BASELINE, MODELS, Workload, make_step, prepare_model

OPS_MODELS = ("ravlt_s", BASELINE)
KINDS = ("pointwise", "dense conv", "depth-wise", "attention", "other")
KIND_LABELS = {
    "pointwise": "pointwise: 1×1 conv, linear",
    "dense conv": "dense k×k conv",
    "depth-wise": "depth-wise conv",
    "attention": "attention products",
    "other": "other: elementwise, norms, copies, optimizer, Python",
}
GEMMS = ("aten::mm", "aten::addmm")
ATTENTION_PRODUCTS = ("aten::bmm", "aten::baddbmm")


def op_kind(name: str, shapes: list) -> str:
    """The kind of one profiled ATen op from its name and input shapes."""
    if name in GEMMS:
        return "pointwise"
    if name in ATTENTION_PRODUCTS or "scaled_dot_product" in name:
        return "attention"
    if name.startswith("aten::") and "conv" in name:
        # forward ops take (input, weight, ...), backward ones (grad_output, input, weight, ...)
        first = 1 if "backward" in name else 0
        if len(shapes) > first + 1 and len(shapes[first]) == 4 and len(shapes[first + 1]) == 4:
            channels, weight = shapes[first][1], shapes[first + 1]
            if weight[1] == 1 and channels == weight[0] > 1:
                return "depth-wise"
            return "pointwise" if weight[2:] == [1, 1] else "dense conv"
    return "other"


def kind_times(step) -> dict[str, float]:
    """Milliseconds per kind of one profiled call of ``step``; they add up to the call's wall time."""
    # kineto, the profiler's backend, logs two lines per profile unless told otherwise (read at its first use)
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        start = time.perf_counter()
        step()
        wall_ms = 1e3 * (time.perf_counter() - start)
    ms = dict.fromkeys(KINDS, 0.0)
    for event in prof.key_averages(group_by_input_shape=True):
        ms[op_kind(event.key, event.input_shapes)] += event.self_cpu_time_total / 1e3
    ms["other"] += max(0.0, wall_ms - sum(ms.values()))
    return ms


def ops_breakdown(workloads: list[Workload], rounds: int) -> list[dict]:
    """One row per (workload, model): mean milliseconds per kind over ``rounds`` interleaved profiled steps."""
    device = torch.device("cpu")
    rows = []
    for workload in workloads:
        steps = {name: make_step(prepare_model(MODELS[name], workload, device), workload, device)
                 for name in OPS_MODELS}
        samples = {name: [] for name in OPS_MODELS}
        for _ in range(rounds):
            for name, step in steps.items():
                step()  # unprofiled, so that the profiled step finds its memory and caches as in a run of steps
                samples[name].append(kind_times(step))
        for name in OPS_MODELS:
            ms = {kind: sum(s[kind] for s in samples[name]) / rounds for kind in KINDS}
            rows.append(dict(workload=workload.label, model=name, ms=ms, total_ms=sum(ms.values())))
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Per workload: RAVLT-S / convnext_tiny from the profiled totals, and with RAVLT-S's ``other`` free."""
    out = []
    for workload in dict.fromkeys(r["workload"] for r in rows):
        mine = {r["model"]: r for r in rows if r["workload"] == workload}
        ravlt, base = mine[OPS_MODELS[0]], mine[BASELINE]
        without_other = ravlt["total_ms"] - ravlt["ms"]["other"]
        out.append(dict(workload=workload, ratio=base["total_ms"] / ravlt["total_ms"],
                        ratio_other_free=base["total_ms"] / without_other))
    return out


def ops_table(ops: dict) -> str:
    """The printed table of ``--ops`` from its record (``rounds``, ``rows`` and their :func:`summary`)."""
    ravlt, base = OPS_MODELS
    rows = ops["rows"]
    lines = [f"Where the time goes by kind of operation (torch.profiler, each op's own time, mean of {ops['rounds']} "
             "interleaved steps):", "",
             f"| workload | kind | {ravlt} ms | share | {base} ms | share |", "|---|---|---:|---:|---:|---:|"]
    for workload in dict.fromkeys(r["workload"] for r in rows):
        mine = {r["model"]: r for r in rows if r["workload"] == workload}
        for kind in KINDS:
            cells = [f"{mine[m]['ms'][kind]:.1f} | {mine[m]['ms'][kind] / mine[m]['total_ms']:.0%}" for m in OPS_MODELS]
            lines.append(f"| {workload} | {KIND_LABELS[kind]} | {' | '.join(cells)} |")
        lines.append(f"| {workload} | total | {mine[ravlt]['total_ms']:.1f} | | {mine[base]['total_ms']:.1f} | |")
    lines.append("")
    for s in ops["summary"]:
        lines.append(f"{s['workload']}: RAVLT-S / convnext_tiny {s['ratio']:.2f} from these totals; "
                     f"{s['ratio_other_free']:.2f} with RAVLT-S's 'other' free (the most fusing it away could give)")
    return "\n".join(lines)
