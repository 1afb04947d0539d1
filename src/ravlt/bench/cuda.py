"""``python -m ravlt.bench --suite cuda``: the GPU check's measurements in one time-boxed pass.

RAVLT-T/S/B and the all-RALA RAVLT-S beside timm's convnext_tiny, convnext_small and Swin-T under bf16
autocast: batch 128 at 224² (inference and a training step) and batch 1 and 8 at 512² and 1024²
(inference); img/s and peak CUDA memory, eager and ``torch.compile`` (RAVLT-S's compiled training step also
with a memory budget, :mod:`ravlt.tools.compile`); and RALA's fp32 core against the bf16-matmul core
(``RALA.core_dtype``): its speed and the logit difference it causes.

The items run one after another in priority order (:func:`plan`) until ``--budget`` seconds are spent; an
item that would not fit is recorded as not run. ``bench_cuda.json`` and ``bench_cuda.md`` are rewritten
after every item, so a run stopped from outside keeps what it measured.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import timm
import torch

from ravlt.models import RALA

from .timing import calibrate, peak_memory_mib, seconds_per_step, synchronize
from .workloads import BASELINE, MODELS, ModelSpec, Workload, applies, make_step, prepare_model

SUITE_MODELS = {
    **{k: MODELS[k] for k in ("ravlt_t", "ravlt_s")},
    "ravlt_b": ModelSpec("ravlt_b", "ravlt_b"),
    "ravlt_s_llll": MODELS["ravlt_s_llll"],
    BASELINE: MODELS[BASELINE],
    "convnext_small": ModelSpec("convnext_small", "convnext_small"),
    "swin_tiny": MODELS["swin_tiny"],
}
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
CORE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
MEMORY_BUDGET = 0.5  # the compiled training step's activation budget measured beside torch's default
# Seconds an item is expected to take at most on an H100-class GPU (model build, compilation, warm-up,
# timing, memory pass): an item is started only while this much of the budget is left.
EXPECTED_S = {"eager": 4.0, "compile eval": 45.0, "compile train": 90.0, "logits": 6.0}


@dataclass(frozen=True)
class Item:
    model: str
    workload: Workload
    compiled: bool = False
    core: str = "fp32"  # RALA core: "fp32" or "bf16" (RALA.core_dtype)
    memory_budget: float | None = None  # of a compiled training step (ravlt.tools.compile); None: torch's default

    @property
    def run_mode(self) -> str:
        if not self.compiled:
            return "eager"
        return "compile" if self.memory_budget is None else f"compile, memory budget {self.memory_budget}"

    @property
    def label(self) -> str:
        extra = [
            x for x in (self.run_mode if self.compiled else "", f"{self.core} core" if self.core != "fp32" else "") if x
        ]
        return f"{self.workload.label} {self.model}" + (f" ({', '.join(extra)})" if extra else "")

    @property
    def kind(self) -> str:
        return f"compile {self.workload.mode}" if self.compiled else "eager"


@dataclass(frozen=True)
class LogitCheck:
    """Logits of one model with the bf16 RALA core against the fp32 core (and both against fp32)."""

    model: str
    batch: int
    size: int

    @property
    def label(self) -> str:
        return f"logits b{self.batch} {self.size}² {self.model}: bf16 core vs fp32 core"

    kind = "logits"


def workloads(quick: bool) -> dict[str, Workload]:
    if quick:  # tiny sizes, for the CPU tests of the suite itself
        return dict(eval=Workload("eval", 2, 64, "eval"), train=Workload("train", 2, 64, "train"),
                    **{f"b{b} {s}": Workload("eval", b, s, "sweep") for s in (96,) for b in (2, 1)})
    return dict(
        eval=Workload("eval", 128, 224, "eval"),
        train=Workload("train", 128, 224, "train"),
        **{f"b{b} {s}": Workload("eval", b, s, "sweep") for s in (512, 1024) for b in (8, 1)},
    )


def plan(quick: bool = False, compile_models: bool = True) -> list[Item | LogitCheck]:
    """Every measurement of the suite, most wanted first: each model eager at batch 128 (inference, then a
    training step); the bf16 core's logit difference and inference speed; RAVLT-S and the baseline compiled
    (inference); batch 8, then batch 1, at 512² / 1024²; the rest of the bf16 core; the other models compiled,
    and the compiled training steps. One compilation costs as much as a dozen eager measurements."""
    w = workloads(quick)
    models = list(SUITE_MODELS)
    sweeps = [key for key in w if key not in ("eval", "train")]
    batched, single = [k for k in sweeps if not k.startswith("b1 ")], [k for k in sweeps if k.startswith("b1 ")]
    big, small = (96, 64) if quick else (1024, 224)
    first_compiled = ["ravlt_s", BASELINE]
    items: list[Item | LogitCheck] = []
    items += [Item(m, w["eval"]) for m in models]
    items += [Item(m, w["train"]) for m in models if applies(SUITE_MODELS[m], w["train"])]
    items += [LogitCheck("ravlt_s", 2 if quick else 8, small), LogitCheck("ravlt_s_llll", 1, big)]
    items += [Item("ravlt_s", w["eval"], core="bf16")]
    if compile_models:
        items += [Item(m, w["eval"], compiled=True) for m in first_compiled]
    items += [Item(m, w[key]) for key in batched for m in models]
    items += [Item(m, w[key]) for key in single for m in models]
    items += [Item("ravlt_s", w["train"], core="bf16"), Item("ravlt_s_llll", w[batched[-1]], core="bf16")]
    if compile_models:
        items += [Item(m, w["eval"], compiled=True) for m in models if m not in first_compiled]
        items += [Item(m, w["train"], compiled=True) for m in first_compiled]
        items += [Item("ravlt_s", w["train"], compiled=True, memory_budget=MEMORY_BUDGET)]
    return items


def set_core_dtype(model: torch.nn.Module, dtype: torch.dtype) -> int:
    """Set ``core_dtype`` of every RALA in ``model``; returns how many there are."""
    layers = [m for m in model.modules() if isinstance(m, RALA)]
    for m in layers:
        m.core_dtype = dtype
    return len(layers)


@contextlib.contextmanager
def ieee_fp32():
    """fp32 matrix products and convolutions in full fp32 (no TF32) inside the block."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


