"""A small COCO-format instance-segmentation dataset of synthetic shapes, generated offline.

Images hold a few non-overlapping filled circles, squares and triangles (random size, rotation and
colour) on a noisy background; each shape is one instance with its box and polygon mask. The classes
are the three shapes by default; with another list of ``classes`` (e.g. COCO's 80) each class is drawn
as one of the three shapes. Images are square (``image_size``) or of the given ``(width, height)``. The
layout is COCO 2017's, so mmdet's ``CocoDataset`` and ``CocoMetric`` read it unchanged::

    <root>/annotations/instances_train2017.json
    <root>/annotations/instances_val2017.json
    <root>/train2017/000000000001.png ...
    <root>/val2017/...

A fixed seed gives the same files on every machine. Generate it with
``python -m ravlt.data.shapes_coco ROOT`` or let ``ensure_shapes_coco(root)`` do it on first use.
"""
from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .staging import ensure, generate_into

CLASSES = ("circle", "square", "triangle")
SHAPES = CLASSES  # what each class is drawn as: class i is SHAPES[i % 3]
SPLITS = ("train2017", "val2017")
CIRCLE_VERTICES = 32


def _polygon(kind: str, cx: float, cy: float, radius: float, angle: float) -> np.ndarray:
    """Vertices (K, 2) of a shape inscribed in the circle (cx, cy, radius)."""
    n = {"circle": CIRCLE_VERTICES, "square": 4, "triangle": 3}[kind]
    t = angle + 2 * math.pi * np.arange(n) / n
    return np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1)


def _polygon_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    while True:
        colour = rng.integers(0, 256, 3)
        if np.abs(colour - background).sum() > 160:
            return colour


def render_image(
    rng: np.random.Generator, size: tuple[int, int], max_shapes: int, num_classes: int = len(CLASSES)
) -> tuple[Image.Image, list[dict]]:
    """One image of ``size`` (width, height) and its instances (category index, polygon) placed without
    overlap."""
    width, height = size
    background = rng.integers(0, 256, 3)
    pixels = background + rng.normal(0, 8, (height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    placed: list[tuple[float, float, float]] = []
    instances = []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        for _attempt in range(50):
            radius = float(rng.uniform(0.09, 0.22) * min(width, height))
            cx, cy = rng.uniform(radius + 1, (width - radius - 1, height - radius - 1))
            if all(math.hypot(cx - x, cy - y) > radius + r + 2 for x, y, r in placed):
                break
        else:
            continue  # no free space left in this image
        label = int(rng.integers(num_classes))
        xy = _polygon(SHAPES[label % len(SHAPES)], cx, cy, radius, float(rng.uniform(0, 2 * math.pi)))
        draw.polygon([tuple(p) for p in xy], fill=tuple(int(c) for c in _contrasting_colour(rng, background)))
        placed.append((cx, cy, radius))
        instances.append(dict(label=label, polygon=xy))
    return image, instances


def _write_split(rng: np.random.Generator, root: Path, split: str, num_images: int, size: tuple[int, int],
                 max_shapes: int, classes: tuple[str, ...], first_image_id: int, suffix: str) -> dict:
    (root / split).mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(first_image_id, first_image_id + num_images):
        image, instances = render_image(rng, size, max_shapes, len(classes))
        file_name = f"{image_id:012d}{suffix}"
        image.save(root / split / file_name, **({"quality": 90} if suffix == ".jpg" else {}))
        images.append(dict(id=image_id, file_name=file_name, width=size[0], height=size[1]))
        for inst in instances:
            xy = inst["polygon"]
            x0, y0 = xy.min(axis=0)
            x1, y1 = xy.max(axis=0)
            annotations.append(dict(
                id=len(annotations) + 1,
                image_id=image_id,
                category_id=inst["label"] + 1,
                segmentation=[[round(float(v), 2) for v in xy.reshape(-1)]],
                area=round(_polygon_area(xy), 2),
                bbox=[round(float(v), 2) for v in (x0, y0, x1 - x0, y1 - y0)],
                iscrowd=0,
            ))  # fmt: skip
    return dict(
        info=dict(description=f"RAVLT synthetic shapes ({split})", version="1.0"),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[dict(id=i + 1, name=name, supercategory="shape") for i, name in enumerate(classes)],
    )


def is_complete(root: str | os.PathLike) -> bool:
    root = Path(root)
    return all((root / "annotations" / f"instances_{s}.json").is_file() and (root / s).is_dir() for s in SPLITS)


def generate_shapes_coco(
    root: str | os.PathLike,
    num_train: int = 300,
    num_val: int = 60,
    image_size: int | tuple[int, int] = 128,
    max_shapes: int = 4,
    seed: int = 0,
    classes: tuple[str, ...] = CLASSES,
    suffix: str = ".png",
) -> Path:
    """Write the dataset to ``root`` (replacing nothing: fails if ``root`` exists) and return it.

    ``image_size``: the side of square images, or ``(width, height)``; ``suffix``: ``.png`` or ``.jpg``.

    Files are written to a temporary sibling folder and moved into place at the end (:mod:`.staging`).
    """
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)

    def write(folder: Path) -> None:
        rng = np.random.default_rng(seed)
        (folder / "annotations").mkdir()
        first_id = 1
        for split, n in zip(SPLITS, (num_train, num_val)):
            coco = _write_split(rng, folder, split, n, size, max_shapes, tuple(classes), first_id, suffix)
            (folder / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
            first_id += n

    return generate_into(root, write, is_complete)


def ensure_shapes_coco(root: str | os.PathLike, **kwargs) -> Path:
    """Return ``root``, generating the dataset there first if it is not complete."""
    return ensure(root, is_complete, lambda r: generate_shapes_coco(r, **kwargs))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="output directory (must not exist)")
    parser.add_argument("--num-train", type=int, default=300)
    parser.add_argument("--num-val", type=int, default=60)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = generate_shapes_coco(args.root, args.num_train, args.num_val, args.image_size, seed=args.seed)
    print(f"shapes dataset written to {root}")


if __name__ == "__main__":
    main()
