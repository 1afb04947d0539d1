"""``make bench`` / ``python -m ravlt.bench``: RAVLT against convnext_tiny and Swin-T, same run.

Every model is timed on every workload in the same process, interleaved (each round runs each
workload on each model, starting from a different model each round), and the median of the rounds
is reported, so that the ratios survive a machine shared with other jobs. Prints a markdown table
and the issue's targets, writes ``bench.json`` and ``throughput_vs_resolution.png`` to ``--out``.
``--suite cuda`` runs the GPU check's suite instead (:mod:`ravlt.bench.cuda`, its own options).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

import timm
import torch

from ravlt.checks import check_device
from ravlt.commands import ArgumentParser, nonnegative_float, positive_int, run_command
from ravlt.errors import ConfigError
from ravlt.models import SoftmaxAttention
from ravlt.models.rope import RoPE2d
from ravlt.tools.compile import checked_budget
from ravlt.tools.flops import count
from ravlt.tools.malloc import grow_heap_top, heap_bytes, keep_freed_memory

from .headroom import free_rala_core
from .ops import ops_breakdown, ops_table, summary
from .report import plot, table, target_lines, targets, write_json
from .stages import stage_breakdown, stages_table
from .timing import CLOCKS, calibrate, peak_memory_mib, resource_usage, seconds_per_step, settle, sgemm_yardstick
from .workloads import (
    BASELINE,
    MODELS,
    applies,
    default_workloads,
    make_step,
    onnxruntime_session,
    onnxruntime_step,
    prepare_model,
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# An AVX-512 CPU imitates the AVX2-only class (ATen's kernels, oneDNN and MKL alike); read at start-up, so
# the bench runs each class in a process of its own.
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
CPU_CLASSES = ("native", "avx2")
SGEMM_N = 2048
# Faulted in at the heap's top after the warm rounds: a timed step that still grows the heap grows into it (the most
# seen was 120 MiB: RAVLT-B's training step, docs/performance.md), not into fresh pages.
HEAP_RESERVE = 1 << 30
QUICK_HEAP_RESERVE = 64 << 20  # --quick's tiny steps
OPS_ROUNDS = 3  # op-timed steps per model and workload for --ops (a breakdown needs fewer than a timing)


def memory_budget(text: str) -> float | None:
    return None if text.lower() in ("none", "null") else checked_budget(float(text))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = ArgumentParser(prog="python -m ravlt.bench", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--workloads", nargs="+", default=["eval", "train", "sweep"], choices=["eval", "train", "sweep"],
                   help="eval: inference at 224² (batch 16 CPU, 128 CUDA); train: a training step, same batch; "
                   "sweep: inference at 224²/512²/1024² (batch 1 CPU, 16 CUDA)")
    p.add_argument("--repeats", type=positive_int, default=7, help="interleaved rounds; the median is reported")
    p.add_argument("--min-seconds", type=nonnegative_float, default=0.5, help="least duration of one timed repeat")
    p.add_argument("--threads", type=positive_int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--clock", choices=list(CLOCKS), default="wall",
                   help="wall: elapsed time; cpu: the thread's CPU time, immune to other jobs on a shared "
                   "machine (needs --threads 1 on CPU)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda if available, else cpu")
    p.add_argument("--cpu-class", choices=[*CPU_CLASSES, "both"], default="both",
                   help="CPU: this machine's instruction set (native), the AVX2-only class imitated through "
                   f"{' '.join(f'{k}={v}' for k, v in AVX2_ENV.items())} (avx2), or each in turn (both; one run "
                   "on a CPU without AVX-512, whose native class is the AVX2 one)")
    p.add_argument("--dtype", choices=list(DTYPES), help="default: float32 on CPU, bfloat16 (autocast) on CUDA")
    p.add_argument("--fuse", action="store_true",
                   help="RAVLT inference after RAVLT.fuse(): BatchNorms folded, small maps' 1×1 weights packed")
    p.add_argument("--system-malloc", action="store_true",
                   help="let glibc return freed memory to the OS (by default it is kept, for every model alike: "
                   "see ravlt.tools.malloc)")
    p.add_argument("--compile", action="store_true", help="torch.compile every model (compile time not timed)")
    p.add_argument("--compile-memory-budget", type=memory_budget, metavar="FRACTION",
                   help="compiled training steps keep this share (0-1) of the activations torch's default partition "
                   "keeps, as task.compile_memory_budget in training (ravlt.tools.compile); default: torch's")
    p.add_argument("--no-flops", action="store_true", help="skip the fvcore FLOP counts")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory pass")
    p.add_argument("--stages", action="store_true",
                   help="also time each stage of ravlt_s and convnext_tiny in inference beside its arithmetic "
                   "(CPU: where the time goes)")
    p.add_argument("--ops", action="store_true",
                   help="also time each op of RAVLT-S and convnext_tiny at the eval size (the chosen workloads) and "
                   f"share their time out by kind of operation, {OPS_ROUNDS} interleaved steps at most "
                   "(CPU: ravlt.bench.ops)")
    p.add_argument("--free-rala-core", action="store_true",
                   help="what-if: RALA's core (phi, RoPE, alpha, its two products, the normaliser) returns zeros "
                   "and costs nothing, everything else runs; the ceiling of a faster core (ravlt.bench.headroom)")
    p.add_argument("--quick", action="store_true", help="tiny inputs, for a smoke test")
    p.add_argument("--out", type=Path, default=Path("outputs/bench"))
    return p.parse_args(argv)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} CPUs"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def softmax_attention_memory(device: torch.device, dtype: torch.dtype, side: int = 64) -> dict:
    """Peak memory of one softmax attention block of RAVLT-S stage 3 (320 channels, 5 heads) on
    side×side tokens: 64×64 at 1024² input."""
    dim, heads = 320, 5
    attn = SoftmaxAttention(dim, heads).to(device).eval()
    sin, cos = (t.to(device) for t in RoPE2d(dim // heads)(side, side))
    x = torch.randn(1, dim, side, side, device=device).contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)

    def step() -> None:
        with torch.inference_mode(), autocast:
            attn(x, sin, cos)

    step()
    tokens = side * side
    return dict(
        tokens=tokens, heads=heads, nxn_mib=heads * tokens**2 * 4 / 2**20, peak_mib=peak_memory_mib(step, device)
    )


def build_steps(specs, workloads, device, dtype, args) -> dict:
    """One step closure per (model, workload); workloads of one mode share a model instance (and an
    onnxruntime session: the exported file has dynamic shapes)."""
    models, sessions, steps = {}, {}, {}
    for workload in workloads:
        for spec in specs:
            if applies(spec, workload):
                key = (spec.label, workload.mode, workload.size if spec.sized else None)
                if key not in models:
                    models[key] = prepare_model(spec, workload, device, fuse=args.fuse)
                if spec.runtime == "onnxruntime":
                    if key not in sessions:
                        sessions[key] = onnxruntime_session(models[key], args.threads)
                    steps[spec.label, workload.label] = onnxruntime_step(sessions[key], workload)
                else:
                    compile_model = args.compile or spec.compile
                    steps[spec.label, workload.label] = make_step(
                        models[key], workload, device, dtype, compile_model, args.compile_memory_budget, spec.frozen
                    )
    return steps


def available(spec, device: torch.device) -> str | None:
    """Why ``spec`` cannot run here, or None."""
    if spec.runtime == "onnxruntime":
        if device.type != "cpu":
            return "onnxruntime rows are CPU only"
        missing = [m for m in ("onnx", "onnxscript", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            return f"needs the Python packages {', '.join(missing)}"
    return None


@dataclasses.dataclass
class Timings:
    """What the interleaved rounds measured: per (model, workload) key one sample per round of the seconds per
    step, the page faults per step and the MiB per step the heap grew by (None where glibc does not say); each
    round's sgemm GFLOP/s; the warm rounds' page faults; the MiB the heap's top was grown by before timing."""

    seconds: dict
    faults: dict
    heap_growth_mib: dict
    sgemm: list
    settle_faults: list
    heap_reserve_mib: int