class Runner:
    """Runs items, keeping built models for the items that follow (one per model, mode, size and core)."""

    def __init__(self, device: torch.device, dtype: torch.dtype, min_seconds: float, repeats: int):
        self.device, self.dtype = device, dtype
        self.min_seconds, self.repeats = min_seconds, repeats
        self.models: dict[tuple, torch.nn.Module] = {}

    def model(self, spec: ModelSpec, workload: Workload, core: str) -> torch.nn.Module:
        key = (spec.label, workload.mode, workload.size if spec.sized else None, core)
        if key not in self.models:
            model = prepare_model(spec, workload, self.device)
            set_core_dtype(model, CORE_DTYPES[core])
            self.models[key] = model
        return self.models[key]

    def measure(self, item: Item) -> dict:
        spec, workload = SUITE_MODELS[item.model], item.workload
        model = self.model(spec, workload, item.core)
        if item.compiled:  # compile afresh, under this item's settings: Dynamo would reuse another RAVLT's graph
            torch._dynamo.reset()
        step = make_step(model, workload, self.device, self.dtype, item.compiled, item.memory_budget)
        synchronize(self.device)
        start = time.perf_counter()
        step()  # compilation, cuDNN's algorithm search, allocator growth
        synchronize(self.device)
        first = time.perf_counter() - start
        iters = calibrate(step, self.device, self.min_seconds)
        times = [seconds_per_step(step, self.device, iters) for _ in range(self.repeats)]
        seconds = statistics.median(times)
        return dict(
            img_per_s=workload.batch / seconds,
            ms_per_step=1e3 * seconds,
            seconds=times,
            iters=iters,
            first_step_s=first,
            peak_mib=peak_memory_mib(step, self.device),
        )

    def logits(self, check: LogitCheck) -> dict:
        spec = SUITE_MODELS[check.model]
        torch.manual_seed(0)
        model = spec.build(check.size).to(self.device).eval()
        x = torch.randn(check.batch, 3, check.size, check.size, device=self.device)
        autocast = torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)
        with torch.inference_mode():
            with ieee_fp32():
                fp32 = model(x).float()
            with autocast:
                core32 = model(x).float()
            n = set_core_dtype(model, torch.bfloat16)
            with autocast:
                core16 = model(x).float()
        return dict(
            rala_layers=n,
            autocast_vs_fp32=rel_err(core32, fp32),
            bf16_core_vs_fp32_core=rel_err(core16, core32),
            bf16_core_vs_fp32=rel_err(core16, fp32),
            max_abs_logit_change=(core16 - core32).abs().max().item(),
            logit_rms=core32.square().mean().sqrt().item(),
        )


