"""Stopping a classification run cleanly when the cluster signals its end (see :mod:`ravlt.preemption`)."""
from __future__ import annotations

from pathlib import Path

import lightning as L

from ravlt.errors import Preempted
from ravlt.preemption import SignalCatcher, requeue_slurm_job


class PreemptionCheckpoint(L.Callback):
    """On SIGUSR1, SIGUSR2 or SIGTERM, writes a checkpoint after the next optimizer step (atomically,
    through the Trainer's checkpoint writer), asks SLURM to requeue the job after a time-limit warning
    (SIGUSR1 / SIGUSR2), and stops the run with :class:`~ravlt.errors.Preempted`.

    The checkpoint is a complete training state (weights, EMA, optimizer, scheduler, RNG, loop and data
    position), so resuming from it continues with the step that follows. Every process decides at the same
    step, so a signal that reaches one process of a distributed run stops all of them there.

    Args:
        dirpath, filename: where the checkpoint goes; ``last.ckpt`` beside the others by default, which is
            what a requeued job resumes from.
        requeue: call ``scontrol requeue`` after a time-limit warning inside a SLURM job.
    """

    def __init__(self, dirpath: str, filename: str = "last.ckpt", requeue: bool = True):
        self.path = Path(dirpath) / filename
        self.requeue = requeue
        self.catcher = SignalCatcher()
        self._step = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After Trainer.fit installed its own handlers, which these replace until training ends.
        self.catcher.install()
        self._step = trainer.global_step

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if trainer.global_step == self._step:  # gradients still accumulating: no step to resume after
            return
        self._step = trainer.global_step
        signum = self.catcher.agreed(pl_module.device)
        if not signum:
            return
        trainer.save_checkpoint(self.path)
        requeued = self.requeue and trainer.is_global_zero and requeue_slurm_job(signum)
        raise Preempted(signum, trainer.global_step, str(self.path), requeued)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.catcher.restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self.catcher.restore()
