"""Seconds per training step of a Lightning run, for the rehearsal's table (mmengine runs keep their own:
the IterTimerHook's ``train/time`` history in every checkpoint)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import lightning as L


class StepTimes(L.Callback):
    """Writes ``[[global step, seconds], ...]`` of every training batch to ``path`` when fitting ends.

    A step's time runs from the end of the previous batch (the start of the epoch for the first one) to
    the end of its own, data loading included, as mmengine's IterTimerHook measures it.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.steps: list[tuple[int, float]] = []
        self._last = 0.0
        self._step = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._last = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.perf_counter()
        self.steps.append((self._step, now - self._last))
        self._last = now

    def on_fit_end(self, trainer, pl_module) -> None:
        if trainer.is_global_zero:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.steps))
