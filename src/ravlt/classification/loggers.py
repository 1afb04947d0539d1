"""Lightning loggers from the ``logger`` config group (``wandb`` | ``csv`` | ``tensorboard`` | ``none``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, TensorBoardLogger, WandbLogger

LOGGERS = ("wandb", "csv", "tensorboard", "none")


def wandb_mode(logger_cfg: Mapping) -> str:
    """``WANDB_MODE`` from the environment wins, then ``logger.mode``; offline by default."""
    return os.environ.get("WANDB_MODE") or logger_cfg.get("mode") or "offline"


def build_loggers(logger_cfg: Mapping, save_dir: str | os.PathLike, run_name: str) -> list[Logger]:
    name = logger_cfg.get("name", "none")
    if name not in LOGGERS:
        raise ValueError(f"unknown logger {name!r}; choose one of {', '.join(LOGGERS)}")
    if name == "none":
        return []
    # The CSV logger always runs: metrics.csv in the run directory needs no account and no viewer.
    loggers: list[Logger] = [CSVLogger(save_dir, name="", version="")]
    if name == "tensorboard":
        loggers.append(TensorBoardLogger(save_dir, name="", version="tensorboard", default_hp_metric=False))
    elif name == "wandb":
        loggers.append(
            WandbLogger(
                project=logger_cfg.get("project") or "ravlt",
                entity=logger_cfg.get("entity"),
                name=run_name,
                save_dir=str(save_dir),
                mode=wandb_mode(logger_cfg),
                tags=list(logger_cfg.get("tags") or []),
            )
        )
    return loggers


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
