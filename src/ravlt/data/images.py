"""Reading one input image, with an error that names the file and the reason when it cannot be decoded."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class UnreadableImageError(ValueError):
    """An input image that does not exist or cannot be decoded."""


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with 16-bit and 32-bit grey levels scaled to 8 bits (PIL's own conversion clips them at 255,
    which turns most of a 16-bit image white)."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        if image.mode == "F" or pixels.max() > 65535:
            low, high = pixels.min(), pixels.max()
            pixels = (pixels - low) * (255 / max(high - low, 1e-12))
        else:
            pixels = pixels / 257
        image = Image.fromarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8), mode="L")
    return image.convert("RGB")


def load_rgb(path: str) -> Image.Image:
    """The dataset loader: :func:`to_rgb` of the fully decoded file (torchvision's loader clips 16 bits)."""
    with open(path, "rb") as f, Image.open(f) as image:
        image.load()
        return to_rgb(image)


def read_image(path: str | os.PathLike) -> Image.Image:
    """The image at ``path`` as RGB (:func:`to_rgb`), fully decoded (a truncated file fails here, not later)."""
    path = Path(path)
    if path.is_dir():
        raise UnreadableImageError(f"image={path} is a folder; give one image file")
    if not path.is_file():
        raise UnreadableImageError(f"image not found: {path}")
    try:
        return load_rgb(str(path))
    except DECODE_ERRORS as e:
        raise UnreadableImageError(
            f"cannot read image {path} ({type(e).__name__}: {e}); is it a complete image file "
            f"({', '.join(s[1:] for s in IMAGE_SUFFIXES[:5])}, ...)?"
        ) from e
