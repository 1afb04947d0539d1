"""Reading a checkpoint for inference and checking that it belongs to the task asked for."""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from ravlt.models.checkpoint import CheckpointMismatchError, read_checkpoint, unwrap_state_dict

TASK_PREFIXES = {
    "segmentation": ("decode_head.", "auxiliary_head."),  # mmseg EncoderDecoder
    "detection": ("rpn_head.", "roi_head.", "bbox_head."),  # mmdet two- and one-stage detectors
    "classification": (
        "head.",
        "model.head.",
    ),  # RAVLT classifier: released / bare, and Lightning (ImageClassifier.model)
}
PREDICT_COMMAND = "python predict.py task={task} checkpoint={path} image=..."


class WrongTaskError(CheckpointMismatchError):
    """A checkpoint of another task (or a bare backbone) given to a task's predictor."""


def existing_file(path: str | os.PathLike | None, key: str) -> Path:
    if not path:
        raise FileNotFoundError(f"{key}=... is required")
    file = Path(path).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"{key}={path}: file not found")
    return file


def load_checkpoint_file(path: Path) -> Mapping:
    """Any checkpoint of the project: classification ones (Lightning ``.ckpt``, released ``RAVLT_*.pth``,
    bare state dicts) as plain tensors, mmengine training checkpoints (detection / segmentation) through
    mmengine's loader, which also accepts the mmengine objects they carry."""
    try:
        return read_checkpoint(path)
    except CheckpointMismatchError as plain_error:
        from mmengine.runner.checkpoint import CheckpointLoader

        try:
            return CheckpointLoader.load_checkpoint(str(path), map_location="cpu")
        except Exception:
            raise plain_error from None


def checkpoint_task(checkpoint: Mapping) -> str | None:
    """``classification``, ``detection`` or ``segmentation`` from the checkpoint's keys; None for weights of
    no task (a bare backbone)."""
    keys = unwrap_state_dict(checkpoint, prefix="").keys()  # prefix "": keep every key as it is
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


def mmengine_state_dict(checkpoint: Mapping) -> dict[str, torch.Tensor]:
    """The weights of an mmengine checkpoint (``state_dict``, or the file itself when bare)."""
    weights = checkpoint.get("state_dict", checkpoint)
    return {k.removeprefix("module."): v for k, v in weights.items() if isinstance(v, torch.Tensor)}
