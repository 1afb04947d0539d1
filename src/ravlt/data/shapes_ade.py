"""A small synthetic semantic-segmentation dataset in the ADE20K on-disk layout, generated offline.

    <root>/ADEChallengeData2016/images/{training,validation}/ADE_{train,val}_%08d.jpg
    <root>/ADEChallengeData2016/annotations/{training,validation}/ADE_{train,val}_%08d.png

Labels follow ADE20K's convention: 0 is "other" (not annotated; mmseg's ``reduce_zero_label`` turns it
into the ignore index) and 1..K are the classes of :data:`CLASSES` (or, with ``num_classes`` K, classes
1..K, each shape class drawn as one of the three shapes: ADE20K's 150 for a rehearsal of its configs).
Each image is a noisy, washed-out gradient background with a few filled shapes of random size, position
and rotation, and sometimes a scribble of "other" pixels. Each shape class draws its colour from its own
hue band (with random saturation and brightness), so colour and outline both tell the class: a RAVLT-T
trained from scratch learns it in minutes on a CPU. A fixed seed gives identical files.

    python -m ravlt.data.shapes_ade data/generated/shapes_ade
"""
from __future__ import annotations

import argparse
import colorsys
import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .staging import replace_folder

CLASSES = ("background", "disc", "square", "triangle")
SHAPE_KINDS = CLASSES[1:]  # shape class c (1..K-1) is drawn as SHAPE_KINDS[(c - 1) % 3]
HUE_CENTRES = {"disc": 0.0, "square": 1 / 3, "triangle": 2 / 3}  # red, green, blue families
SPLITS = {"training": "train", "validation": "val"}
OTHER = 0  # ADE20K's "other" label, ignored after reduce_zero_label
_DONE_FILE = "shapes_ade.json"  # written last: its presence means the dataset is complete
GENERATOR_VERSION = 2  # part of the done file: bump when the drawing changes, so old copies get redrawn


@dataclass(frozen=True)
class ShapesADESpec:
    num_train: int = 400
    num_val: int = 60
    image_size: int = 128  # the width; also the height unless `height` is given
    max_shapes: int = 4
    seed: int = 0
    height: int | None = None
    num_classes: int = len(CLASSES)  # label values 1..num_classes; class 0 is the background

    @property
    def size(self) -> tuple[int, int]:
        return self.image_size, self.height or self.image_size


def data_dir(root: str | Path) -> Path:
    return Path(root) / "ADEChallengeData2016"


def _shape_polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    corners = {"square": 4, "triangle": 3}[kind]
    return [
        (cx + r * math.cos(angle + 2 * math.pi * i / corners), cy + r * math.sin(angle + 2 * math.pi * i / corners))
        for i in range(corners)
    ]


def _shape_colour(rng: np.random.Generator, kind: str) -> tuple[int, int, int]:
    hue = (HUE_CENTRES[kind] + rng.uniform(-0.08, 0.08)) % 1.0
    rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0))
    return tuple(int(255 * c) for c in rgb)


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    gx, gy = np.meshgrid(*(np.linspace(0.0, 1.0, n, dtype=np.float32) for n in size))
    grey = rng.uniform(40, 215, (2, 1)).astype(np.float32)
    start, end = (grey + rng.uniform(-25, 25, (2, 3))).astype(np.float32)  # washed-out colours
    t = gx * rng.uniform(-1, 1) + gy * rng.uniform(-1, 1)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    img = start + (end - start) * t[..., None]
    return img + rng.normal(0, 12, img.shape).astype(np.float32)


