"""Checkpoints that are never half-written, and a clean stop when the cluster signals the end of a job
(mmengine has neither; see :mod:`ravlt.preemption`).

- ``AtomicLocalBackend`` (file backend ``ravlt_atomic_local``): mmengine writes checkpoints with it through
  ``backend_args=dict(backend='ravlt_atomic_local')``: into a temporary file, renamed into place.
- ``ravlt.PreemptionHook``: on SIGUSR1, SIGUSR2 or SIGTERM, saves ``iter_<n>.pth`` after the next training
  iteration, points mmengine's ``last_checkpoint`` at it (``resume=True`` continues from there), requeues
  the SLURM job after a time-limit warning and stops the run with :class:`~ravlt.errors.Preempted`.
"""
from __future__ import annotations

from pathlib import Path

from mmengine.dist import barrier
from mmengine.fileio import LocalBackend, register_backend
from mmengine.hooks import Hook

from ravlt.errors import Preempted
from ravlt.files import write_bytes_atomically, write_text_atomically
from ravlt.preemption import SignalCatcher, requeue_slurm_job

from .registry import HOOKS

ATOMIC_BACKEND = "ravlt_atomic_local"


class AtomicLocalBackend(LocalBackend):
    def put(self, obj: bytes, filepath) -> None:
        write_bytes_atomically(filepath, obj)

    def put_text(self, obj: str, filepath, encoding: str = "utf-8") -> None:
        write_bytes_atomically(filepath, obj.encode(encoding))


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


@HOOKS.register_module()
class PreemptionHook(Hook):
    """Saves a resumable checkpoint and stops when the cluster signals the end of the job.

    The checkpoint holds the model, optimizer, parameter schedulers and the iteration count, like
    mmengine's own; every process decides after the same iteration. An iteration-based loop (the
    segmentation schedules) resumes with the next iteration's data; mmengine's epoch-based loop (the
    detection schedules) resumes at the same iteration count but starts the interrupted epoch's data over.
    mmengine keeps no random states: a resumed run draws its augmentations afresh from the seed.

    Args:
        requeue: call ``scontrol requeue`` after a time-limit warning inside a SLURM job.
    """

    priority = "VERY_LOW"  # after the iteration's other hooks (logging, checkpointing)

    def __init__(self, requeue: bool = True):
        self.requeue = requeue
        self.catcher = SignalCatcher()

    def before_train(self, runner) -> None:
        self.catcher.install()

    def after_train(self, runner) -> None:
        self.catcher.restore()

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        signum = self.catcher.agreed(_device_of(runner))
        if not signum:
            return
        done = runner.iter + 1  # this iteration is finished; mmengine counts it after the hooks
        filename = f"iter_{done}.pth"
        runner.save_checkpoint(runner.work_dir, filename, by_epoch=False, backend_args=dict(backend=ATOMIC_BACKEND))
        path = Path(runner.work_dir) / filename
        requeued = False
        if runner.rank == 0:
            write_text_atomically(Path(runner.work_dir) / "last_checkpoint", str(path))
            requeued = self.requeue and requeue_slurm_job(signum)
        barrier()  # every process stops once rank 0 has saved
        self.catcher.restore()
        raise Preempted(signum, done, str(path), requeued)


def _device_of(runner):
    model = getattr(runner.model, "module", runner.model)
    return next(model.parameters()).device
