"""Detection and instance segmentation: a Hydra config in, mmdet (mmengine Runner) behind, COCO metrics out.

    python train.py task=detection model=ravlt_s detector=mask_rcnn_1x dataset=coco hardware=gpus
    python train.py task=detection task.mode=eval ckpt_path=mask_rcnn_s_1x.pth dataset=coco

The detector group names an mmdet config in ``detection/configs/``; the dataset group gives a
COCO-layout root (``annotations/instances_{train,val}2017.json``, ``train2017/``, ``val2017/``);
:mod:`ravlt.mm.runner` applies model, hardware, logger and task settings and runs mmengine.
"""
from __future__ import annotations

from pathlib import Path

from mmengine.config import Config
from omegaconf import DictConfig

from ravlt.mm import runner as mm

from . import ConfigError

EVALUATORS = ("val_evaluator", "test_evaluator")


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


def set_dataset(mm_cfg: Config, dataset: DictConfig, need_train: bool = True) -> None:
    """Point the dataloaders and COCO evaluators at the dataset (and its classes, when not COCO's)."""
    root = dataset_root(dataset, need_train)
    splits = {"train_dataloader": "train", "val_dataloader": "val", "test_dataloader": "val"}
    for name in mm.DATALOADERS:
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
        mm.set_num_classes(mm_cfg.model, len(dataset.classes))


def build_config(cfg: DictConfig) -> Config:
    """The mmengine config of a detection run: the detector's file with data and project settings applied."""
    mm_cfg = mm.load_config(mm.sized_config_path(cfg.detector.config, cfg.model.name))
    set_dataset(mm_cfg, cfg.dataset, need_train=cfg.task.mode == "train")
    return mm.apply_project_settings(mm_cfg, cfg)


def run(cfg: DictConfig) -> dict:
    """Train (``task.mode=train``) or evaluate ``ckpt_path`` (``task.mode=eval``); COCO metrics out."""
    return mm.run(build_config(cfg), cfg)
