"""Where the time goes by kind of operation (``python -m ravlt.bench --ops``).

RAVLT-S and convnext_tiny run the bench's own steps (channels-last, fp32; a training step includes the AdamW
update), one model after the other per round, after warm rounds that settle the heap (:func:`timing.settle`):
a plain step timed as a whole, then the same step under :class:`OpTimer`, which times every ATen op it calls on
its own and puts that time into one kind:

- ``pointwise``: 1×1 convolutions and linear layers, the GEMMs (RAVLT's projections and FFN, ConvNeXt's MLP);
- ``dense conv``: k×k convolutions that mix channels (RAVLT's stem and downsampling, ConvNeXt's);
- ``depth-wise``: depth-wise convolutions (RAVLT's LePE, positional and FFN ones, ConvNeXt's 7×7);
- ``attention``: attention's products (softmax attention's SDPA kernels, RALA's batched matmuls);
- ``other``: the rest of the ops — elementwise work (GELU, φ, RoPE, gates, residual adds), norms, copies, the
  optimizer; the table beneath names its largest ops;
- ``outside ops``: the plain step's time less all its ops' — Python, autograd's engine, the dispatcher.

The summary line per workload sets RAVLT-S's time without ``other`` and ``outside ops`` beside convnext_tiny's
whole time: the ratio fusing all of that away could reach at most, with every convolution and attention product
as fast as it runs now.

Not ``torch.profiler``: the input shapes its kinds need (``record_shapes``) made profiled steps page-fault in
hundreds of megabytes of fresh memory on the machines measured, 2–3× slower than plain ones, the extra landing on
whichever op touched that memory first (docs/performance.md); a timer around each op allocates nothing. What it
adds — one Python call per op — falls outside the ops' own times.
"""
from __future__ import annotations

import time
from collections import Counter
from typing import NamedTuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .timing import resource_usage, settle
from .workloads import BASELINE, MODELS, Workload, make_step, prepare_model

OPS_MODELS = ("ravlt_s", BASELINE)
OUTSIDE = "outside ops"
KINDS = ("pointwise", "dense conv", "depth-wise", "attention", "other", OUTSIDE)
KIND_LABELS = {
    "pointwise": "pointwise: 1×1 conv, linear",
    "dense conv": "dense k×k conv",
    "depth-wise": "depth-wise conv",
    "attention": "attention products",
    "other": "other ops: elementwise, norms, copies, optimizer",
    OUTSIDE: "outside ops: Python, autograd, dispatch",
}
FUSABLE = ("other", OUTSIDE)
TOP_OTHER_OPS = 6  # the largest ops of 'other' printed per model and workload
GEMMS = ("aten::mm", "aten::addmm", "aten::linear")
ATTENTION_PRODUCTS = ("aten::bmm", "aten::baddbmm")
SHAPED = ("conv", "matmul")  # ops whose kind depends on their inputs' shapes


def op_kind(name: str, shapes: list) -> str:
    """The kind of one ATen op from its name and input shapes (``[]`` for a non-tensor argument)."""
    if name in GEMMS:
        return "pointwise"
    if name in ATTENTION_PRODUCTS or "scaled_dot_product" in name:
        return "attention"
    if name == "aten::matmul":  # under inference mode the op itself, not the mm or bmm it becomes
        return "attention" if len(shapes) > 1 and min(len(shapes[0]), len(shapes[1])) > 2 else "pointwise"
    if "conv" in name:
        # forward ops take (input, weight, ...), backward ones (grad_output, input, weight, ...)
        first = 1 if "backward" in name else 0
        if len(shapes) > first + 1 and len(shapes[first]) == 4 and len(shapes[first + 1]) == 4:
            channels, weight = shapes[first][1], shapes[first + 1]
            if weight[1] == 1 and channels == weight[0] > 1:
                return "depth-wise"
            return "pointwise" if weight[2:] == [1, 1] else "dense conv"
    return "other"


class OpTimer(TorchDispatchMode):
    """Times each ATen op called under it on its own (ops called inside an op's kernel are part of that op);
    ``ms[kind, op name]`` sums the milliseconds."""

    def __init__(self):
        super().__init__()
        self.ms: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        start = time.perf_counter()
        out = func(*args, **(kwargs or {}))
        elapsed = time.perf_counter() - start
        name = func._schema.name
        shaped = any(part in name for part in SHAPED)
        shapes = [list(a.shape) if isinstance(a, torch.Tensor) else [] for a in args] if shaped else []
        self.ms[op_kind(name, shapes), name] += 1e3 * elapsed
        return out


class StepTimes(NamedTuple):
    ms: dict[str, float]  # per kind
    other_ops: Counter  # ms per op name within 'other'
    faults: int  # page faults of the plain step
    system_ms: float  # CPU time the plain step spent in the kernel (all threads)


