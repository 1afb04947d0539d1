"""Shared fixtures of the segmentation tests: tiny generated datasets."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ravlt.data.shapes_ade import ShapesADESpec, data_dir, generate_shapes_ade

TINY = ShapesADESpec(num_train=8, num_val=4, image_size=128, seed=0)


@pytest.fixture(scope="session")
def tiny_spec() -> ShapesADESpec:
    return TINY


@pytest.fixture(scope="session")
def shapes_ade_root(tmp_path_factory) -> Path:
    """The generated shapes dataset in ADE20K layout, 8 train / 4 val images of 128x128 (read-only)."""
    return generate_shapes_ade(tmp_path_factory.mktemp("data") / "shapes_ade", TINY)


@pytest.fixture
def ade_root(tmp_path) -> Path:
    """An ADE20K-layout folder with one image and label map per split (enough to compose a run)."""
    base = tmp_path / "ade" / "ADEChallengeData2016"
    for split in ("training", "validation"):
        for kind in ("images", "annotations"):
            (base / kind / split).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(base / "images" / split / "ADE_x_00000001.jpg")
        Image.fromarray(np.ones((32, 32), np.uint8)).save(base / "annotations" / split / "ADE_x_00000001.png")
    return tmp_path / "ade"


@pytest.fixture
def corrupt_shapes_root(tmp_path) -> Path:
    """The tiny shapes dataset with one training and one validation label map holding value 200,
    far outside its 4 classes (e.g. an annotation from another dataset)."""
    root = generate_shapes_ade(tmp_path / "shapes_ade", TINY)
    for split in ("training", "validation"):
        path = sorted((data_dir(root) / "annotations" / split).glob("*.png"))[0]
        label = np.array(Image.open(path))
        label[:10, :10] = 200
        Image.fromarray(label).save(path)
    return root
