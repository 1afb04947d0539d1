"""What a training run does when the cluster announces its end: catch the signal, agree on it across the
processes, and ask SLURM to requeue the job.

SLURM signals a job before it kills it: SIGUSR1 (``sbatch --signal=USR1@90``; submitit uses SIGUSR2) ahead
of the time limit, SIGTERM when the job is preempted or cancelled. The Lightning callback
(:mod:`ravlt.classification.preemption`) and the mmengine hook (:mod:`ravlt.mm.preemption`) turn either into
a checkpoint at the next step boundary and stop the run with :class:`ravlt.errors.Preempted`.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)

SIGNALS = ("SIGUSR1", "SIGUSR2", "SIGTERM")
# The time-limit warnings. SIGTERM also comes from `scancel`, which must stay final: SLURM itself requeues
# a job it preempts when its partition says so.
REQUEUE_SIGNALS = ("SIGUSR1", "SIGUSR2")


class SignalCatcher:
    """Records the signals of :data:`SIGNALS` instead of dying of them, while installed. Creating one
    makes this process's forked children ignore them (:func:`shield_forked_children`)."""

    def __init__(self, names=SIGNALS):
        self.signals = [signal.Signals[name] for name in names]
        self.received = 0
        self._previous: dict[int, object] = {}
        shield_forked_children()

    def _note(self, signum, frame) -> None:
        self.received = signum  # nothing else here: the interrupted code may hold any lock

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            log.warning("not in the main thread: preemption signals are not caught")
            return
        self.received = 0
        self._previous = {s: signal.signal(s, self._note) for s in self.signals}

    def restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def agreed(self, device: torch.device | str = "cpu") -> int:
        """The signal that any process of the run received (0: none), the same on every process."""
        received = self.received
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            flag = torch.tensor([received], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            received = int(flag.item())
        return received


_shielded = False


def shield_forked_children() -> None:
    """From now on, children forked by this process (DataLoader workers) ignore :data:`SIGNALS`: SLURM
    signals every process of a job, and a worker killed by one would end the run before its checkpoint.
    (Commands run with ``subprocess`` are not affected: Python runs no fork handlers for them.)"""
    global _shielded
    if not _shielded:
        os.register_at_fork(after_in_child=_ignore_signals)
        _shielded = True


def _ignore_signals() -> None:
    for name in SIGNALS:
        signal.signal(signal.Signals[name], signal.SIG_IGN)


def slurm_job_id() -> str | None:
    """This SLURM job's id as ``scontrol`` names it (``<array job>_<task>`` in a job array); None outside SLURM."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def requeue_slurm_job(signum: int) -> bool:
    """After a time-limit warning, ask SLURM to put this job back in the queue (``scontrol requeue``); True
    when SLURM accepted. The requeued job starts again in the same run directory and resumes there."""
    job = slurm_job_id()
    if signal.Signals(signum).name not in REQUEUE_SIGNALS or job is None:
        return False
    if shutil.which("scontrol") is None:
        log.warning("SLURM job %s: scontrol not found, so it is not requeued; resubmit it to resume", job)
        return False
    done = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if done.returncode != 0:
        log.warning("scontrol requeue %s failed (%s); resubmit the job to resume", job, done.stderr.strip())
        return False
    log.info("SLURM job %s requeued", job)
    return True


def requeued_slurm_job() -> bool:
    """This process belongs to a SLURM job that was requeued (it runs again in its run directory)."""
    return int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0
