"""Detection and instance segmentation: a Hydra config in, mmdet (mmengine Runner) behind, COCO metrics out.

    python train.py task=detection model=ravlt_s detector=mask_rcnn_1x dataset=coco hardware=gpus
    python train.py task=detection task.mode=eval ckpt_path=mask_rcnn_s_1x.pth dataset=coco

The detector group names an mmdet config in ``detection/configs/``; the dataset group gives a
COCO-layout root (``annotations/instances_{train,val}2017.json``, ``train2017/``, ``val2017/``);
:mod:`ravlt.mm.runner` applies model, hardware, logger and task settings and runs mmengine.
"""
from __future__ import annotations

import logging
from pathlib import Path

from mmengine.config import Config
from omegaconf import DictConfig

from ravlt.mm import runner as mm

from . import ConfigError

log = logging.getLogger(__name__)

SIZES = ("t", "s", "b", "l")
DATALOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")
EVALUATORS = ("val_evaluator", "test_evaluator")


def detector_config_path(template: str, model_name: str) -> Path:
    """The detector's config for this model size (``{size}`` in the template is t/s/b/l).

    Sizes the paper has no config for (RAVLT-T with the 3x detectors) start from the smallest size
    that has one; the backbone and FPN widths are switched to the chosen model afterwards.
    """
    size = model_name.rsplit("_", 1)[-1]
    path = mm.resolve_path(template.format(size=size))
    if path.is_file() or "{size}" not in template:
        return path
    for other in SIZES:
        candidate = mm.resolve_path(template.format(size=other))
        if candidate.is_file():
            log.info("no %s config for %s; starting from %s with the backbone switched", path.name, model_name,
                     candidate.name)  # fmt: skip
            return candidate
    raise ConfigError(f"no detector config matches {template} (looked for sizes {', '.join(SIZES)})")


def _require(path: Path, what: str, dataset: DictConfig) -> None:
    if not path.exists():
        env = dataset.get("root_env")
        where = f"dataset.root=/path/to/{dataset.name}" + (f" (or the {env} environment variable)" if env else "")
        raise ConfigError(
            f"{dataset.name}: {what} not found: {path}\n"
            f"Set {where} to a folder with annotations/instances_{{train,val}}2017.json, train2017/ and val2017/."
        )


def dataset_root(dataset: DictConfig, need_train: bool) -> Path:
    """The dataset's root, generated first for the synthetic datasets; checks the COCO layout."""
    root = mm.resolve_path(dataset.root)
    if dataset.get("generator") == "shapes_coco":
        from ravlt.data.shapes_coco import ensure_shapes_coco

        ensure_shapes_coco(root)
    _require(root, "dataset root", dataset)
    for split in ("train", "val") if need_train else ("val",):
        _require(root / dataset[f"{split}_ann"], f"{split} annotation file", dataset)
        _require(root / dataset[f"{split}_images"], f"{split} image folder", dataset)
    return root


def set_num_classes(node, num_classes: int) -> None:
    """Set every ``num_classes`` in a model config (box, mask and cascade-stage heads)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "num_classes":
                node[key] = num_classes
            else:
                set_num_classes(value, num_classes)
    elif isinstance(node, (list, tuple)):
        for item in node:
            set_num_classes(item, num_classes)


def set_dataset(mm_cfg: Config, dataset: DictConfig, need_train: bool = True) -> None:
    """Point the dataloaders and COCO evaluators at the dataset (and its classes, when not COCO's)."""
    root = dataset_root(dataset, need_train)
    splits = {"train_dataloader": "train", "val_dataloader": "val", "test_dataloader": "val"}
    for name in DATALOADERS:
        ds = mm_cfg[name].dataset
        split = splits[name]
        ds.data_root = str(root)
        ds.ann_file = str(dataset[f"{split}_ann"])
        ds.data_prefix = dict(img=str(dataset[f"{split}_images"]).rstrip("/") + "/")
        classes = tuple(dataset.get("classes") or ())
        if classes and tuple(ds.get("metainfo", {}).get("classes", ())) != classes:
            ds.metainfo = dict(classes=classes)  # the config's palette only fits its own classes
    for name in EVALUATORS:
        mm_cfg[name].ann_file = str(root / dataset.val_ann)
    if dataset.get("classes"):
        set_num_classes(mm_cfg.model, len(dataset.classes))


def build_config(cfg: DictConfig) -> Config:
    """The mmengine config of a detection run: the detector's file with data and project settings applied."""
    mm_cfg = mm.load_config(detector_config_path(cfg.detector.config, cfg.model.name))
    set_dataset(mm_cfg, cfg.dataset, need_train=cfg.task.mode == "train")
    return mm.apply_project_settings(mm_cfg, cfg)


def run(cfg: DictConfig) -> dict:
    """Train (``task.mode=train``) or evaluate ``ckpt_path`` (``task.mode=eval``); COCO metrics out."""
    return mm.run(build_config(cfg), cfg)
