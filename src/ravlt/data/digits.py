"""scikit-learn's handwritten digits as an offline class-folder image dataset.

scikit-learn ships 1,797 greyscale 8×8 digits (17 grey levels) with the library, so this dataset needs
no download. They are upscaled (bicubic) and written as PNGs in the standard class-folder layout that
``torchvision.datasets.ImageFolder`` reads, with a fixed stratified train/val split::

    <root>/train/0/0000.png ... <root>/train/9/...   (1,437 images)
    <root>/val/0/0003.png   ... <root>/val/9/...     (360 images)

File names are the digit's index in ``sklearn.datasets.load_digits``. Written to disk rather than served
from memory so that digits goes through exactly the loading path of ``image_folder`` and ImageNet
(PIL decode, timm transforms, unreadable-file handling), can be looked at, and is generated once per
machine (about a second). Generate it with ``python -m ravlt.data.digits ROOT`` or let
``ensure_digits(root)`` do it on first use.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .staging import ensure, generate_into

SPLITS = ("train", "val")
CLASSES = tuple(str(d) for d in range(10))
NUM_IMAGES = {"train": 1437, "val": 360}
VAL_FRACTION = 0.2
SPLIT_SEED = 0
IMAGE_SIZE = 32


def split_indices(targets: np.ndarray, val_fraction: float = VAL_FRACTION, seed: int = SPLIT_SEED) -> dict:
    """Stratified train/val indices; fixed for a given seed."""
    from sklearn.model_selection import train_test_split

    train, val = train_test_split(np.arange(len(targets)), test_size=val_fraction, stratify=targets, random_state=seed)
    return {"train": np.sort(train), "val": np.sort(val)}


def upscale(image: np.ndarray, size: int) -> Image.Image:
    """An 8×8 digit with values 0..16 as a ``size``×``size`` greyscale image (white ink on black)."""
    pixels = np.round(image * (255 / 16)).astype(np.uint8)
    return Image.fromarray(pixels).resize((size, size), Image.Resampling.BICUBIC)


def is_complete(root: str | os.PathLike) -> bool:
    root = Path(root)
    return all(sum(1 for _ in (root / split).glob("*/*.png")) == NUM_IMAGES[split] for split in SPLITS)


def generate_digits(root: str | os.PathLike, image_size: int = IMAGE_SIZE) -> Path:
    """Write the dataset to ``root`` (which must not exist) and return it.

    Files go to a temporary sibling folder that is renamed into place at the end (:mod:`.staging`).
    """
    from sklearn.datasets import load_digits

    def write(folder: Path) -> None:
        digits = load_digits()
        for split, indices in split_indices(digits.target).items():
            for name in CLASSES:
                (folder / split / name).mkdir(parents=True)
            for i in indices:
                upscale(digits.images[i], image_size).save(folder / split / str(digits.target[i]) / f"{i:04d}.png")

    return generate_into(root, write, is_complete)


def ensure_digits(root: str | os.PathLike, image_size: int = IMAGE_SIZE) -> Path:
    """Return ``root``, generating the dataset there first if it is not complete."""
    return ensure(root, is_complete, lambda r: generate_digits(r, image_size))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="output directory (must not exist)")
    parser.add_argument("--image-size", type=int, default=IMAGE_SIZE, help="side of the upscaled images")
    args = parser.parse_args(argv)
    print(generate_digits(args.root, args.image_size))


if __name__ == "__main__":
    main()
