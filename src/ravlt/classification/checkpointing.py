"""Checkpoints of the classification runs: atomic writes and the RNG state for exact resumption.
(Reading weights back, from any checkpoint: :mod:`ravlt.models.checkpoint`.)"""

from __future__ import annotations

import random
from collections.abc import Mapping

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ravlt.files import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file beside its destination, then renames it into place.

    A run killed while saving keeps its previous ``last.ckpt`` intact. (Lightning's own writer stages the
    file in the system temp directory, which ends in a non-atomic copy when that is another file system.)
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_path(path) as tmp:
            torch.save(checkpoint, tmp)


def collect_rng_states() -> dict:
    """This process's torch / CUDA / numpy / Python RNG states, as types ``torch.load(weights_only=True)``
    accepts."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Mapping) -> None:
    torch.set_rng_state(states["torch"])
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class RngStateCheckpoint(L.Callback):
    """Keeps the RNG states in every checkpoint and restores them on resume, so the resumed run draws the
    random numbers of the model (DropPath, Mixup) that the uninterrupted run would have drawn. (The data
    augmentation has seeds of its own: :mod:`ravlt.classification.sampling`.)"""

    def state_dict(self) -> dict:
        return collect_rng_states()

    def load_state_dict(self, state_dict: dict) -> None:
        set_rng_states(state_dict)
