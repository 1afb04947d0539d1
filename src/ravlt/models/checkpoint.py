"""Every RAVLT checkpoint, read one way: the released files, ours (Lightning, mmengine) and bare state dicts.

- :func:`read_checkpoint`: ``torch.load(weights_only=True)`` with a clear error for a missing, truncated
  or foreign file.
- :func:`stored_weights`: the tensors a checkpoint holds, whatever wraps them — DeiT-style ``model`` /
  ``model_ema`` (the released files, docs/method.md §7), Lightning's ``state_dict`` with the
  ``model.`` / ``model_ema.module.`` prefixes of our classifier, mmengine's ``state_dict``, or a bare
  state dict; DDP's ``module.`` and ``torch.compile``'s ``_orig_mod.`` removed (timm's
  ``clean_state_dict``).
- :func:`checkpoint_weights`: the same at the level of a RAVLT (a detector's ``backbone.`` prefix removed).
- :func:`match_state_dict` / :func:`load_weights` / :func:`load_checkpoint`: load into a RAVLT, or raise
  :class:`CheckpointMismatchError` naming the variant expected, the variant the file looks like and the
  missing / unexpected / mis-shaped keys; :func:`load_strictly` does the same for a whole detector or
  segmentor. Nothing is ever loaded partially without saying so.

Reading needs neither Lightning nor OpenMMLab.
"""
from __future__ import annotations

import importlib
import logging
import os
import pickle
import zipfile
from collections.abc import Mapping

import torch
from timm.models import clean_state_dict
from torch import nn

_log = logging.getLogger(__name__)

TRAINING_STATE_TYPES = (  # the non-tensor objects training scripts store beside the weights
    "argparse.Namespace",  # DeiT-style scripts: the released files
    "mmengine.logging.history_buffer.HistoryBuffer",  # mmengine's message hub
    "builtins.slice", "builtins.getattr", "numpy.ndarray", "numpy.dtype",  # numpy arrays and scalars in it
    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
)  # fmt: skip
WRAPPER_KEYS = ("state_dict", "model", "module")
EMA_KEYS = ("model_ema", "state_dict_ema", "ema_state_dict")
LIGHTNING_PREFIXES = ("model.", "model_ema.module.")  # ImageClassifier.model, its timm ModelEmaV3
BACKBONE_PREFIX = "backbone."
HEAD_PREFIXES = ("head.",)
DENSE_ONLY_PREFIXES = ("extra_norms.",)
CLASSIFIER_ONLY_PREFIXES = ("proj.", "norm.", "head.")


ZIP_MAGIC, PICKLE_MAGIC = b"PK\x03\x04", b"\x80"


class CheckpointMismatchError(RuntimeError):
    """A checkpoint that cannot be read, or whose keys or shapes do not fit the model it is loaded into."""


def read_checkpoint(path: str | os.PathLike, key: str = "checkpoint") -> Mapping:
    """The checkpoint at ``path``, read with ``torch.load(weights_only=True)`` (tensors on the CPU,
    memory-mapped: reading what a large file holds costs little until the tensors are used).

    A file that is missing, empty, truncated or not a checkpoint raises :class:`CheckpointMismatchError`
    naming ``key``, the option that gave the path (``model.pretrained``, ``ckpt_path``, ...).
    """
    path = os.fspath(path)
    where = f"{key}={path}"
    if os.path.isdir(path):
        raise CheckpointMismatchError(f"{where} is a folder; give the checkpoint file in it")
    if not os.path.isfile(path):
        raise CheckpointMismatchError(f"{where}: checkpoint not found")
    if os.path.getsize(path) == 0:
        raise CheckpointMismatchError(f"{where} is an empty file (an interrupted download or copy?)")
    with open(path, "rb") as f:
        head = f.read(4)
    is_zip = zipfile.is_zipfile(path)  # torch.save's format; the legacy one is a pickle
    if head.startswith(ZIP_MAGIC) and not is_zip:
        raise CheckpointMismatchError(f"{where} is truncated (its zip archive has no end); copy or download it again")
    if not is_zip and not head.startswith(PICKLE_MAGIC):
        raise CheckpointMismatchError(f"{where} is not a PyTorch checkpoint file (torch.save writes a zip archive)")
    try:
        with torch.serialization.safe_globals(_training_state_globals(path)):
            mmap = is_zip  # a legacy file cannot be mapped
            checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        others = sorted(set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) - set(TRAINING_STATE_TYPES))
        raise CheckpointMismatchError(
            f"{where} holds Python objects other than weights ({', '.join(others[:5]) or type(e).__name__}), which "
            "are not loaded, for safety (torch.load weights_only); save the model's state_dict() instead"
        ) from e
    except Exception as e:  # truncated zip, pickle of arbitrary objects, not a torch file, ...
        reason = (str(e).splitlines() or [""])[0][:200]
        raise CheckpointMismatchError(
            f"could not read checkpoint {where} ({type(e).__name__}: {reason}). Is the file complete (compare its "
            "size with the source) and a PyTorch checkpoint?"
        ) from e
    if not isinstance(checkpoint, Mapping):
        raise CheckpointMismatchError(
            f"{where} holds a {type(checkpoint).__name__}, not a checkpoint (a dict of weights)"
        )
    return checkpoint


