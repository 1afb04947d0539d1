"""What the detection and segmentation predictors share: their inputs, the mmengine config of a checkpoint, strict
loading, the input as OpenMMLab expects it, and where the overlay goes."""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
from mmengine.config import Config
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import nn

from ravlt.data.images import read_image
from ravlt.errors import ConfigError
from ravlt.models.checkpoint import load_strictly, read_checkpoint, stored_weights

from .checkpoints import existing_file, require_task

log = logging.getLogger(__name__)

BACKBONE_TYPES = ("ravlt.RAVLTBackbone", "RAVLTBackbone")
OVERLAY_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


def config_from_checkpoint(checkpoint: Mapping) -> Config | None:
    """The config an mmengine Runner saved in the checkpoint (``meta.cfg``), when it is one of ours."""
    text = (checkpoint.get("meta") or {}).get("cfg")
    if not isinstance(text, str):
        return None
    import ravlt.mm  # noqa: F401  (registers ravlt.RAVLTBackbone for the config's model)

    config = Config.fromstring(text, ".py")
    backbone = config.get("model", {}).get("backbone", {}).get("type")
    if backbone not in BACKBONE_TYPES:
        log.info("the checkpoint's own config has backbone %r, not a RAVLT: not using it", backbone)
        return None
    return config


def config_from_group(cfg: DictConfig, group: str) -> Config:
    """The ``detector`` / ``segmentor`` group's config with ``model``'s backbone (for checkpoints that do not
    carry a config, such as released ones)."""
    from ravlt.mm import settings as mm

    if group not in cfg:
        raise ConfigError(
            f"the checkpoint carries no config and {group}=... is not set; name the {group} it was trained with"
        )
    mm_cfg = mm.load_config(mm.sized_config_path(cfg[group].config, cfg.model.name))
    mm_cfg.model.backbone.init_cfg = None  # the checkpoint holds every weight
    mm.set_model(mm_cfg, OmegaConf.merge(cfg.model, {"pretrained": None}))
    return mm_cfg


class DenseInputs(NamedTuple):
    path: Path  # the checkpoint's
    image: Image.Image
    checkpoint: Mapping
    config: Config


def dense_inputs(cfg: DictConfig, task: str, group: str) -> DenseInputs:
    """What a dense predictor starts from: the checkpoint (one of a ``task`` run, else a one-line error), the
    image and the model's config (the checkpoint's own, else the ``group``'s)."""
    path = existing_file(cfg.checkpoint, "checkpoint")
    image = read_image(cfg.image)
    checkpoint = read_checkpoint(path)
    require_task(checkpoint, task, path)
    return DenseInputs(path, image, checkpoint, model_config(checkpoint, cfg, group))


def model_config(checkpoint: Mapping, cfg: DictConfig, group: str) -> Config:
    config = config_from_checkpoint(checkpoint)
    if config is not None:
        print(f"config: the one saved in the checkpoint (backbone {config.model.backbone.get('arch')})")
        return config
    config = config_from_group(cfg, group)
    print(f"config: {group}={cfg[group].name} with model={cfg.model.name} (the checkpoint carries none)")
    return config


def load_weights(model: nn.Module, checkpoint: Mapping, path: Path) -> None:
    """Load every weight of the checkpoint into ``model`` or fail naming what does not fit."""
    load_strictly(model, stored_weights(checkpoint), f"checkpoint={path}")


def dataset_meta(checkpoint: Mapping) -> dict:
    """Class names (and palette) that the training run saved in the checkpoint, keys lower-cased."""
    meta = (checkpoint.get("meta") or {}).get("dataset_meta") or {}
    return {k.lower(): v for k, v in meta.items()}


def bgr_array(image: Image.Image) -> np.ndarray:
    """The RGB image as the BGR uint8 array OpenMMLab pipelines take (as ``mmcv.imread`` returns)."""
    return np.ascontiguousarray(np.asarray(image)[..., ::-1])


def overlay_path(cfg: DictConfig, task: str) -> Path:
    """``output=...``, or ``<image stem>_<task>.png`` next to the input image."""
    if cfg.get("output"):
        out = Path(cfg.output).expanduser()
        if out.suffix.lower() not in OVERLAY_SUFFIXES:
            raise ConfigError(f"output={cfg.output}: name a picture file ({', '.join(OVERLAY_SUFFIXES)})")
    else:
        image = Path(cfg.image)
        out = image.with_name(f"{image.stem}_{task}.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out
