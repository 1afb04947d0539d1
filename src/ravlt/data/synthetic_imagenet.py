"""ImageNet-1k's on-disk layout filled with generated JPEGs, to run the ImageNet recipe offline.

    <root>/train/n01440764/n01440764_0.JPEG ...          (``per_class`` images in each of 1,000 folders)
    <root>/val/n01440764/ILSVRC2012_val_00000001.JPEG ...

The class folders are ImageNet-1k's WordNet ids (timm's ``ImageNetInfo``), so ``dataset=imagenet``, which
checks for 1,000 classes, reads it unchanged. Images have ImageNet's common sizes and hold a few filled
shapes on a noisy background (:func:`ravlt.data.shapes_coco.render_image`); what they show does not
depend on the class: the dataset exercises the pipeline, it is not for learning. A fixed seed gives the
same files; the dataset appears whole or not at all (:mod:`.staging`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from timm.data import ImageNetInfo

from .shapes_coco import render_image
from .staging import ensure, generate_into

SPLITS = ("train", "val")
SIZES = ((500, 375), (375, 500), (500, 333), (500, 500), (333, 500))  # (width, height), ImageNet's usual ones
MAX_SHAPES = 4


def class_folders() -> list[str]:
    return list(ImageNetInfo().label_names())


def is_complete(root: str | os.PathLike) -> bool:
    root = Path(root)
    classes = class_folders()
    return all(
        (root / split / classes[-1]).is_dir() and any((root / split / classes[-1]).iterdir()) for split in SPLITS
    )


def generate_synthetic_imagenet(root: str | os.PathLike, per_class: int = 1, seed: int = 0) -> Path:
    """Write ``per_class`` images per class and split to ``root`` (which must not exist); returns it."""

    def write(folder: Path) -> None:
        rng = np.random.default_rng(seed)
        val_index = 0
        for split in SPLITS:
            for wnid in class_folders():
                (folder / split / wnid).mkdir(parents=True)
                for i in range(per_class):
                    image, _ = render_image(rng, SIZES[int(rng.integers(len(SIZES)))], MAX_SHAPES)
                    val_index += split == "val"
                    name = f"{wnid}_{i}.JPEG" if split == "train" else f"ILSVRC2012_val_{val_index:08d}.JPEG"
                    image.save(folder / split / wnid / name, quality=85)

    return generate_into(root, write, is_complete)


def ensure_synthetic_imagenet(root: str | os.PathLike, **kwargs) -> Path:
    """Return ``root``, generating the dataset there first if it is not complete."""
    return ensure(root, is_complete, lambda r: generate_synthetic_imagenet(r, **kwargs))
