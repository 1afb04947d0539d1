"""Closing the W&B run of a classification run (the loggers themselves come from conf/logger/)."""

from __future__ import annotations

from pathlib import Path

from lightning.pytorch.loggers import Logger, WandbLogger


def finish_wandb(loggers: list[Logger]) -> str | None:
    """Close the W&B run (rank 0); returns the ``wandb sync`` command that uploads it when it ran offline."""
    hint = None
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            run = logger.experiment
            if run.settings.mode == "offline":
                hint = f"wandb sync {Path(run.dir).parent}"
            run.finish()
    return hint
