"""`predict.py task=detection|segmentation`: the prediction drawn over the input, saved next to it."""
import numpy as np
import pytest
from PIL import Image

from ravlt.predict import run
from ravlt.predict.checkpoints import WrongTaskError


def assert_overlay(out: dict, photo, task: str) -> None:
    path = photo.parent / f"{photo.stem}_{task}.png"
    assert out["overlay"] == str(path)
    overlay, original = Image.open(path), Image.open(photo)
    assert overlay.size == original.size
    assert np.abs(np.asarray(overlay.convert("RGB"), np.int16) - np.asarray(original, np.int16)).mean() > 1


@pytest.mark.slow
def test_detection_draws_boxes_and_masks_next_to_the_input(detection_checkpoint, photo, compose_predict):
    out = run(
        compose_predict("task=detection", f"checkpoint={detection_checkpoint}", f"image={photo}", "score_threshold=0")
    )
    assert_overlay(out, photo, "detection")
    assert out["detections"] and {d["class"] for d in out["detections"]} <= {"circle", "square", "triangle"}


@pytest.mark.slow
def test_detection_checkpoint_without_its_config_uses_the_detector_group(
    detection_checkpoint_without_config, tmp_path, photo, compose_predict
):
    path = detection_checkpoint_without_config
    out = run(compose_predict("task=detection", "detector=mask_rcnn_demo", "model=ravlt_t", f"checkpoint={path}",
                              f"image={photo}", f"output={tmp_path / 'out.png'}"))  # fmt: skip
    assert Image.open(tmp_path / "out.png").size == Image.open(photo).size
    assert out["overlay"] == str(tmp_path / "out.png")


@pytest.mark.slow
def test_segmentation_colours_the_classes_next_to_the_input(segmentation_checkpoint, photo, compose_predict):
    out = run(compose_predict("task=segmentation", f"checkpoint={segmentation_checkpoint}", f"image={photo}"))
    assert_overlay(out, photo, "segmentation")
    assert {c["class"] for c in out["coverage"]} <= {"background", "disc", "square", "triangle"}
    assert sum(c["fraction"] for c in out["coverage"]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "task, wrong", [("detection", "imagenet_checkpoint"), ("segmentation", "detection_checkpoint")]
)
def test_checkpoints_of_another_task_are_refused(task, wrong, photo, compose_predict, request):
    checkpoint = request.getfixturevalue(wrong)
    with pytest.raises(WrongTaskError, match=f"but task={task}"):
        run(compose_predict(f"task={task}", f"checkpoint={checkpoint}", f"image={photo}"))