def step_times(step) -> StepTimes:
    """Milliseconds per kind of one call of ``step`` (they add up to a plain call's wall time, or to the ops'
    own times where those take longer), the ops of ``other`` by name, and the plain call's page faults and
    system time (each fault costs 2–40 µs on the machines measured, docs/performance.md: warm the step first, with
    :func:`timing.settle` where other steps take turns with it)."""
    before, start = resource_usage(), time.perf_counter()
    step()
    wall_ms = 1e3 * (time.perf_counter() - start)
    after = resource_usage()
    timer = OpTimer()
    with timer:
        step()
    ms, other_ops = dict.fromkeys(KINDS, 0.0), Counter()
    for (kind, name), op_ms in timer.ms.items():
        ms[kind] += op_ms
        if kind == "other":
            other_ops[name.removeprefix("aten::")] += op_ms
    ms[OUTSIDE] = max(0.0, wall_ms - sum(ms.values()))
    return StepTimes(ms, other_ops, after[0] - before[0], 1e3 * (after[1] - before[1]))


def ops_breakdown(workloads: list[Workload], rounds: int) -> list[dict]:
    """One row per (workload, model): mean milliseconds per kind over ``rounds`` interleaved steps, the largest
    ops of ``other``, and the plain steps' mean page faults and system time."""
    device = torch.device("cpu")
    rows = []
    for workload in workloads:
        steps = {name: make_step(prepare_model(MODELS[name], workload, device), workload, device)
                 for name in OPS_MODELS}
        samples = {name: [] for name in OPS_MODELS}
        settle(list(steps.values()))
        for _ in range(rounds):
            for name, step in steps.items():
                samples[name].append(step_times(step))
        for name in OPS_MODELS:
            ms = {kind: sum(s.ms[kind] for s in samples[name]) / rounds for kind in KINDS}
            ops = sum((s.other_ops for s in samples[name]), Counter())
            top = {op: op_ms / rounds for op, op_ms in ops.most_common(TOP_OTHER_OPS)}
            rows.append(dict(workload=workload.label, model=name, ms=ms, total_ms=sum(ms.values()), other_ops=top,
                             faults=sum(s.faults for s in samples[name]) / rounds,
                             system_ms=sum(s.system_ms for s in samples[name]) / rounds))
    return rows


def summary(rows: list[dict]) -> list[dict]:
    """Per workload: RAVLT-S / convnext_tiny from the totals, and with RAVLT-S's fusable kinds free."""
    out = []
    for workload in dict.fromkeys(r["workload"] for r in rows):
        mine = {r["model"]: r for r in rows if r["workload"] == workload}
        ravlt, base = mine[OPS_MODELS[0]], mine[BASELINE]
        without_fusable = ravlt["total_ms"] - sum(ravlt["ms"][kind] for kind in FUSABLE)
        out.append(dict(workload=workload, ratio=base["total_ms"] / ravlt["total_ms"],
                        ratio_other_free=base["total_ms"] / without_fusable))
    return out


def ops_table(ops: dict) -> str:
    """The printed table of ``--ops`` from its record (``rounds``, ``rows`` and their :func:`summary`)."""
    ravlt, base = OPS_MODELS
    rows = ops["rows"]
    lines = [f"Where the time goes by kind of operation (each ATen op timed on its own, mean of {ops['rounds']} "
             "interleaved steps):", "",
             f"| workload | kind | {ravlt} ms | share | {base} ms | share |", "|---|---|---:|---:|---:|---:|"]
    workloads = list(dict.fromkeys(r["workload"] for r in rows))
    for workload in workloads:
        mine = {r["model"]: r for r in rows if r["workload"] == workload}
        for kind in KINDS:
            cells = [f"{mine[m]['ms'][kind]:.1f} | {mine[m]['ms'][kind] / mine[m]['total_ms']:.0%}" for m in OPS_MODELS]
            lines.append(f"| {workload} | {KIND_LABELS[kind]} | {' | '.join(cells)} |")
        lines.append(f"| {workload} | total | {mine[ravlt]['total_ms']:.1f} | | {mine[base]['total_ms']:.1f} | |")
    lines += ["", "Largest 'other' ops, ms per step; the plain step's page faults and system time:"]
    for row in rows:
        ops_ms = ", ".join(f"{op} {op_ms:.1f}" for op, op_ms in row["other_ops"].items())
        lines.append(f"  {row['workload']}, {row['model']}: {ops_ms}; "
                     f"{row['faults']:,.0f} faults, {row['system_ms']:.0f} ms system")
    lines.append("")
    for s in ops["summary"]:
        lines.append(f"{s['workload']}: RAVLT-S / convnext_tiny {s['ratio']:.2f} from these totals; "
                     f"{s['ratio_other_free']:.2f} with RAVLT-S's 'other' and 'outside ops' free "
                     "(the most fusing them away could give)")
    return "\n".join(lines)
