"""`predict.py task=classification`: top-5 with class names, on a CPU, any image size, clear errors."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import ImageNetInfo

from ravlt.data.images import UnreadableImageError
from ravlt.errors import ConfigError
from ravlt.models import CheckpointMismatchError
from ravlt.predict import run
from ravlt.predict.checkpoints import WrongTaskError
from ravlt.predict.classification import preprocess

PROJECT_ROOT = Path(__file__).resolve().parents[2]

DIGITS = [f"digit {i}" for i in range(10)]


def lightning_checkpoint(path, **hyper_parameters):
    """A random-init 10-class RAVLT-T as our Lightning ImageClassifier checkpoints hold it."""
    weights = timm.create_model("ravlt_t", num_classes=10).state_dict()
    torch.save({"pytorch-lightning_version": "2.6.6", "hyper_parameters": {"model_name": "ravlt_t", **hyper_parameters},
                "state_dict": {f"model.{k}": v for k, v in weights.items()}}, path)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory):
    """Without class names, as ImageClassifier writes them today."""
    return lightning_checkpoint(tmp_path_factory.mktemp("ckpt") / "digits.ckpt")


@pytest.mark.slow
def test_predict_command_prints_top5_imagenet_classes_and_one_line_errors(imagenet_checkpoint, photo):
    command = [sys.executable, "predict.py", "task=classification", "model=ravlt_t",
               f"checkpoint={imagenet_checkpoint}", f"image={photo}"]  # fmt: skip
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("Top-5 for"))
    imagenet = {ImageNetInfo().index_to_description(i) for i in range(1000)}
    rows = lines[header + 1 : header + 6]
    assert [row.split(".")[0].strip() for row in rows] == ["1", "2", "3", "4", "5"]
    assert all(row.split("%  ", 1)[1].rsplit("  (class", 1)[0] in imagenet for row in rows)

    photo.write_bytes(photo.read_bytes()[:300])  # truncated: one line on stderr, exit status 2
    done = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith(f"error: cannot read image {photo}")


def test_class_names_come_from_the_checkpoint(tmp_path, photo, compose_predict):
    path = lightning_checkpoint(tmp_path / "digits.ckpt", class_names=DIGITS, image_size=32)
    out = run(compose_predict("task=classification", f"checkpoint={path}", f"image={photo}", "topk=3"))
    probabilities = [p["probability"] for p in out["predictions"]]
    assert len(probabilities) == 3 and probabilities == sorted(probabilities, reverse=True)
    assert all(p["class"] == DIGITS[p["index"]] for p in out["predictions"])


@pytest.mark.parametrize("source", ["list", "file", "dataset_root"])
def test_class_names_can_be_given(tmp_path, photo, compose_predict, digits_checkpoint, source):
    names = [f"n{i}" for i in range(10)]
    if source == "list":
        given = "[" + ",".join(names) + "]"
    elif source == "file":
        (tmp_path / "names.txt").write_text("\n".join(names) + "\n")
        given = tmp_path / "names.txt"
    else:
        for name in names:
            (tmp_path / "data" / "train" / name).mkdir(parents=True)
        given = tmp_path / "data"
    out = run(compose_predict(f"checkpoint={digits_checkpoint}", f"image={photo}", f"class_names={given}"))
    assert all(p["class"] == names[p["index"]] for p in out["predictions"])


def test_class_names_of_another_length_are_refused(photo, compose_predict, digits_checkpoint):
    with pytest.raises(ConfigError, match="3 class names but the checkpoint's head has 10 classes"):
        run(compose_predict(f"checkpoint={digits_checkpoint}", f"image={photo}", "class_names=[a,b,c]"))


def test_any_image_size_is_resized_to_the_model_input(photo):
    model = timm.create_model("ravlt_t", num_classes=10)
    image = Image.open(photo)
    assert preprocess(model, image, None).shape == (1, 3, 224, 224)
    assert preprocess(model, image, 32).shape == (1, 3, 32, 32)


def test_a_detection_checkpoint_is_refused_naming_its_task(detection_checkpoint, photo, compose_predict):
    with pytest.raises(
        WrongTaskError, match="is a detection checkpoint but task=classification; run python predict.py task=detection"
    ):
        run(compose_predict("task=classification", f"checkpoint={detection_checkpoint}", f"image={photo}"))


def test_backbone_weights_without_a_head_are_refused(tmp_path, photo, compose_predict):
    path = tmp_path / "backbone.pth"
    torch.save(timm.create_model("ravlt_t", with_head=False).state_dict(), path)
    with pytest.raises(WrongTaskError, match="without a classification head"):
        run(compose_predict("task=classification", f"checkpoint={path}", f"image={photo}"))


def test_a_checkpoint_of_another_variant_is_refused(imagenet_checkpoint, photo, compose_predict):
    with pytest.raises(CheckpointMismatchError, match="checkpoint looks like ravlt_t"):
        run(compose_predict("model=ravlt_s", f"checkpoint={imagenet_checkpoint}", f"image={photo}"))


def test_unreadable_images_are_named(tmp_path, imagenet_checkpoint, compose_predict):
    broken = tmp_path / "broken.jpg"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(broken)
    broken.write_bytes(broken.read_bytes()[:200])  # truncated
    with pytest.raises(UnreadableImageError, match="cannot read image .*broken.jpg"):
        run(compose_predict(f"checkpoint={imagenet_checkpoint}", f"image={broken}"))
    with pytest.raises(UnreadableImageError, match="image not found: .*missing.png"):
        run(compose_predict(f"checkpoint={imagenet_checkpoint}", f"image={tmp_path / 'missing.png'}"))


@pytest.mark.parametrize("task", ["classification", "detection", "segmentation"])
def test_predict_config_composes_for_every_task(task, compose_predict):
    cfg = compose_predict(f"task={task}", "checkpoint=c.pth", "image=i.jpg")
    assert (cfg.task.name, cfg.model.name, cfg.device, cfg.topk) == (task, "ravlt_t", "cpu", 5)
    assert cfg.detector.config and cfg.segmentor.config  # for checkpoints that carry no config


def test_checkpoint_and_image_are_required(compose_predict):
    from omegaconf.errors import MissingMandatoryValue

    with pytest.raises(MissingMandatoryValue, match="checkpoint"):
        run(compose_predict("image=i.jpg"))
