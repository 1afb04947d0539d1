"""Clocks for the bench: seconds per step, peak memory of a step, and the machine's sgemm GFLOP/s."""
from __future__ import annotations

import math
import statistics
import time
from typing import Callable

import torch
from torch.profiler import ProfilerActivity

from ravlt.tools.profiling import quiet_profile

try:
    import resource
except ImportError:  # not on Windows
    resource = None

SETTLE_ROUNDS = 4  # warm rounds at most before the timed ones
SETTLED_FAULTS = 256  # page faults in one round of every step (1 MiB of 4-KiB pages) that count as none


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCKS = {
    "wall": time.perf_counter,
    # CPU time of the calling thread: with one intra-op thread every kernel runs on it, so this is the
    # work a step costs, blind to the time other processes hold the cores.
    "cpu": time.thread_time,
}


def seconds_per_step(step: Callable[[], None], device: torch.device, iters: int, clock: str = "wall") -> float:
    now = CLOCKS[clock]
    synchronize(device)
    start = now()
    for _ in range(iters):
        step()
    synchronize(device)
    return (now() - start) / iters


def calibrate(step: Callable[[], None], device: torch.device, min_seconds: float, clock: str = "wall") -> int:
    """Warm up (two steps: kernel selection, allocator, lazy init) and choose how many steps one
    timed repeat needs to last about ``min_seconds``."""
    step()
    once = seconds_per_step(step, device, 1, clock)
    return max(1, math.ceil(min_seconds / max(once, 1e-6)))


def resource_usage() -> tuple[int, float]:
    """(minor page faults, system CPU seconds) of this process so far; zeros where the OS does not say."""
    if resource is None:
        return 0, 0.0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt, usage.ru_stime


def settle(steps: list[Callable[[], None]], max_rounds: int = SETTLE_ROUNDS, limit: int = SETTLED_FAULTS) -> list[int]:
    """Call every step once per round, each round starting one step further on, until a round page-faults fewer
    than ``limit`` times or ``max_rounds`` have run; returns each round's page faults.

    With freed memory kept (:mod:`ravlt.tools.malloc`) the heap still grows while the steps of several models
    take turns, until its free blocks fit each step's allocations in whatever order they come: warmed one after
    the other, a RAVLT-S training step then faulted 58,287 times in the first interleaved round, 10,000 in the
    second and 4 in the third (docs/performance.md), and the second round's time was the median of three."""
    faults = []
    for round_ in range(max_rounds):
        before = resource_usage()[0]
        for step in steps[round_ % len(steps):] + steps[: round_ % len(steps)]:
            step()
        faults.append(resource_usage()[0] - before)
        if resource is None or faults[-1] < limit:
            break
    return faults


def peak_memory_mib(step: Callable[[], None], device: torch.device) -> float:
    """Peak of the memory one step allocates on top of what was live before it (weights, inputs,
    optimizer state), in MiB. CUDA: the caching allocator's peak. CPU: the running sum of the
    allocator's alloc/free events recorded by the profiler, which sees every tensor and every
    scratch buffer a kernel takes from PyTorch's allocator (an N×N attention matrix would show)."""
    if device.type == "cuda":
        synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    with quiet_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns()
    )
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak / 2**20


def sgemm_yardstick(device: torch.device, n: int = 2048, clock: str = "wall") -> Callable[[int], float]:
    """The machine's sgemm yardstick: a function giving the median GFLOP/s of ``repeats`` n×n fp32 matrix products
    (``torch.mm``). Its three matrices are allocated here, once, so that measuring between the timed rounds takes
    nothing from the heap the models' steps share (48 MiB at n = 2048)."""
    a, b, out = (torch.randn(n, n, device=device) for _ in range(3))
    step = lambda: torch.mm(a, b, out=out)  # noqa: E731
    step()

    def gflops(repeats: int = 5) -> float:
        seconds = statistics.median(seconds_per_step(step, device, 1, clock) for _ in range(repeats))
        return 2 * n**3 / seconds / 1e9

    return gflops
