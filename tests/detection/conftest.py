"""Shared fixtures of the detection tests: tiny generated datasets and Hydra composition."""
import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from mmdet.datasets import CocoDataset

from ravlt.data.shapes_coco import generate_shapes_coco

PROJECT_ROOT = Path(__file__).resolve().parents[2]


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


@pytest.fixture
def compose_run(tmp_path):
    """``compose_run(*overrides)``: the project's Hydra config as ``train.py`` would compose it."""

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
            return compose("config", overrides=[*overrides, f"output_dir={tmp_path / 'run'}"])

    return _compose