def _training_state_globals(path: str) -> list:
    """The objects of :data:`TRAINING_STATE_TYPES` that the file refers to, imported, so that
    ``weights_only`` loading accepts them and nothing else."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip checkpoint: torch.load says what is wrong
        return []
    objects = []
    for name in set(names) & set(TRAINING_STATE_TYPES):
        module, _, attr = name.rpartition(".")
        try:
            objects.append(getattr(importlib.import_module(module), attr))
        except (ImportError, AttributeError):  # e.g. numpy 1's module names under numpy 2
            pass
    if "numpy.dtype" in names:  # a pickled dtype names its class (numpy.dtypes.Float64DType, ...) only inside
        import numpy

        objects += [getattr(numpy.dtypes, n) for n in dir(numpy.dtypes) if n.endswith("DType")]
    return objects


def is_lightning_checkpoint(checkpoint: Mapping) -> bool:
    return "pytorch-lightning_version" in checkpoint and isinstance(checkpoint.get("state_dict"), Mapping)


def _tensors(mapping: Mapping) -> dict[str, torch.Tensor]:
    return clean_state_dict({k: v for k, v in mapping.items() if isinstance(v, torch.Tensor)})


def _with_prefix(state_dict: Mapping, prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def stored_weights(checkpoint: Mapping, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """The weights (or with ``use_ema`` the EMA weights) a checkpoint holds, keys as the trained module
    names them; raises :class:`CheckpointMismatchError` when there are none."""
    if is_lightning_checkpoint(checkpoint):
        weights = _tensors(checkpoint["state_dict"])
        model, ema = (_with_prefix(weights, p) for p in LIGHTNING_PREFIXES)
        if use_ema and not ema:
            raise CheckpointMismatchError("the checkpoint holds no EMA weights")
        return ema if use_ema else model or weights
    state = checkpoint
    if use_ema:
        state = next((checkpoint[k] for k in EMA_KEYS if isinstance(checkpoint.get(k), Mapping)), None)
        if state is None:
            raise CheckpointMismatchError(f"the checkpoint holds no EMA weights (none of {', '.join(EMA_KEYS)})")
    while not any(isinstance(v, torch.Tensor) for v in state.values()):
        key = next((k for k in WRAPPER_KEYS if isinstance(state.get(k), Mapping)), None)
        if key is None:
            raise CheckpointMismatchError(
                f"no weights found in the checkpoint (top-level keys: {sorted(state)[:10]}); expected them under "
                f"one of {', '.join(WRAPPER_KEYS)} or a bare state dict"
            )
        state = state[key]
    return _tensors(state)


def has_ema(checkpoint: Mapping) -> bool:
    try:
        stored_weights(checkpoint, use_ema=True)
    except CheckpointMismatchError:
        return False
    return True


def backbone_weights(weights: Mapping) -> dict[str, torch.Tensor]:
    """A detector's / segmentor's ``backbone.*`` weights without the prefix; other state dicts as they are."""
    return (_with_prefix(weights, BACKBONE_PREFIX) if any(k.startswith(BACKBONE_PREFIX) for k in weights)
            else dict(weights))


def checkpoint_weights(checkpoint: Mapping | str | os.PathLike, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """The RAVLT weights of a checkpoint (read from a path when given one): :func:`stored_weights` with a
    dense model's ``backbone.`` prefix removed."""
    if not isinstance(checkpoint, Mapping):
        checkpoint = read_checkpoint(checkpoint)
    return backbone_weights(stored_weights(checkpoint, use_ema))