def run(args: argparse.Namespace, write) -> dict:
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    on_cuda = device.type == "cuda" and torch.cuda.is_available()  # (--plan runs anywhere)
    if on_cuda:  # fixed shapes: let cuDNN pick its fastest algorithms, for every model alike
        torch.backends.cudnn.benchmark = True
    started = time.perf_counter()
    items = [i for i in plan(args.quick, compile_models=not args.no_compile) if i.model in args.models]
    result = dict(
        meta=dict(
            suite="cuda",
            device=device.type,
            device_name=torch.cuda.get_device_name(device) if on_cuda else device.type,
            dtype=args.dtype,
            torch=torch.__version__,
            timm=timm.__version__,
            cuda=torch.version.cuda,
            cudnn_benchmark=on_cuda,
            budget_s=args.budget,
            min_seconds=args.min_seconds,
            repeats=args.repeats,
            baseline=BASELINE,
            plan_only=args.plan,
            models=args.models,
        ),
        items=[],
    )
    runner = Runner(device, dtype, args.min_seconds, args.repeats)
    for item in items:
        record = dict(label=item.label, kind=item.kind)
        if isinstance(item, Item):
            record.update(model=item.model, workload=item.workload.label, mode=item.workload.mode,
                          batch=item.workload.batch, size=item.workload.size, compiled=item.compiled, core=item.core,
                          run_mode=item.run_mode)
        else:
            record.update(model=item.model, batch=item.batch, size=item.size)
        left = args.budget - (time.perf_counter() - started)
        if args.plan:
            if not timm.is_model(SUITE_MODELS[item.model].timm_name):
                raise SystemExit(f"error: {SUITE_MODELS[item.model].timm_name} is not a timm model; fix SUITE_MODELS")
            record["status"] = "planned"
        elif left < EXPECTED_S[item.kind]:
            record["status"] = f"not run: {max(left, 0):.0f} s of the budget left, {EXPECTED_S[item.kind]:.0f} s needed"
        else:
            t0 = time.perf_counter()
            try:
                record.update(runner.measure(item) if isinstance(item, Item) else runner.logits(item))
                record["status"] = "ok"
            except Exception as e:  # an OOM or a compiler failure of one item must not cost the others
                record["status"] = f"error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            record["item_s"] = round(time.perf_counter() - t0, 2)
            print(f"[{time.perf_counter() - started:6.1f} s] {item.label}: {summary(record)}", flush=True)
        result["items"].append(record)
        result["meta"]["elapsed_s"] = round(time.perf_counter() - started, 1)
        write(result)
    add_ratios(result["items"])
    write(result)
    return result


def add_ratios(records: list[dict]) -> None:
    """img/s relative to the baseline on the same workload, both eager with the fp32 core."""
    base = {r["workload"]: r["img_per_s"] for r in records
            if r.get("model") == BASELINE and r.get("kind") == "eager" and "img_per_s" in r}  # fmt: skip
    for r in records:
        if "img_per_s" in r and r.get("workload") in base:
            r["vs_baseline"] = r["img_per_s"] / base[r["workload"]]


