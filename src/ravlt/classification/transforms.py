"""Training and evaluation transforms: timm's ImageNet pipeline, configured by the recipe."""

from __future__ import annotations

from collections.abc import Mapping

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, create_transform

MEAN = IMAGENET_DEFAULT_MEAN
STD = IMAGENET_DEFAULT_STD


def train_transform(image_size: int, interpolation: str, augment: Mapping):
    """RandomResizedCrop + flip + RandAugment / colour jitter + normalise + random erasing.

    ``augment`` holds ``timm.data.create_transform`` arguments (``scale``, ``hflip``, ``auto_augment``,
    ``color_jitter``, ``re_prob``, ``re_mode``, ...).
    """
    kwargs = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in augment.items()}
    return create_transform(image_size, is_training=True, interpolation=interpolation, mean=MEAN, std=STD, **kwargs)


def eval_transform(image_size: int, interpolation: str, crop_pct: float):
    """Resize the short side to ``image_size / crop_pct``, centre-crop ``image_size``, normalise."""
    return create_transform(
        image_size, is_training=False, interpolation=interpolation, crop_pct=crop_pct, mean=MEAN, std=STD
    )


def denormalize(images):
    """Normalised (B, 3, H, W) images back to [0, 1] for display."""
    mean = images.new_tensor(MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(STD).view(1, 3, 1, 1)
    return (images * std + mean).clamp(0, 1)
