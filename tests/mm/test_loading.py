"""A corrupt image or label map in a detection / segmentation dataset is reported with its path (mmcv's and
mmseg's own loaders name a byte buffer, or nothing)."""
import numpy as np
import pytest
from mmengine.registry import TRANSFORMS as ROOT_TRANSFORMS
from mmengine.registry import DefaultScope
from PIL import Image

import ravlt.mm  # noqa: F401  (registers ravlt.NameFile)
from ravlt.data.images import UnreadableImageError
from ravlt.mm.loading import name_unreadable_files, unwrapped

IMAGE = dict(type="LoadImageFromFile")


def load(scope: str, transform: dict, results: dict):
    with DefaultScope.overwrite_default_scope(scope):
        return ROOT_TRANSFORMS.build(dict(type="ravlt.NameFile", transform=transform))(results)


@pytest.mark.parametrize("scope", ["mmdet", "mmseg"])
def test_an_unreadable_image_is_named_and_a_good_one_loads(scope, tmp_path):
    Image.new("RGB", (8, 6)).save(tmp_path / "ok.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    assert load(scope, IMAGE, {"img_path": str(tmp_path / "ok.jpg")})["img"].shape == (6, 8, 3)
    with pytest.raises(UnreadableImageError, match=rf"cannot read {tmp_path / 'bad.jpg'} \(AssertionError"):
        load(scope, IMAGE, {"img_path": str(tmp_path / "bad.jpg")})


def test_an_unreadable_label_map_is_named(tmp_path):
    Image.new("RGB", (8, 6)).save(tmp_path / "a.jpg")
    (tmp_path / "a.png").write_text("not a png")
    results = {"img_path": str(tmp_path / "a.jpg"), "seg_map_path": str(tmp_path / "a.png"), "seg_fields": [],
               "reduce_zero_label": True}  # fmt: skip
    with pytest.raises(UnreadableImageError, match=rf"cannot read {tmp_path / 'a.png'} \("):
        load("mmseg", dict(type="LoadAnnotations"), results)
    Image.fromarray(np.ones((6, 8), np.uint8)).save(tmp_path / "a.png")
    assert load("mmseg", dict(type="LoadAnnotations"), results)["gt_seg_map"].shape == (6, 8)


def test_every_loader_of_a_dataset_and_its_wrapped_datasets_is_wrapped_and_unwraps():
    pipeline = [IMAGE, dict(type="LoadAnnotations", with_bbox=True), dict(type="RandomFlip", prob=0.5)]
    dataset = dict(type="RepeatDataset", dataset=dict(type="CocoDataset", pipeline=list(pipeline)))
    name_unreadable_files(dataset)
    wrapped = dataset["dataset"]["pipeline"]
    assert [step["type"] for step in wrapped] == ["ravlt.NameFile", "ravlt.NameFile", "RandomFlip"]
    assert unwrapped(wrapped) == pipeline