def time_interleaved(steps: dict, labels: list[str], workloads, device, args, kept_freed_memory: bool) -> Timings:
    """Every pair once per round, each round starting from another model, and sgemm once per round. On the CPU,
    warm rounds settle the heap first, and with freed memory kept HEAP_RESERVE more is faulted in at its top."""
    print(f"warming up {len(steps)} model/workload pairs ...", flush=True)
    sgemm_gflops = sgemm_yardstick(device, SGEMM_N, args.clock)
    iters = {key: calibrate(step, device, args.min_seconds, args.clock) for key, step in steps.items()}
    on_cpu = device.type == "cpu"
    settle_faults = settle(list(steps.values())) if on_cpu else []
    reserve = QUICK_HEAP_RESERVE if args.quick else HEAP_RESERVE
    reserve_mib = grow_heap_top(reserve) >> 20 if on_cpu and kept_freed_memory else 0  # after settling
    timings = Timings(seconds={key: [] for key in steps}, faults={key: [] for key in steps},
                      heap_growth_mib={key: [] for key in steps}, sgemm=[], settle_faults=settle_faults,
                      heap_reserve_mib=reserve_mib)
    for round_ in range(args.repeats):
        timings.sgemm.append(sgemm_gflops())
        order = labels[round_ % len(labels):] + labels[: round_ % len(labels)]
        for workload in workloads:
            for key in ((label, workload.label) for label in order):
                if key in steps:
                    heap, faults = heap_bytes(), resource_usage()[0]
                    timings.seconds[key].append(seconds_per_step(steps[key], device, iters[key], args.clock))
                    timings.faults[key].append((resource_usage()[0] - faults) / iters[key])
                    timings.heap_growth_mib[key].append(
                        None if heap is None else (heap_bytes() - heap) / iters[key] / 2**20
                    )
        print(f"round {round_ + 1}/{args.repeats} done (load average {os.getloadavg()[0]:.1f})", flush=True)
    return timings


