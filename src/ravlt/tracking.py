"""Experiment tracking settings every entry point shares."""
from __future__ import annotations

import os

from omegaconf import OmegaConf


def wandb_mode(configured: str | None = None) -> str:
    """W&B's mode: the ``WANDB_MODE`` environment variable wins, then the configured one; offline by default
    (no account needed; ``wandb sync`` uploads an offline run later)."""
    return os.environ.get("WANDB_MODE") or configured or "offline"


# for the Lightning W&B logger of conf/logger/wandb.yaml: mode: ${wandb_mode:${logger.mode}}
OmegaConf.register_new_resolver("wandb_mode", wandb_mode, replace=True)