def render_sample(rng: np.random.Generator, spec: ShapesADESpec) -> tuple[Image.Image, Image.Image]:
    """One RGB image and its ADE-convention label map (uint8)."""
    width, height = spec.size
    canvas = Image.fromarray(np.clip(_background(rng, spec.size), 0, 255).astype(np.uint8))
    label = Image.new("L", spec.size, CLASSES.index("background") + 1)
    draw_img, draw_lbl = ImageDraw.Draw(canvas), ImageDraw.Draw(label)
    for _ in range(rng.integers(1, spec.max_shapes + 1)):
        cls = int(rng.integers(1, spec.num_classes))
        kind = SHAPE_KINDS[(cls - 1) % len(SHAPE_KINDS)]
        r = rng.uniform(0.10, 0.25) * min(width, height)
        cx, cy = rng.uniform(r * 0.5, (width - r * 0.5, height - r * 0.5))
        colour = _shape_colour(rng, kind)
        if kind == "disc":
            box = (cx - r, cy - r, cx + r, cy + r)
            draw_img.ellipse(box, fill=colour)
            draw_lbl.ellipse(box, fill=cls + 1)
        else:
            poly = _shape_polygon(kind, cx, cy, r, rng.uniform(0, 2 * math.pi))
            draw_img.polygon(poly, fill=colour)
            draw_lbl.polygon(poly, fill=cls + 1)
    if rng.random() < 0.3:  # an unannotated scribble, as ADE20K's "other" regions
        pts = [tuple(float(v) for v in rng.uniform(0, (width, height))) for _ in range(4)]
        line = max(2, min(width, height) // 40)
        draw_img.line(pts, fill=tuple(int(c) for c in rng.integers(0, 256, 3)), width=line)
        draw_lbl.line(pts, fill=OTHER, width=line)
    noisy = np.asarray(canvas, dtype=np.float32) + rng.normal(0, 6, (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)), label


def _stamp(spec: ShapesADESpec) -> dict:
    return {**asdict(spec), "generator_version": GENERATOR_VERSION}


def _is_complete(root: Path, spec: ShapesADESpec) -> bool:
    done = data_dir(root) / _DONE_FILE
    return done.is_file() and json.loads(done.read_text()) == _stamp(spec)


def generate_shapes_ade(root: str | Path, spec: ShapesADESpec = ShapesADESpec(), overwrite: bool = False) -> Path:
    """Write the dataset under ``root`` unless an identical one is already there; returns ``root``.

    Each split draws from its own seeded stream, so the validation images do not depend on
    ``num_train``. The files go to a temporary sibling folder that replaces ``ADEChallengeData2016`` in
    one rename at the end: an interrupted run leaves the previous copy (or none), never half of one
    (:func:`.staging.replace_folder`).
    """
    root = Path(root)
    if _is_complete(root, spec) and not overwrite:
        return root
    base = data_dir(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{base.name}-", dir=root))
    try:
        for split_index, (split, prefix) in enumerate(SPLITS.items()):
            img_dir, ann_dir = tmp / "images" / split, tmp / "annotations" / split
            img_dir.mkdir(parents=True)
            ann_dir.mkdir(parents=True)
            rng = np.random.default_rng([spec.seed, split_index])
            count = spec.num_train if split == "training" else spec.num_val
            for i in range(1, count + 1):
                img, lbl = render_sample(rng, spec)
                img.save(img_dir / f"ADE_{prefix}_{i:08d}.jpg", quality=95)
                lbl.save(ann_dir / f"ADE_{prefix}_{i:08d}.png")
        (tmp / _DONE_FILE).write_text(json.dumps(_stamp(spec), indent=2) + "\n")
        if overwrite or not _is_complete(root, spec):  # else another process (a DDP rank) finished first
            replace_folder(tmp, base, lambda folder: (folder / _DONE_FILE).is_file())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def ensure_shapes_ade(root: str | Path, **spec) -> Path:
    """:func:`generate_shapes_ade` with the :class:`ShapesADESpec` fields as keyword arguments."""
    return generate_shapes_ade(root, ShapesADESpec(**spec))


def main(argv: list[str] | None = None) -> None:
    defaults = ShapesADESpec()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="output folder; the dataset goes to <root>/ADEChallengeData2016")
    for field, value in asdict(defaults).items():
        parser.add_argument(f"--{field.replace('_', '-')}", type=int, default=value)
    parser.add_argument("--overwrite", action="store_true")
    args = vars(parser.parse_args(argv))
    root, overwrite = args.pop("root"), args.pop("overwrite")
    print(generate_shapes_ade(root, ShapesADESpec(**args), overwrite=overwrite))


if __name__ == "__main__":
    main()
