"""Semantic segmentation: a Hydra config in, mmseg (mmengine Runner) behind, mIoU / mAcc / aAcc out.

    python train.py task=segmentation model=ravlt_s segmentor=upernet_160k dataset=ade20k hardware=gpus
    python train.py task=segmentation task.mode=eval ckpt_path=upernet_s.pth segmentor=upernet_160k dataset=ade20k

The segmentor group names an mmseg config in ``segmentation/configs/``; the dataset group gives an
ADE20K-layout root (``ADEChallengeData2016/{images,annotations}/{training,validation}``) and its
classes; :mod:`ravlt.mm.runner` applies model, hardware, logger and task settings and runs mmengine.
Metrics come back as fractions (mmseg logs percentages) plus ``invalid_label_pixels``, the number of
ground-truth pixels whose label was outside the class range and therefore ignored.
"""
from __future__ import annotations

from pathlib import Path

from mmengine.config import Config
from omegaconf import DictConfig, OmegaConf

from ravlt.mm import runner as mm

from . import ConfigError

ADE_DIR = "ADEChallengeData2016"
SPLITS = {"train": "training", "val": "validation"}
PERCENT_METRICS = ("aAcc", "mIoU", "mAcc", "mDice", "mFscore", "mPrecision", "mRecall")
COUNT_METRICS = ("invalid_label_pixels",)
SLIDE_STRIDE = 2 / 3  # sliding-window test: windows of the training crop, overlapping by a third


def _missing(dataset: DictConfig, what: str, path: Path) -> ConfigError:
    env = dataset.get("root_env")
    where = "dataset.root=/path/to/folder" + (f" (or the {env} environment variable)" if env else "")
    return ConfigError(
        f"{dataset.name}: {what} not found: {path}\n"
        f"Set {where} to the folder holding {ADE_DIR}/images/{{training,validation}} and "
        f"{ADE_DIR}/annotations/{{training,validation}} ({ADE_DIR} itself is accepted too)."
    )


def dataset_root(dataset: DictConfig, need_train: bool) -> Path:
    """The ``ADEChallengeData2016`` folder of the dataset (generated first for shapes_ade), checked."""
    if not dataset.get("root"):
        raise _missing(dataset, "dataset root", Path("<unset>"))
    root = mm.resolve_path(dataset.root)
    if dataset.get("generator") == "shapes_ade":
        from ravlt.data.shapes_ade import ShapesADESpec, generate_shapes_ade

        generate_shapes_ade(root, ShapesADESpec(**OmegaConf.to_container(dataset.get("generator_args") or {})))
    if not root.is_dir():
        raise _missing(dataset, "dataset root", root)
    base = root / ADE_DIR if (root / ADE_DIR).is_dir() else root
    for split in ("train", "val") if need_train else ("val",):
        images, labels = base / "images" / SPLITS[split], base / "annotations" / SPLITS[split]
        if not images.is_dir() or not any(images.glob("*.jpg")):
            raise _missing(dataset, f"{split} images (*.jpg)", images)
        if not labels.is_dir() or not any(labels.glob("*.png")):
            raise _missing(dataset, f"{split} annotations (*.png)", labels)
    return base


def set_dataset(mm_cfg: Config, dataset: DictConfig, need_train: bool = True) -> None:
    """Point every dataloader at the dataset, with its mmseg class and its classes."""
    base = dataset_root(dataset, need_train)
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
    """The mmengine config of a segmentation run: the segmentor's file with data and project settings
    (``task.cfg_options`` still come last)."""
    mm_cfg = mm.load_config(mm.sized_config_path(cfg.segmentor.config, cfg.model.name))
    set_dataset(mm_cfg, cfg.dataset, need_train=cfg.task.mode == "train")
    set_test_mode(mm_cfg, cfg.segmentor.get("test_mode"))
    return mm.apply_project_settings(mm_cfg, cfg)


def as_fractions(metrics: dict[str, float]) -> dict[str, float | int]:
    """mmseg's percentages as fractions, pixel counts as integers; other entries unchanged."""
    return {  # mmseg rounds percentages to 2 decimals: 4 decimals of a fraction, float32 noise dropped
        k: round(v / 100.0, 6) if k in PERCENT_METRICS else int(v) if k in COUNT_METRICS else v
        for k, v in metrics.items()
    }


def run(cfg: DictConfig) -> dict:
    """Train (``task.mode=train``) or evaluate ``ckpt_path`` (``task.mode=eval``); mIoU, mAcc, aAcc out."""
    return as_fractions(mm.run(build_config(cfg), cfg))
