"""Checkpoints of the classification runs: atomic writes, RNG state for exact resumption, and reading
weights back from our Lightning checkpoints or the released DeiT-style files (spec §5)."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ravlt.models.checkpoint import EMA_KEYS, read_checkpoint, unwrap_state_dict

MODEL_PREFIX = "model."  # ImageClassifier.model
EMA_PREFIX = "model_ema.module."  # ImageClassifier.model_ema (timm ModelEmaV3)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file beside its destination, then renames it into place.

    A run killed while saving keeps its previous ``last.ckpt`` intact. (Lightning's own writer stages the
    file in the system temp directory, which ends in a non-atomic copy when that is another file system.)
    """

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


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
    augmentations (and worker seeds) the uninterrupted run would have drawn."""

    def state_dict(self) -> dict:
        return collect_rng_states()

    def load_state_dict(self, state_dict: dict) -> None:
        set_rng_states(state_dict)


def is_lightning_checkpoint(checkpoint: Mapping) -> bool:
    return "pytorch-lightning_version" in checkpoint and isinstance(checkpoint.get("state_dict"), Mapping)


def trained_model(path: str | os.PathLike) -> dict | None:
    """``{"model_name", "attn_types"}`` an ImageClassifier checkpoint was trained with; None for other files.

    Softmax and RALA stages have the same parameters, so only the recorded configuration tells them apart.
    """
    checkpoint = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    hparams = checkpoint.get("hyper_parameters") if is_lightning_checkpoint(checkpoint) else None
    if not hparams or "model_name" not in hparams:
        return None
    return {"model_name": hparams["model_name"], "attn_types": (hparams.get("model_kwargs") or {}).get("attn_types")}


def checkpoint_weights(path: str | os.PathLike) -> tuple[dict, dict | None]:
    """The ``(model, EMA)`` state dicts in a checkpoint; EMA is None when the file has none.

    Reads our Lightning checkpoints (``model.*`` / ``model_ema.module.*`` in ``state_dict``) as well as
    released and timm-style files (weights under ``model`` / ``model_ema``, or a bare state dict).
    """
    checkpoint = read_checkpoint(path)
    if is_lightning_checkpoint(checkpoint):
        has_ema = any(k.startswith(EMA_PREFIX) for k in checkpoint["state_dict"])
        model = unwrap_state_dict(checkpoint, prefix=MODEL_PREFIX)
        return model, unwrap_state_dict(checkpoint, prefix=EMA_PREFIX) if has_ema else None
    has_ema = any(isinstance(checkpoint.get(k), Mapping) for k in EMA_KEYS)
    return unwrap_state_dict(checkpoint), unwrap_state_dict(checkpoint, use_ema=True) if has_ema else None
