"""Shared fixtures of the predict tests: an odd-sized photograph, random-init checkpoints of every task in
the formats the project writes, and Hydra composition of conf/predict.yaml."""
from pathlib import Path

import pytest
import skimage.data
import timm
import torch
from hydra import compose, initialize_config_dir
from PIL import Image

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DET_CONFIG = PROJECT_ROOT / "detection/configs/mask-rcnn_ravlt-t_fpn-slim_shapes-coco.py"
SEG_CONFIG = PROJECT_ROOT / "segmentation/configs/fpn_ravlt-t_slim_shapes-ade-128x128.py"


@pytest.fixture
def photo(tmp_path) -> Path:
    """scikit-image's cat, cropped to an odd size (not a multiple of any stride)."""
    path = tmp_path / "images" / "cat.jpg"
    path.parent.mkdir()
    Image.fromarray(skimage.data.chelsea()[:203, :297]).save(path)
    return path


@pytest.fixture(scope="session")
def imagenet_checkpoint(tmp_path_factory) -> Path:
    """A random-init RAVLT-T classifier in the released DeiT layout (weights under ``model``)."""
    path = tmp_path_factory.mktemp("ckpt") / "RAVLT_T_random.pth"
    torch.save({"model": timm.create_model("ravlt_t").state_dict()}, path)
    return path


def save_mmengine_checkpoint(
    config_path: Path, path: Path, dataset_meta: dict | None, with_config: bool = True
) -> Path:
    """A random-init detector / segmentor saved as an mmengine Runner saves it (config and classes in ``meta``)."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    import ravlt.mm  # noqa: F401  (registers the backbone and the config scopes)

    cfg = Config.fromfile(str(config_path))
    init_default_scope(cfg.default_scope)
    model = MODELS.build(cfg.model)
    meta = {"dataset_meta": dataset_meta} if dataset_meta else {}
    if with_config:
        meta["cfg"] = cfg.pretty_text
    torch.save({"meta": meta, "state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="session")
def detection_checkpoint(tmp_path_factory) -> Path:
    return save_mmengine_checkpoint(
        DET_CONFIG, tmp_path_factory.mktemp("ckpt") / "det.pth", {"classes": ("circle", "square", "triangle")}
    )


@pytest.fixture(scope="session")
def detection_checkpoint_without_config(tmp_path_factory) -> Path:
    """As released checkpoints are: weights only, no config or classes."""
    return save_mmengine_checkpoint(
        DET_CONFIG, tmp_path_factory.mktemp("ckpt") / "det_no_cfg.pth", None, with_config=False
    )


@pytest.fixture(scope="session")
def segmentation_checkpoint(tmp_path_factory) -> Path:
    return save_mmengine_checkpoint(
        SEG_CONFIG,
        tmp_path_factory.mktemp("ckpt") / "seg.pth",
        {"classes": ("background", "disc", "square", "triangle")},
    )


@pytest.fixture
def compose_predict():
    """``compose_predict(*overrides)``: conf/predict.yaml as ``predict.py`` composes it."""

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base="1.3"):
            return compose("predict", overrides=list(overrides))

    return _compose