def count_gmacs(specs, workloads) -> dict:
    """fvcore multiply-accumulates per image, per (model, input side)."""
    gmacs = {}
    for spec in specs:
        for size in sorted({w.size for w in workloads if applies(spec, w)}):
            extra = {"img_size": size} if spec.sized else {}
            gmacs[spec.label, size] = count(spec.timm_name, size, **spec.kwargs, **extra)[1]
    return gmacs


def make_rows(specs, workloads, timings: Timings, peaks: dict, gmacs: dict) -> list[dict]:
    times, sgemm = timings.seconds, statistics.median(timings.sgemm)
    rows = []
    for workload in workloads:
        base = times.get((BASELINE, workload.label))
        for spec in specs:
            key = (spec.label, workload.label)
            if key not in times:
                continue
            seconds = statistics.median(times[key])
            macs = gmacs.get((spec.label, workload.size))
            # a training step (forward + backward) is counted as three forwards
            flops_per_s = macs and 2 * macs * (3 if workload.mode == "train" else 1) * workload.batch / seconds
            rows.append(
                dict(
                    model=spec.label,
                    workload=workload.label,
                    group=workload.group,
                    mode=workload.mode,
                    batch=workload.batch,
                    size=workload.size,
                    seconds=times[key],
                    seconds_median=seconds,
                    faults_per_step=timings.faults[key],
                    heap_growth_mib_per_step=timings.heap_growth_mib[key],
                    img_per_s=workload.batch / seconds,
                    img_per_s_best=workload.batch / min(times[key]),
                    # the median over rounds of the ratio within a round, whose two timings were taken
                    # close together, so that a slow drift in the machine's load cancels
                    ratio=statistics.median(b / t for b, t in zip(base, times[key])) if base else None,
                    peak_mib=peaks.get(key),
                    gflop_per_img=macs and 2 * macs,
                    gflop_per_s=flops_per_s,
                    sgemm_fraction=flops_per_s and flops_per_s / sgemm,
                )
            )
    return rows


