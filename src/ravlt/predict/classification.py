"""Classification: the top-k classes of one image, printed with their names.

Class names come from, in order: ``class_names=`` (a list, a text file with one name per line, or a
class-folder dataset root whose ``train/`` sub-folders name the classes), the checkpoint (``class_names``
at its top level or in Lightning's ``hyper_parameters``), ImageNet-1k's (timm's ``ImageNetInfo``) for a
1000-class head, else ``class <i>``.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import timm
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from timm.data import ImageNetInfo, create_transform, resolve_data_config
from torch import nn

from ravlt.data.images import read_image
from ravlt.errors import ConfigError
from ravlt.models.checkpoint import checkpoint_weights, load_weights, read_checkpoint

from .checkpoints import existing_file, require_task

log = logging.getLogger(__name__)


def checkpoint_field(checkpoint: Mapping, key: str):
    """``key`` at the checkpoint's top level or in its Lightning ``hyper_parameters``."""
    if key in checkpoint:
        return checkpoint[key]
    return (checkpoint.get("hyper_parameters") or {}).get(key)


def build_classifier(model_cfg: DictConfig, checkpoint: Mapping, use_ema: bool) -> nn.Module:
    """The timm model of ``model_cfg`` with the checkpoint's weights (its head decides the class count)."""
    weights = checkpoint_weights(checkpoint, use_ema)
    num_classes = weights["head.weight"].shape[0]
    kwargs = {k: v for k, v in OmegaConf.to_container(model_cfg, resolve=True).items()
              if k not in ("name", "pretrained", "drop_path_rate")}  # fmt: skip
    model = timm.create_model(model_cfg.name, num_classes=num_classes, **kwargs)
    load_weights(model, weights)
    return model.eval()


def _names_from(source) -> list[str]:
    if isinstance(source, (list, tuple, ListConfig)):
        return [str(name) for name in source]
    path = Path(str(source)).expanduser()
    if path.is_file():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if path.is_dir():
        folder = path / "train" if (path / "train").is_dir() else path
        return sorted(p.name for p in folder.iterdir() if p.is_dir())
    raise ConfigError(f"class_names={source}: neither a list, a text file nor a class-folder dataset root")


def class_names(override, checkpoint: Mapping, num_classes: int) -> list[str]:
    if override:
        names, source = _names_from(override), f"class_names={override}"
    elif checkpoint_field(checkpoint, "class_names"):
        names, source = list(checkpoint_field(checkpoint, "class_names")), "the checkpoint's class_names"
    elif num_classes == 1000:
        info = ImageNetInfo()
        return [info.index_to_description(i) for i in range(num_classes)]
    else:
        log.warning("the checkpoint carries no class names: printing class indices (pass class_names=... to name them)")
        return [f"class {i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise ConfigError(
            f"{source} gives {len(names)} class names but the checkpoint's head has {num_classes} classes"
        )
    return names


def preprocess(model: nn.Module, image, image_size: int | None) -> torch.Tensor:
    """timm's evaluation transform of the model (resize, centre crop, normalise) at ``image_size``."""
    args = {"input_size": (3, image_size, image_size)} if image_size else {}
    return create_transform(**resolve_data_config(args, model=model))(image).unsqueeze(0)


def top_k(probs: torch.Tensor, names: Sequence[str], k: int) -> list[dict]:
    values, indices = probs.topk(min(k, probs.numel()))
    return [{"index": int(i), "class": names[int(i)], "probability": float(p)} for p, i in zip(values, indices)]


def predict(cfg: DictConfig) -> dict:
    path = existing_file(cfg.checkpoint, "checkpoint")
    image = read_image(cfg.image)
    checkpoint = read_checkpoint(path)
    require_task(checkpoint, "classification", path)
    model = build_classifier(cfg.model, checkpoint, cfg.use_ema).to(cfg.device)
    names = class_names(cfg.class_names, checkpoint, model.num_classes)
    image_size = cfg.image_size or checkpoint_field(checkpoint, "image_size")
    with torch.no_grad():
        probs = model(preprocess(model, image, image_size).to(cfg.device)).softmax(-1)[0].cpu()
    predictions = top_k(probs, names, cfg.topk)
    print(f"Top-{len(predictions)} for {cfg.image} ({cfg.model.name}, {path.name}):")
    for rank, p in enumerate(predictions, 1):
        print(f"  {rank}. {100 * p['probability']:6.2f}%  {p['class']}  (class {p['index']})")
    return {"task": "classification", "image": str(cfg.image), "predictions": predictions}
