"""Reading one input image, with an error that names the file and the reason when it cannot be decoded."""
from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
DECODE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


class UnreadableImageError(ValueError):
    """An input image that does not exist or cannot be decoded."""


def read_image(path: str | os.PathLike) -> Image.Image:
    """The image at ``path`` as RGB, fully decoded (a truncated file fails here, not later)."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableImageError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except DECODE_ERRORS as e:
        raise UnreadableImageError(
            f"cannot read image {path} ({type(e).__name__}: {e}); is it a complete image file "
            f"({', '.join(s[1:] for s in IMAGE_SUFFIXES[:5])}, ...)?"
        ) from e