def settle_cpu_diagnostics(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> None:
    """``--stages`` and ``--ops`` look at fp32 on the CPU: dropped, with a note, on another device (`make bench`
    asks for them on every machine); refused on the CPU in another dtype."""
    diagnostics = [f"--{flag}" for flag in ("stages", "ops") if getattr(args, flag)]
    if diagnostics and device.type != "cpu":
        print(f"skipping {' and '.join(diagnostics)}: CPU diagnostics, this run is on {device.type}", flush=True)
        args.stages = args.ops = False
    elif diagnostics and dtype != torch.float32:
        raise ConfigError(f"{' and '.join(diagnostics)} measure the CPU in float32: leave out --dtype {args.dtype}")


def run(args: argparse.Namespace) -> dict:
    if args.device:
        check_device("--device", args.device)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    capability = torch.backends.cpu.get_cpu_capability()
    if device.type == "cpu" and args.cpu_class == "avx2" and capability != "AVX2":
        raise ConfigError(f"--cpu-class avx2: ATen runs {capability} kernels; start the process with {AVX2_ENV}")
    if args.clock == "cpu" and (device.type != "cpu" or args.threads != 1):
        raise ConfigError("--clock cpu measures one thread's CPU time: use it with --device cpu --threads 1")
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    kept_freed_memory = not args.system_malloc and keep_freed_memory()
    dtype = DTYPES[args.dtype or ("bfloat16" if device.type == "cuda" else "float32")]
    settle_cpu_diagnostics(args, device, dtype)
    specs = []
    for name in args.models:
        reason = available(MODELS[name], device)
        if reason:
            print(f"skipping {name}: {reason}", flush=True)
        else:
            specs.append(MODELS[name])
    workloads = [w for w in default_workloads(device, args.quick) if w.group in args.workloads]
    load_before = os.getloadavg()

    steps = build_steps(specs, workloads, device, dtype, args)
    timings = time_interleaved(steps, [spec.label for spec in specs], workloads, device, args, kept_freed_memory)
    torch_steps = {key: step for key, step in steps.items() if MODELS[key[0]].runtime == "torch"}
    peaks = {} if args.no_memory else {key: peak_memory_mib(step, device) for key, step in torch_steps.items()}
    softmax_memory = None if args.no_memory else softmax_attention_memory(device, dtype)
    gmacs = {} if args.no_flops else count_gmacs(specs, workloads)
    rows = make_rows(specs, workloads, timings, peaks, gmacs)
    result = dict(
        meta=dict(
            device=device.type,
            device_name=device_name(device),
            threads=torch.get_num_threads() if device.type == "cpu" else None,
            cpu_capability=capability if device.type == "cpu" else None,
            dtype=str(dtype).removeprefix("torch."),
            compile=args.compile,
            compiled_models=[spec.label for spec in specs if args.compile or spec.compile],
            compile_memory_budget=args.compile_memory_budget,
            clock=args.clock,
            fuse=args.fuse,
            free_rala_core=args.free_rala_core,
            malloc="freed memory kept" if kept_freed_memory else "system default",
            repeats=args.repeats,
            settle_faults=timings.settle_faults,
            heap_reserve_mib=timings.heap_reserve_mib,
            torch=torch.__version__,
            timm=timm.__version__,
            load_before=round(load_before[0], 1),
            load_after=round(os.getloadavg()[0], 1),
            sgemm_n=SGEMM_N,
            sweep_batch=next((w.batch for w in workloads if w.group == "sweep"), None),
            baseline=BASELINE,
        ),
        sgemm_gflops=statistics.median(timings.sgemm),
        sgemm_gflops_per_round=timings.sgemm,
        rows=rows,
        softmax_attention_memory=softmax_memory,
    )
    judged = device.type == "cpu" and dtype == torch.float32 and not args.quick and not args.free_rala_core
    result["targets"] = targets(rows, softmax_memory) if judged else []
    eval_workload = next(w for w in default_workloads(device, args.quick) if w.group == "eval")
    if args.stages:
        result["stages"] = dict(batch=eval_workload.batch, size=eval_workload.size,
                                rows=stage_breakdown(eval_workload.batch, eval_workload.size, args.repeats,
                                                     result["sgemm_gflops"]))
    if args.ops:
        rounds = min(args.repeats, OPS_ROUNDS)
        rows = ops_breakdown([w for w in workloads if w.size == eval_workload.size], rounds)
        result["ops"] = dict(rounds=rounds, rows=rows, summary=summary(rows))
    return result


def run_each_cpu_class(argv: list[str], out: Path) -> dict:
    """The bench once per CPU class, each in its own process (the instruction set is chosen at start-up),
    then the targets of both side by side; once on a CPU without AVX-512, whose own class is the lower one."""
    results = {}
    native = torch.backends.cpu.get_cpu_capability()
    classes = CPU_CLASSES if native.startswith("AVX512") else ("native",)
    if classes != CPU_CLASSES:
        print(f"this CPU's own kernels are {native}: the native run is its class, nothing to imitate", flush=True)
    for cpu_class in classes:
        env = {**os.environ, **(AVX2_ENV if cpu_class == "avx2" else {})}
        command = [sys.executable, "-m", "ravlt.bench", *argv, "--cpu-class", cpu_class, "--out", str(out / cpu_class)]
        print(f"\n=== CPU class {cpu_class} ===", flush=True)
        status = subprocess.run(command, env=env).returncode
        if status:  # the child printed its own error
            sys.exit(status)
        results[cpu_class] = json.loads((out / cpu_class / "bench.json").read_text())
    print("\nTargets on both CPU classes:")
    for cpu_class, result in results.items():
        print(f"{cpu_class} ({result['meta']['cpu_capability']}):")
        print("\n".join(target_lines(result["targets"])) or "  (no targets: quick run, CUDA, bf16 or --free-rala-core)")
    return results


def main(argv: list[str] | None = None) -> dict:
    """The command: an input mistake ends in one ``error:`` line and exit status 2 (:mod:`ravlt.commands`)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--suite" in argv or any(a.startswith("--suite=") for a in argv):  # the GPU check's suite
        from .cuda import main as suite_main

        return suite_main(argv)
    return run_command(lambda: bench_command(parse_args(argv), argv))


def bench_command(args: argparse.Namespace, argv: list[str]) -> dict:
    args.out.mkdir(parents=True, exist_ok=True)  # an unwritable --out fails now, not after the timing
    on_cpu = (args.device or ("cuda" if torch.cuda.is_available() else "cpu")) == "cpu"
    if on_cpu and args.cpu_class == "both":
        return run_each_cpu_class(argv, args.out)
    with free_rala_core() if args.free_rala_core else contextlib.nullcontext():
        result = run(args)
    print()
    print(table(result))
    if "stages" in result:
        stages = result["stages"]
        print("\n" + stages_table(stages["rows"], stages["batch"], stages["size"]))
    if "ops" in result:
        print("\n" + ops_table(result["ops"]))
    write_json(result, args.out / "bench.json")
    drawn = plot(result, args.out / "throughput_vs_resolution.png")
    print(f"\nwrote {args.out / 'bench.json'}" + (f" and {args.out / 'throughput_vs_resolution.png'}" if drawn else ""))
    return result
