"""What one training phase of a rehearsal left in its output folder, read back the way a user would:
the checkpoint (through :mod:`ravlt.models.checkpoint`), the optimizer steps it holds, the seconds of
each training iteration, and ``metrics.json``.

Lightning runs (classification) keep ``checkpoints/last.ckpt`` and, from the rehearsal's
:class:`~ravlt.rehearse.timing.StepTimes`, ``step_times.json``. mmengine runs name their last checkpoint in
``last_checkpoint``; its ``message_hub`` carries the IterTimerHook's ``train/time`` of every iteration,
restored and extended when a run resumes.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ravlt.models.checkpoint import checkpoint_weights, read_checkpoint

STEM = "patch_embed.proj.0.weight"  # the first convolution: in every variant, trained little in a few steps


@dataclass
class Phase:
    folder: Path
    checkpoint: Path
    steps: int  # optimizer steps done when the checkpoint was written
    iterations: list[tuple[int, float]]  # (step before the iteration, seconds) of this phase's iterations
    images_per_iter: int
    has_optimizer_state: bool
    stem: torch.Tensor
    metrics: dict = field(default_factory=dict)


def read_phase(task: str, folder: Path, previous: Phase | None = None) -> Phase:
    reader = read_lightning_phase if task == "classification" else read_mmengine_phase
    phase = reader(folder, previous)
    metrics_file = folder / "metrics.json"
    phase.metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    return phase


def _stem(checkpoint: Mapping) -> torch.Tensor:
    return checkpoint_weights(checkpoint)[STEM]


def read_lightning_phase(folder: Path, previous: Phase | None = None) -> Phase:
    path = folder / "checkpoints" / "last.ckpt"
    checkpoint = _read(path)
    times = folder / "step_times.json"
    iterations = [tuple(x) for x in json.loads(times.read_text())] if times.is_file() else []
    return Phase(
        folder=folder,
        checkpoint=path,
        steps=int(checkpoint["global_step"]),
        iterations=iterations,
        images_per_iter=int(checkpoint["hyper_parameters"]["batch_size"]),
        has_optimizer_state=bool(checkpoint.get("optimizer_states")),
        stem=_stem(checkpoint),
    )


def read_mmengine_phase(folder: Path, previous: Phase | None = None) -> Phase:
    """With ``previous`` (the phase this one resumed from), the iterations are those after the history
    restored from it; a history that does not start with the previous one means the run started over."""
    from mmengine.config import Config

    pointer = folder / "last_checkpoint"
    if not pointer.is_file():
        raise RehearsalError(f"no checkpoint was written ({pointer} missing)")
    path = Path(pointer.read_text().strip())
    checkpoint = _read(path)
    seconds = [float(s) for s in checkpoint["message_hub"]["log_scalars"]["train/time"].data[0]]
    start = 0
    if previous is not None:
        restored = [s for _, s in previous.iterations]
        start = previous.steps if seconds[: len(restored)] == restored else 0
    iterations = [(step, s) for step, s in enumerate(seconds)][start:]
    config = Config.fromstring(checkpoint["meta"]["cfg"], file_format=".py")
    return Phase(
        folder=folder,
        checkpoint=path,
        steps=int(checkpoint["meta"]["iter"]),
        iterations=iterations,
        images_per_iter=int(config.train_dataloader.batch_size),
        has_optimizer_state="optimizer" in checkpoint,
        stem=_stem(checkpoint),
    )


def _read(path: Path) -> Mapping:
    if not path.is_file():
        raise RehearsalError(f"no checkpoint was written ({path} missing)")
    return read_checkpoint(path)


class RehearsalError(RuntimeError):
    """A rehearsal step that did not do what it must (no steps, no checkpoint, no resume, no metrics)."""
