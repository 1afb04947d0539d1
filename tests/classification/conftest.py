"""Shared fixtures of the classification tests: tiny class-folder datasets."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ravlt.data.digits import generate_digits

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def _write_truncated_jpeg(path: Path) -> Path:
    """A JPEG cut off half way through its data: PIL opens it but cannot decode it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), (128, 64, 32)).save(path, quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _make_image_folder(root: Path, per_class: int = 4, size: int = 32, seed: int = 0) -> Path:
    """``root/{train,val}/{red,green,blue}/*.jpg``: noisy images of one colour per class."""
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for name, colour in COLOURS.items():
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = np.clip(np.array(colour) + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.jpg")
    return root


@pytest.fixture(scope="session")
def write_truncated_jpeg():
    return _write_truncated_jpeg


@pytest.fixture(scope="session")
def make_image_folder():
    return _make_image_folder


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """A generated copy of the digits dataset; RAVLT_DATA_DIR points the digits config at its parent."""
    return generate_digits(tmp_path_factory.mktemp("data") / "digits")


@pytest.fixture
def data_env(monkeypatch, digits_dir):
    """Point the digits config at the session's generated copy (nothing is written into the project)."""
    monkeypatch.setenv("RAVLT_DATA_DIR", str(digits_dir.parent))
    return digits_dir
