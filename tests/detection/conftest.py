"""Shared fixtures of the detection tests: tiny generated datasets."""
import json
from pathlib import Path

import pytest
from mmdet.datasets import CocoDataset

from ravlt.data.shapes_coco import generate_shapes_coco


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory) -> Path:
    """A small shapes dataset in COCO layout (8 train / 4 val images of 96x96)."""
    return generate_shapes_coco(tmp_path_factory.mktemp("data") / "shapes_coco", num_train=8, num_val=4, image_size=96)


@pytest.fixture(scope="session")
def coco_root(tmp_path_factory) -> Path:
    """The COCO 2017 layout with empty image folders and annotation files (enough to compose a run)."""
    root = tmp_path_factory.mktemp("coco")
    (root / "annotations").mkdir()
    categories = [dict(id=i + 1, name=name) for i, name in enumerate(CocoDataset.METAINFO["classes"])]
    for split in ("train2017", "val2017"):
        (root / split).mkdir()
        annotations = dict(images=[], annotations=[], categories=categories)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(annotations))
    return root
