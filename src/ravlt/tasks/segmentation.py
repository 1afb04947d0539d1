"""Semantic segmentation: a Hydra config in, mmseg (mmengine Runner) behind, mIoU / mAcc / aAcc out.

    python train.py task=segmentation model=ravlt_s segmentor=upernet_160k dataset=ade20k hardware=gpus
    python train.py task=segmentation task.mode=eval ckpt_path=upernet_s.pth segmentor=upernet_160k dataset=ade20k

The segmentor group names an mmseg config in ``segmentation/configs/``; the dataset group gives an
ADE20K-layout root (``ADEChallengeData2016/{images,annotations}/{training,validation}``) and its
classes. :func:`build_config` reads top-down: the segmentor's config, then dataset, model (with the
test mode), hardware, schedule, logger and run settings (:mod:`ravlt.mm.settings`); :func:`run` hands it
to mmengine.
Metrics come back as fractions (mmseg logs percentages) plus ``invalid_label_pixels``, the number of
ground-truth pixels whose label was outside the class range and therefore ignored.
"""
from __future__ import annotations

from pathlib import Path

from mmengine.config import Config
from omegaconf import DictConfig

from ravlt.data.roots import dataset_root, require
from ravlt.mm import runner
from ravlt.mm import settings as mm

from . import ConfigError

ADE_DIR = "ADEChallengeData2016"
SPLITS = {"train": "training", "val": "validation"}
LAYOUT = f"the folder holding {ADE_DIR}/{{images,annotations}}/{{training,validation}}, or {ADE_DIR} itself"
PERCENT_METRICS = ("aAcc", "mIoU", "mAcc", "mDice", "mFscore", "mPrecision", "mRecall")
COUNT_METRICS = ("invalid_label_pixels",)
SLIDE_STRIDE = 2 / 3  # sliding-window test: windows of the training crop, overlapping by a third


def checked_root(dataset: DictConfig, need_train: bool) -> Path:
    """The ``ADEChallengeData2016`` folder of the dataset (generated first for the offline dataset; the
    root may be that folder itself), checked for images and annotations of each split."""
    root = dataset_root(dataset, LAYOUT)
    base = root / ADE_DIR if (root / ADE_DIR).is_dir() else root
    splits = [SPLITS[s] for s in (("train", "val") if need_train else ("val",))]
    require(dataset, base, [p for s in splits for p in (f"images/{s}/*.jpg", f"annotations/{s}/*.png")], LAYOUT)
    return base


def set_dataset(mm_cfg: Config, dataset: DictConfig, base: Path) -> None:
    """Point every dataloader at the dataset, with its mmseg class and its classes."""
    classes = tuple(dataset.classes) if dataset.get("classes") else None
    for name in mm.DATALOADERS:
        ds = mm_cfg[name].dataset
        ds.type = dataset.get("type", "ADE20KDataset")
        ds.data_root = str(base)
        ds.update(img_suffix=".jpg", seg_map_suffix=".png", reduce_zero_label=True)
        if classes:
            ds.metainfo = dict(classes=classes)
            if dataset.get("palette"):
                ds.metainfo.palette = [tuple(c) for c in dataset.palette]
        else:  # the dataset class's own classes (ADE20K's 150)
            ds.pop("metainfo", None)
    num_classes = len(classes) if classes else int(dataset.num_classes)
    mm.set_num_classes(mm_cfg.model, num_classes)
    for name in mm.DATALOADERS:  # ravlt.IgnoreInvalidLabels in the pipelines
        mm.set_num_classes(mm_cfg[name], num_classes)


def set_test_mode(mm_cfg: Config, mode: str | None) -> None:
    """``whole``: one pass over the resized image; ``slide``: windows of the training crop."""
    if mode in (None, "whole"):
        mm_cfg.model.test_cfg = dict(mode="whole")
    elif mode == "slide":
        crop = tuple(int(v) for v in mm_cfg.get("crop_size", (512, 512)))
        stride = tuple(int(round(v * SLIDE_STRIDE)) for v in crop)
        mm_cfg.model.test_cfg = dict(mode="slide", crop_size=crop, stride=stride)
    else:
        raise ConfigError(f"segmentor.test_mode must be 'whole' or 'slide', got {mode!r}")


def build_config(cfg: DictConfig) -> Config:
    """The mmengine config of a segmentation run."""
    mm_cfg = mm.load_config(mm.sized_config_path(cfg.segmentor.config, cfg.model.name))
    set_dataset(mm_cfg, cfg.dataset, checked_root(cfg.dataset, need_train=cfg.task.mode == "train"))
    mm.set_model(mm_cfg, cfg.model)
    set_test_mode(mm_cfg, cfg.segmentor.get("test_mode"))
    mm.set_hardware(mm_cfg, cfg.hardware)
    mm.set_schedule(mm_cfg, cfg.task)
    mm.set_logger(mm_cfg, cfg.logger, cfg.run_name, cfg.output_dir)
    mm.set_run(mm_cfg, cfg.seed, cfg.output_dir, cfg.run_name, cfg.task.get("cfg_options"))
    return mm_cfg


def as_fractions(metrics: dict[str, float]) -> dict[str, float | int]:
    """mmseg's percentages as fractions, pixel counts as integers; other entries unchanged."""
    return {  # mmseg rounds percentages to 2 decimals: 4 decimals of a fraction, float32 noise dropped
        k: round(v / 100.0, 6) if k in PERCENT_METRICS else int(v) if k in COUNT_METRICS else v
        for k, v in metrics.items()
    }


def run(cfg: DictConfig) -> dict:
    """Train (``task.mode=train``) or evaluate ``ckpt_path`` (``task.mode=eval``); mIoU, mAcc, aAcc out."""
    metrics = runner.run(
        build_config(cfg), cfg.task.mode, cfg.ckpt_path, mm.local_devices(cfg.hardware), mm.uses_cpu(cfg.hardware),
        int(cfg.hardware.get("num_nodes") or 1),
    )
    return as_fractions(metrics)
