"""Images for the rank analysis: scikit-image's bundled photographs (offline) or a folder of images."""
from __future__ import annotations

import os
from pathlib import Path

import skimage.data
import torch
from PIL import Image
from timm.data import create_transform

from ravlt.data.images import IMAGE_SUFFIXES, read_image
from ravlt.errors import ConfigError
from ravlt.models.ravlt import IMAGENET_MEAN, IMAGENET_STD

SAMPLE_IMAGES = ("astronaut", "coffee", "chelsea", "rocket")
"""Colour photographs shipped inside scikit-image (no download)."""


def sample_images(names=SAMPLE_IMAGES) -> list[tuple[str, Image.Image]]:
    return [(name, Image.fromarray(getattr(skimage.data, name)()).convert("RGB")) for name in names]


def folder_images(folder: str | os.PathLike) -> list[tuple[str, Image.Image]]:
    """Every image file directly in ``folder`` (sorted by name); an unreadable one raises."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"--images {folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(f"--images {folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it")
    return [(p.name, read_image(p)) for p in files]


def to_input(image: Image.Image, size: int) -> torch.Tensor:
    """(1, 3, size, size): short side resized to ``size`` (bicubic), centre crop, ImageNet normalisation."""
    transform = create_transform(
        size, is_training=False, interpolation="bicubic", crop_pct=1.0, mean=IMAGENET_MEAN, std=IMAGENET_STD
    )
    return transform(image).unsqueeze(0)