def summary(r: dict) -> str:
    if r["status"] != "ok":
        return r["status"]
    if "img_per_s" in r:
        return f"{r['img_per_s']:.1f} img/s, peak {r['peak_mib']:.0f} MiB, first step {r['first_step_s']:.1f} s"
    return f"rel. logit change {r['bf16_core_vs_fp32_core']:.2e} (bf16 autocast alone: {r['autocast_vs_fp32']:.2e})"


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(result: dict) -> str:
    meta = result["meta"]
    precision = f"{meta['dtype']} autocast" if meta["dtype"] != "float32" else "float32 (no autocast)"
    lines = [
        f"CUDA bench: {meta['device_name']}, {precision}, torch {meta['torch']} (CUDA {meta['cuda']}), "
        f"timm {meta['timm']}; median of {meta['repeats']} repeats of ≥ {meta['min_seconds']} s; "
        f"{meta.get('elapsed_s', 0):.0f} s of a {meta['budget_s']:.0f} s budget",
        "",
        f"| workload | model | mode | RALA core | img/s | × {BASELINE} | peak MiB | first step s | status |",
        "|---|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in result["items"]:
        if r["kind"] == "logits":
            continue
        lines.append(
            f"| {r['workload']} | {r['model']} | {r['run_mode']} | {r['core']} | "
            f"{_fmt(r.get('img_per_s'), '.1f')} | "
            f"{_fmt(r.get('vs_baseline'), '.2f')} | {_fmt(r.get('peak_mib'), '.0f')} | "
            f"{_fmt(r.get('first_step_s'), '.1f')} | {r['status']} |"
        )
    checks = [r for r in result["items"] if r["kind"] == "logits"]
    if checks:
        lines += [
            "",
            "RALA core in bf16 (fp32 accumulation) against fp32, relative L2 difference of the logits:",
            "",
            "| model | input | bf16 core vs fp32 core | bf16 autocast (fp32 core) vs fp32 | "
            "bf16 core vs fp32 | status |",
            "|---|---|---:|---:|---:|---|",
        ]
        for r in checks:
            lines.append(
                f"| {r['model']} | b{r['batch']} {r['size']}² | {_fmt(r.get('bf16_core_vs_fp32_core'), '.2e')} | "
                f"{_fmt(r.get('autocast_vs_fp32'), '.2e')} | "
                f"{_fmt(r.get('bf16_core_vs_fp32'), '.2e')} | {r['status']} |"
            )
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ravlt.bench --suite cuda", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--suite", choices=["cuda"], default="cuda")
    p.add_argument("--budget", type=float, default=165.0, help="seconds; items that would not fit are not run")
    p.add_argument("--device", default="cuda", help="cuda (default); cpu only with --quick, to test the suite")
    p.add_argument("--dtype", choices=list(DTYPES), default="bfloat16", help="autocast dtype (float32: none)")
    p.add_argument("--min-seconds", type=float, default=0.15, help="least duration of one timed repeat")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats per item; the median is reported")
    p.add_argument("--models", nargs="+", default=list(SUITE_MODELS), choices=list(SUITE_MODELS),
                   help="leave out the items of the other models")
    p.add_argument("--no-compile", action="store_true", help="leave out the torch.compile items")
    p.add_argument("--quick", action="store_true", help="tiny inputs, for a smoke test")
    p.add_argument("--plan", action="store_true", help="list the items (checking the model names) without running")
    p.add_argument("--out", type=Path, default=Path("outputs/bench_cuda"))
    args = p.parse_args(argv)
    if not args.plan and args.device.startswith("cuda") and not torch.cuda.is_available():
        p.exit(2, "error: no CUDA device here: --device cpu --quick tests the suite on the CPU, --plan lists it\n")
    return args


def main(argv: list[str]) -> dict:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    def write(result: dict) -> None:
        for name, text in (("bench_cuda.json", json.dumps(result, indent=2, ensure_ascii=False) + "\n"),
                           ("bench_cuda.md", table(result) + "\n")):  # fmt: skip
            tmp = args.out / (name + ".tmp")
            tmp.write_text(text)
            tmp.replace(args.out / name)

    result = run(args, write)
    print()
    print(table(result))
    print(f"\nwrote {args.out / 'bench_cuda.json'} and {args.out / 'bench_cuda.md'}")
    return result
