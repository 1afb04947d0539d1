"""What the rehearsal's runs share: data generated in the real layouts at real image sizes, and one
checkpoint per model size in the authors' released layout. Generated once under a folder and reused.

- ImageNet-1k: 1,000 WordNet-id class folders, one JPEG of ImageNet's usual sizes per class and split
  (``dataset=imagenet`` checks the 1,000 classes).
- COCO: 640x480 JPEGs (COCO's most common size) with up to 8 polygon-mask instances of COCO's 80 classes;
  as many training images as a phase has steps (an epoch at batch 1), one validation image.
- ADE20K: 683x512 JPEGs (ADE20K's common 4:3 at its 512-pixel short side) with label maps over its 150
  classes (0 = "other"); one validation image.
- ``RAVLT_{T,S,B,L}.pth``: a DeiT-style training checkpoint with the classifier under ``model``, the epoch
  and the training script's argparse namespace (docs/method.md §7), holding a freshly initialised model.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from ravlt.data.shapes_ade import ensure_shapes_ade
from ravlt.data.shapes_coco import ensure_shapes_coco
from ravlt.data.synthetic_imagenet import ensure_synthetic_imagenet
from ravlt.files import atomic_path

from .runs import DENSE_STEPS, Run

COCO_SIZE = (640, 480)
ADE_SIZE = (683, 512)
MAX_INSTANCES = 8
VAL_IMAGES = 1
ADE_TRAIN_IMAGES = 4
RELEASE_SEED = 2025  # not the runs' seed (0): the loaded weights differ from any fresh initialisation


@dataclass(frozen=True)
class Inputs:
    folder: Path

    def dataset_root(self, task: str) -> Path:
        return self.folder / {"classification": "imagenet", "detection": "coco", "segmentation": "ade20k"}[task]

    def pretrained(self, size: str) -> Path:
        return self.folder / "pretrained" / f"RAVLT_{size.upper()}.pth"


def prepare(folder: str | os.PathLike, runs: list[Run]) -> Inputs:
    """Generate (or find, from an earlier rehearsal) everything ``runs`` read."""
    inputs = Inputs(Path(folder).absolute())
    tasks = {run.task for run in runs}
    if "classification" in tasks:
        ensure_synthetic_imagenet(inputs.dataset_root("classification"))
    if "detection" in tasks:
        from ravlt.tasks.detection import coco_classes

        ensure_shapes_coco(
            inputs.dataset_root("detection"), num_train=DENSE_STEPS, num_val=VAL_IMAGES, image_size=COCO_SIZE,
            max_shapes=MAX_INSTANCES, classes=coco_classes(), suffix=".jpg",
        )  # fmt: skip
    if "segmentation" in tasks:
        width, height = ADE_SIZE
        spec = dict(num_train=ADE_TRAIN_IMAGES, num_val=VAL_IMAGES, image_size=width, height=height,
                    num_classes=150, max_shapes=MAX_INSTANCES)  # fmt: skip
        ensure_shapes_ade(inputs.dataset_root("segmentation"), **spec)
    for size in sorted({run.size for run in runs}):
        if not inputs.pretrained(size).is_file():
            write_released_layout(inputs.pretrained(size), f"ravlt_{size}")
    return inputs


def write_released_layout(path: Path, variant: str) -> Path:
    """A freshly initialised ``variant`` saved as the authors' ``RAVLT_*.pth`` files are (docs/method.md §7)."""
    import timm
    import torch

    import ravlt.models  # noqa: F401  (registers the variants with timm)

    with torch.random.fork_rng():
        torch.manual_seed(RELEASE_SEED)
        model = timm.create_model(variant)
    checkpoint = {"model": model.state_dict(), "epoch": 299, "args": argparse.Namespace(model=variant.upper())}
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)
    return path
