"""Checking that a checkpoint belongs to the task asked for (reading it: :mod:`ravlt.models.checkpoint`)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from ravlt.errors import ConfigError
from ravlt.models.checkpoint import CheckpointMismatchError, stored_weights

TASK_PREFIXES = {
    "segmentation": ("decode_head.", "auxiliary_head."),  # mmseg EncoderDecoder
    "detection": ("rpn_head.", "roi_head.", "bbox_head."),  # mmdet two- and one-stage detectors
    "classification": ("head.",),  # the RAVLT classifier: released, bare, or our Lightning checkpoints
}
PREDICT_COMMAND = "python predict.py task={task} checkpoint={path} image=..."


class WrongTaskError(CheckpointMismatchError):
    """A checkpoint of another task (or a bare backbone) given to a task's predictor."""


def existing_file(path: str | os.PathLike | None, key: str) -> Path:
    if not path:
        raise ConfigError(f"{key}=... is required")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"{key}={path}: {'a folder, not a file' if file.is_dir() else 'file not found'}")
    return file


def checkpoint_task(checkpoint: Mapping) -> str | None:
    """``classification``, ``detection`` or ``segmentation`` from the checkpoint's keys; None for weights of
    no task (a bare backbone)."""
    keys = stored_weights(checkpoint).keys()
    for task, prefixes in TASK_PREFIXES.items():
        if any(k.startswith(prefixes) and k.endswith("weight") for k in keys):
            return task
    return None


def require_task(checkpoint: Mapping, task: str, path: Path) -> None:
    found = checkpoint_task(checkpoint)
    if found == task:
        return
    if found is None:
        raise WrongTaskError(
            f"checkpoint={path} holds RAVLT backbone weights without a {task} head, so it cannot predict. "
            f"Use a {task} checkpoint: fine-tune from this one with `python train.py task={task} "
            f"model.pretrained={path} ...`."
        )
    raise WrongTaskError(
        f"checkpoint={path} is a {found} checkpoint but task={task}; run "
        + PREDICT_COMMAND.format(task=found, path=path)
    )
