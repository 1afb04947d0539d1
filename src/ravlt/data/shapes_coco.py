"""A small COCO-format instance-segmentation dataset of synthetic shapes, generated offline.

Images hold a few non-overlapping filled circles, squares and triangles (random size, rotation and
colour) on a noisy background; each shape is one instance with its box and polygon mask. The layout
is COCO 2017's, so mmdet's ``CocoDataset`` and ``CocoMetric`` read it unchanged::

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
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle")
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


def _render_image(rng: np.random.Generator, size: int, max_shapes: int) -> tuple[Image.Image, list[dict]]:
    """One image and its instances (category index, polygon) placed without overlap."""
    background = rng.integers(0, 256, 3)
    pixels = background + rng.normal(0, 8, (size, size, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    placed: list[tuple[float, float, float]] = []
    instances = []
    for _ in range(int(rng.integers(1, max_shapes + 1))):
        for _attempt in range(50):
            radius = float(rng.uniform(0.09, 0.22) * size)
            cx, cy = rng.uniform(radius + 1, size - radius - 1, 2)
            if all(math.hypot(cx - x, cy - y) > radius + r + 2 for x, y, r in placed):
                break
        else:
            continue  # no free space left in this image
        label = int(rng.integers(len(CLASSES)))
        xy = _polygon(CLASSES[label], cx, cy, radius, float(rng.uniform(0, 2 * math.pi)))
        draw.polygon([tuple(p) for p in xy], fill=tuple(int(c) for c in _contrasting_colour(rng, background)))
        placed.append((cx, cy, radius))
        instances.append(dict(label=label, polygon=xy))
    return image, instances


def _write_split(rng: np.random.Generator, root: Path, split: str, num_images: int, size: int, max_shapes: int,
                 first_image_id: int) -> dict:
    (root / split).mkdir(parents=True)
    images, annotations = [], []
    for image_id in range(first_image_id, first_image_id + num_images):
        image, instances = _render_image(rng, size, max_shapes)
        file_name = f"{image_id:012d}.png"
        image.save(root / split / file_name)
        images.append(dict(id=image_id, file_name=file_name, width=size, height=size))
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
        categories=[dict(id=i + 1, name=name, supercategory="shape") for i, name in enumerate(CLASSES)],
    )


def is_complete(root: str | os.PathLike) -> bool:
    root = Path(root)
    return all((root / "annotations" / f"instances_{s}.json").is_file() and (root / s).is_dir() for s in SPLITS)


def generate_shapes_coco(
    root: str | os.PathLike,
    num_train: int = 300,
    num_val: int = 60,
    image_size: int = 128,
    max_shapes: int = 4,
    seed: int = 0,
) -> Path:
    """Write the dataset to ``root`` (replacing nothing: fails if ``root`` exists) and return it.

    Files are written to a temporary sibling directory and moved into place at the end, so an
    interrupted run never leaves a half-written dataset that looks complete.
    """
    root = Path(root)
    if root.exists():
        raise FileExistsError(f"{root} already exists; remove it to regenerate the shapes dataset")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        rng = np.random.default_rng(seed)
        (tmp / "annotations").mkdir()
        first_id = 1
        for split, n in zip(SPLITS, (num_train, num_val)):
            coco = _write_split(rng, tmp, split, n, image_size, max_shapes, first_id)
            (tmp / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
            first_id += n
        try:
            os.rename(tmp, root)
        except OSError:
            if not is_complete(root):  # another process did not finish it either
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def ensure_shapes_coco(root: str | os.PathLike, **kwargs) -> Path:
    """Return ``root``, generating the dataset there first if it is not complete."""
    root = Path(root)
    if is_complete(root):
        return root
    if root.exists() and not any(root.iterdir()):
        root.rmdir()
    return generate_shapes_coco(root, **kwargs)


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