def recorded_model(checkpoint: Mapping) -> dict | None:
    """``{"model_name", "attn_types"}`` our classifier was trained with (Lightning ``hyper_parameters``);
    None for other files. RALA and softmax stages have the same parameters: only this tells them apart."""
    hparams = checkpoint.get("hyper_parameters") if is_lightning_checkpoint(checkpoint) else None
    if not hparams or "model_name" not in hparams:
        return None
    return {"model_name": hparams["model_name"], "attn_types": (hparams.get("model_kwargs") or {}).get("attn_types")}


def describe_variant(state_dict: Mapping) -> str:
    """The RAVLT variant a state dict belongs to, from its widths and depths."""
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


def _mismatch_error(title: str, problems: dict[str, list[str]], hint: str) -> CheckpointMismatchError:
    lines = [title]
    for kind, keys in problems.items():
        if keys:
            shown = ", ".join(keys[:3]) + (f", ... ({len(keys)} in all)" if len(keys) > 3 else "")
            lines.append(f"  {kind}: {shown}")
    lines.append(hint)
    return CheckpointMismatchError("\n".join(lines))


def match_state_dict(state_dict: Mapping, model: nn.Module, allow_new_head: bool = False) -> dict:
    """Check ``state_dict`` against the RAVLT ``model``; return what to load or raise one clear error.

    Tolerated differences: a classifier head of another size when ``allow_new_head`` (fine-tuning to new
    classes keeps the model's fresh head), classification-only keys when the model is a dense backbone,
    and the dense ``extra_norms`` when the model is a classifier (they start fresh, docs/method.md §6).
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
    fresh += [k for k in target if k.startswith(DENSE_ONLY_PREFIXES) and k not in state_dict]
    missing = [k for k in target if k not in out and k not in fresh]
    if fresh:
        _log.info("kept freshly initialised: %s", ", ".join(fresh))
    if missing or unexpected or mismatched:
        raise _mismatch_error(
            f"checkpoint does not fit the model: model is {describe_variant(target)}, checkpoint looks like "
            f"{describe_variant(state_dict)}.",
            {"missing": missing, "unexpected": unexpected, "shape mismatch": mismatched},
            "Pick the model variant the checkpoint was trained with (e.g. model=ravlt_s).",
        )
    return out


def load_weights(model: nn.Module, state_dict: Mapping, allow_new_head: bool = False) -> dict:
    """Load RAVLT weights into ``model`` after :func:`match_state_dict`; returns what was loaded."""
    state_dict = match_state_dict(state_dict, model, allow_new_head)
    model.load_state_dict(state_dict, strict=False)  # completeness checked above
    return state_dict


def load_checkpoint(
    model: nn.Module, path: str | os.PathLike, use_ema: bool = False, allow_new_head: bool = False
) -> dict:
    """Load a released or our own RAVLT checkpoint into ``model``; returns what was loaded."""
    return load_weights(model, checkpoint_weights(path, use_ema), allow_new_head)


def load_strictly(model: nn.Module, weights: Mapping, source: str) -> None:
    """Every tensor of ``weights`` into ``model`` (a whole detector or segmentor, DDP-wrapped or not), or
    one :class:`CheckpointMismatchError` with the backbone variant the weights look like."""
    model = getattr(model, "module", model)
    target = model.state_dict()
    problems = {
        "missing": [k for k in target if k not in weights],
        "unexpected": [k for k in weights if k not in target],
        "shape mismatch": [
            f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(target[k].shape)}"
            for k, v in weights.items() if k in target and v.shape != target[k].shape
        ],
    }  # fmt: skip
    if any(problems.values()):
        expected = describe_variant(backbone_weights(target))
        raise _mismatch_error(
            f"{source} does not fit this {expected} model: its backbone looks like "
            f"{describe_variant(backbone_weights(weights))}.",
            problems,
            "Use the model=... and detector=... / segmentor=... the checkpoint was trained with.",
        )
    model.load_state_dict(weights, strict=True)
