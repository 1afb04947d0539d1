"""Loading RAVLT checkpoints: the authors' released files, our own, and mmdet/mmseg ones.

A checkpoint that does not fit the model raises :class:`CheckpointMismatchError` with the variant
expected, the variant the file looks like, and the missing / unexpected / mis-shaped keys. Nothing is
ever loaded partially without saying so.
"""
from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping

import torch
from torch import nn

_log = logging.getLogger(__name__)

WRAPPER_KEYS = ("state_dict", "model", "module")
EMA_KEYS = ("model_ema", "state_dict_ema", "ema_state_dict")
HEAD_PREFIXES = ("head.",)
DENSE_ONLY_PREFIXES = ("extra_norms.",)
CLASSIFIER_ONLY_PREFIXES = ("proj.", "norm.", "head.")


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's keys or shapes do not fit the model it is loaded into."""


def read_checkpoint(path: str | os.PathLike) -> Mapping:
    """``torch.load(weights_only=True)``, allowing the argparse namespace DeiT-style files carry."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, pickle of arbitrary objects, not a torch file, ...
        raise CheckpointMismatchError(
            f"could not read checkpoint {path} ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
            "Is the file complete (compare its size with the source) and a PyTorch checkpoint?"
        ) from e


def unwrap_state_dict(checkpoint: Mapping, use_ema: bool = False, prefix: str = "backbone.") -> dict:
    """Return the bare state dict: take ``model_ema`` (if asked) / ``state_dict`` / ``model``, strip
    ``module.`` and a ``backbone.`` prefix (detection / segmentation checkpoints)."""
    sd = checkpoint
    if use_ema:
        for key in EMA_KEYS:
            if isinstance(sd, Mapping) and isinstance(sd.get(key), Mapping):
                sd = sd[key]
                break
        else:
            raise CheckpointMismatchError(f"use_ema=True but the checkpoint has none of {EMA_KEYS}")
    while isinstance(sd, Mapping) and not any(isinstance(v, torch.Tensor) for v in sd.values()):
        key = next((k for k in WRAPPER_KEYS if isinstance(sd.get(k), Mapping)), None)
        if key is None:
            raise CheckpointMismatchError(
                f"no state dict found in checkpoint (top-level keys: {sorted(sd)[:10]}); expected the weights "
                f"under one of {WRAPPER_KEYS} or a bare state dict"
            )
        sd = sd[key]
    sd = {k.removeprefix("module."): v for k, v in sd.items() if isinstance(v, torch.Tensor)}
    if any(k.startswith(prefix) for k in sd):
        sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    return sd


def describe_variant(state_dict: Mapping) -> str:
    """Guess the RAVLT variant a state dict belongs to from its widths and depths."""
    from .ravlt import VARIANTS

    dims, depths = [], []
    for i in range(8):
        w = state_dict.get(f"layers.{i}.blocks.0.pos.weight")
        if w is None:
            break
        dims.append(int(w.shape[0]))
        depths.append(len({k.split(".")[3] for k in state_dict if k.startswith(f"layers.{i}.blocks.")}))
    for name, cfg in VARIANTS.items():
        if tuple(dims) == cfg.embed_dims and tuple(depths) == cfg.depths:
            return name
    if not dims:
        return "not a RAVLT checkpoint"
    return f"unknown RAVLT (widths {dims}, depths {depths})"


def match_state_dict(state_dict: Mapping, model: nn.Module, allow_new_head: bool = False) -> dict:
    """Check ``state_dict`` against ``model``; return what to load or raise one clear error.

    Tolerated differences: a classifier head of another size when ``allow_new_head`` (fine-tuning to new
    classes keeps the model's fresh head), classification-only keys when the model is a dense backbone,
    and the dense ``extra_norms`` when the model is a classifier.
    """
    target = model.state_dict()
    has_head = any(k.startswith(CLASSIFIER_ONLY_PREFIXES) for k in target)
    is_dense = any(k.startswith(DENSE_ONLY_PREFIXES) for k in target)
    ignorable = () if has_head else CLASSIFIER_ONLY_PREFIXES
    ignorable += () if is_dense else DENSE_ONLY_PREFIXES

    out, mismatched, unexpected, fresh = {}, [], [], []
    for k, v in state_dict.items():
        if k not in target:
            if not k.startswith(ignorable):
                unexpected.append(k)
        elif v.shape == target[k].shape:
            out[k] = v
        elif allow_new_head and k.startswith(HEAD_PREFIXES):
            fresh.append(k)
        else:
            mismatched.append(f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}")
    # the dense per-stage output norms start fresh from a classification checkpoint
    fresh += [k for k in target if k.startswith(DENSE_ONLY_PREFIXES) and k not in state_dict]
    missing = [k for k in target if k not in out and k not in fresh]
    if fresh:
        _log.info("kept freshly initialised: %s", ", ".join(fresh))
    if missing or unexpected or mismatched:
        expected = describe_variant(target)
        lines = [
            f"checkpoint does not fit the model: model is {expected}, checkpoint looks like "
            f"{describe_variant(state_dict)}."
        ]
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                lines.append(f"  {title}: {shown}")
        lines.append("Pick the model variant the checkpoint was trained with (e.g. model=ravlt_s).")
        raise CheckpointMismatchError("\n".join(lines))
    return out


def load_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    use_ema: bool = False,
    allow_new_head: bool = False,
) -> dict:
    """Load a released or our own RAVLT checkpoint into ``model``; returns what was loaded."""
    state_dict = match_state_dict(unwrap_state_dict(read_checkpoint(path), use_ema=use_ema), model, allow_new_head)
    model.load_state_dict(state_dict, strict=False)  # completeness already checked above
    return state_dict
