"""One row of the rehearsal: two processes, as a user's run and its restart would be, then the checks.

1. ``train``: from the released-layout checkpoint (``model.pretrained``), ``run.steps`` optimizer steps,
   a checkpoint;
2. ``resume``: a new process continues from that checkpoint (``ckpt_path``) for as many steps and runs
   the evaluator.

Each phase must have done its part: the steps taken, a checkpoint with optimizer state, the pretrained
weights loaded, the resumed run continuing at the step where the first stopped, the evaluator's metrics
in ``metrics.json``. The row: ``status``, ``error`` (one line), ``s_per_iter`` (mean seconds per training
iteration, data loading included, leaving out the first iteration of a phase that has more than one),
``images_per_iter`` and ``peak_rss_mib`` (the larger of the two processes' peak resident memory).
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from .evidence import STEM, Phase, RehearsalError, read_phase
from .inputs import Inputs
from .runs import Run
from .worker import ERROR_FILE, first_line

PRETRAINED_TOLERANCE = 0.01  # stem drift after a few steps, relative to its mean magnitude; a fresh init is ~1


def wait(pid: int, deadline: float) -> tuple[int, object, bool]:
    """``(wait status, rusage, timed out)`` of a child; at ``deadline`` its process group is killed."""
    while time.monotonic() < deadline:
        done, status, rusage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, rusage, False
        time.sleep(0.5)
    os.killpg(pid, signal.SIGKILL)
    _, status, rusage = os.wait4(pid, 0)
    return status, rusage, True


def last_line(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()] if log.is_file() else []
    return lines[-1].strip() if lines else ""


def run_phase(
    run: Run, phase: str, folder: Path, inputs: Inputs, deadline: float, resume_from: Path | None = None
) -> tuple[int, str | None]:
    """Run one phase in its own process (output in ``folder/worker.log``): its peak RSS in KiB and, when
    it failed, its first error line."""
    folder.mkdir(parents=True, exist_ok=True)
    log, error_file = folder / "worker.log", folder / ERROR_FILE
    error_file.unlink(missing_ok=True)
    command = [sys.executable, "-m", "ravlt.rehearse.worker", run.name, phase, str(folder), str(inputs.folder)]
    command += ["--from", str(resume_from)] if resume_from else []
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        status, rusage, timed_out = wait(process.pid, deadline)
    except BaseException:  # Ctrl-C: stop the worker with us
        os.killpg(process.pid, signal.SIGKILL)
        raise
    process.returncode = os.waitstatus_to_exitcode(status)
    error = None
    if timed_out:
        error = f"{phase}: stopped at the time limit (--timeout)"
    elif error_file.is_file():
        error = error_file.read_text().strip()
    elif os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        hint = " (out of memory?)" if signum == signal.SIGKILL else ""
        error = f"{phase}: worker killed by {signal.Signals(signum).name}{hint}; log: {last_line(log)}"
    elif process.returncode:
        error = f"{phase}: worker exited with code {process.returncode}; log: {last_line(log)}"
    return rusage.ru_maxrss, error


def check_trained(run: Run, phase: Phase, inputs: Inputs) -> None:
    from ravlt.models.checkpoint import checkpoint_weights

    if phase.steps != run.steps:
        raise RehearsalError(f"training took {phase.steps} optimizer steps, expected {run.steps}")
    if not phase.has_optimizer_state:
        raise RehearsalError(f"{phase.checkpoint} holds no optimizer state: it cannot be resumed")
    released = checkpoint_weights(inputs.pretrained(run.size))[STEM]
    drift = float((phase.stem - released).abs().mean() / released.abs().mean())
    if not drift < PRETRAINED_TOLERANCE:
        raise RehearsalError(
            f"the trained stem differs from model.pretrained by {drift:.2f} of its magnitude: "
            f"{inputs.pretrained(run.size).name} was not loaded"
        )


def check_resumed(run: Run, first: Phase, second: Phase) -> None:
    if not second.iterations or second.iterations[0][0] != first.steps:
        started = second.iterations[0][0] if second.iterations else "nowhere"
        raise RehearsalError(f"resuming from {first.checkpoint.name} started at step {started}, not {first.steps}")
    if second.steps != 2 * run.steps:
        raise RehearsalError(f"after resuming, the checkpoint is at step {second.steps}, expected {2 * run.steps}")
    missing = [k for k in run.family.metrics if not isinstance(second.metrics.get(k), (int, float))]
    if missing:
        raise RehearsalError(f"the evaluator reported no {', '.join(missing)} (metrics.json: {sorted(second.metrics)})")
    if not all(math.isfinite(second.metrics[k]) for k in run.family.metrics):
        raise RehearsalError(f"the evaluator reported non-finite metrics: {second.metrics}")


def seconds_per_iteration(*phases: Phase) -> float:
    seconds = [s for phase in phases for _, s in phase.iterations[len(phase.iterations) > 1 :]]
    return sum(seconds) / len(seconds)


def remove_checkpoints(workdir: Path) -> None:
    for path in list(workdir.rglob("*.pth")) + list(workdir.rglob("*.ckpt")):
        path.unlink()


def rehearse(run: Run, inputs: Inputs, workdir: Path, timeout: float, keep_checkpoints: bool = False) -> dict:
    """Train, checkpoint, resume, evaluate and check: the run's row of the report."""
    row = {"run": run.name, "status": "failed", "s_per_iter": None, "images_per_iter": None, "peak_rss_mib": None,
           "error": None}  # fmt: skip
    deadline = time.monotonic() + timeout
    peaks = []

    def phase(name: str, resume_from: Path | None = None) -> None:
        peak_kib, error = run_phase(run, name, workdir / name, inputs, deadline, resume_from)
        peaks.append(peak_kib)
        if error:
            raise RehearsalError(error)

    try:
        phase("train")
        first = read_phase(run.task, workdir / "train")
        check_trained(run, first, inputs)
        phase("resume", resume_from=first.checkpoint)
        second = read_phase(run.task, workdir / "resume", previous=first)
        check_resumed(run, first, second)
        row.update(status="passed", s_per_iter=seconds_per_iteration(first, second),
                   images_per_iter=first.images_per_iter,
                   metrics={k: second.metrics[k] for k in run.family.metrics})  # fmt: skip
    except RehearsalError as e:
        row["error"] = str(e)
    except Exception as e:  # reading what a phase left failed: the row fails with the reason
        row["error"] = first_line(e)
    finally:
        row["peak_rss_mib"] = round(max(peaks) / 1024) if peaks else None
        if not keep_checkpoints:
            remove_checkpoints(workdir)
    return row
