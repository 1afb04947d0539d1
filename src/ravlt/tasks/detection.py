"""Detection and instance segmentation: a Hydra config in, mmdet (mmengine Runner) behind, COCO metrics out.

    python train.py task=detection model=ravlt_s detector=mask_rcnn_1x dataset=coco hardware=gpus
    python train.py task=detection task.mode=eval ckpt_path=mask_rcnn_s_1x.pth dataset=coco

The detector group names an mmdet config in ``detection/configs/``; the dataset group gives a
COCO-layout root (``annotations/instances_{train,val}2017.json``, ``train2017/``, ``val2017/``).
:func:`build_config` reads top-down: the detector's config, then dataset, model, hardware, schedule,
logger and run settings (:mod:`ravlt.mm.settings`); :func:`run` hands it to mmengine.
"""
from __future__ import annotations

from pathlib import Path

from mmengine.config import Config
from omegaconf import DictConfig

from ravlt.data.coco_annotations import check_coco_annotations
from ravlt.data.roots import dataset_root, require
from ravlt.mm import runner
from ravlt.mm import settings as mm

LAYOUT = "a folder with annotations/instances_{train,val}2017.json, train2017/ and val2017/"
EVALUATORS = ("val_evaluator", "test_evaluator")


def coco_classes() -> tuple[str, ...]:
    """COCO's 80 class names, as mmdet's CocoDataset has them."""
    from mmdet.datasets import CocoDataset  # imported after ravlt.mm, which holds back the fork's OneDL notice

    return tuple(CocoDataset.METAINFO["classes"])


def checked_root(dataset: DictConfig, need_train: bool) -> Path:
    """The dataset's root (generated first for the offline dataset), checked against the COCO layout, and
    its annotation files (:mod:`ravlt.data.coco_annotations`)."""
    root = dataset_root(dataset, LAYOUT)
    splits = ("train", "val") if need_train else ("val",)
    require(dataset, root, [dataset[f"{split}_{part}"] for split in splits for part in ("ann", "images")], LAYOUT)
    classes = list(dataset.get("classes") or coco_classes())
    for split in splits:
        check_coco_annotations(root / dataset[f"{split}_ann"], classes, f"dataset.{split}_ann")
    return root


def set_dataset(mm_cfg: Config, dataset: DictConfig, root: Path) -> None:
    """Point the dataloaders and COCO evaluators at the dataset (and its classes, when not COCO's)."""
    splits = {"train_dataloader": "train", "val_dataloader": "val", "test_dataloader": "val"}
    classes = tuple(dataset.get("classes") or ())
    for name in mm.DATALOADERS:
        ds = mm_cfg[name].dataset
        split = splits[name]
        ds.data_root = str(root)
        ds.ann_file = str(dataset[f"{split}_ann"])
        ds.data_prefix = dict(img=str(dataset[f"{split}_images"]).rstrip("/") + "/")
        if classes and tuple(ds.get("metainfo", {}).get("classes", ())) != classes:
            ds.metainfo = dict(classes=classes)  # the config's palette only fits its own classes
    for name in EVALUATORS:
        mm_cfg[name].ann_file = str(root / dataset.val_ann)
    if classes:
        mm.set_num_classes(mm_cfg.model, len(classes))


def build_config(cfg: DictConfig) -> Config:
    """The mmengine config of a detection run."""
    mm_cfg = mm.load_config(mm.sized_config_path(cfg.detector.config, cfg.model.name))
    set_dataset(mm_cfg, cfg.dataset, checked_root(cfg.dataset, need_train=cfg.task.mode == "train"))
    mm.set_model(mm_cfg, cfg.model)
    mm.set_hardware(mm_cfg, cfg.hardware)
    mm.set_schedule(mm_cfg, cfg.task)
    mm.set_logger(mm_cfg, cfg.logger, cfg.run_name, cfg.output_dir)
    mm.set_run(mm_cfg, cfg.seed, cfg.output_dir, cfg.run_name, cfg.task.get("cfg_options"))
    return mm_cfg


def run(cfg: DictConfig) -> dict:
    """Train (``task.mode=train``) or evaluate ``ckpt_path`` (``task.mode=eval``); COCO metrics out."""
    return runner.run(
        build_config(cfg), cfg.task.mode, cfg.ckpt_path, mm.local_devices(cfg.hardware), mm.uses_cpu(cfg.hardware),
        int(cfg.hardware.get("num_nodes") or 1),
    )
