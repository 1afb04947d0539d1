"""`python -m ravlt.analysis.rank` end to end on a random-init RAVLT-T, and its checkpoint / image handling."""
import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from ravlt.analysis.images import SAMPLE_IMAGES, sample_images
from ravlt.analysis.rank import build_model, main
from ravlt.models import CheckpointMismatchError


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(folder / "noise.png")
    ramp = np.linspace(0, 255, 70 * 50, dtype=np.uint8).reshape(70, 50)
    Image.fromarray(np.stack([ramp, ramp[::-1], ramp], -1)).save(folder / "ramp.jpg")
    return folder


@pytest.mark.slow
def test_cli_prints_tables_writes_plots_and_json_and_ends_with_the_verdict(image_dir, tmp_path, capsys):
    out = tmp_path / "rank"
    assert (
        main(["--model", "ravlt_t", "--images", str(image_dir), "--image-size", "64", "--out", str(out), "--wandb"])
        == 0
    )
    printed = capsys.readouterr().out.strip().splitlines()

    assert "RANDOMLY INITIALISED" in printed[0]
    for stage in range(1, 5):
        assert any(line.startswith(f"Stage {stage}:") for line in printed)
        assert (out / f"rank_stage{stage}.png").stat().st_size > 0
    assert printed[-1].startswith("RALA's KV-buffer rank exceeds plain linear attention's in every RALA block: ")
    assert "RANDOM INIT" in printed[-1]

    data = json.loads((out / "rank.json").read_text())
    assert data["random_init"] and data["rtol"] == 0.01 and data["images"] == ["noise.png", "ramp.jpg"]
    assert [b["built_as"] for b in data["blocks"]] == ["rala"] * 4 + ["softmax"] * 8  # llvv, depths 2,2,6,2
    stage1 = data["blocks"][0]
    assert (stage1["height"], stage1["width"], stage1["num_heads"], stage1["head_dim"]) == (16, 16, 1, 64)
    for variant in ("rala", "plain", "softmax"):
        per_image = stage1["kv"][variant]["per_image_rank"]
        assert np.array(per_image).shape == (2, 1)  # images × heads
        assert all(1 <= r <= stage1["kv"][variant]["max_rank"] for r in np.ravel(per_image))
        assert 1 <= stage1["output"][variant]["mean_rank"] <= 64
    assert stage1["kv"]["softmax"]["max_rank"] == 16 * 16
    assert data["summary"]["rala_blocks"] == 4
    assert list((out / "wandb").glob("offline-run-*"))  # logged offline


def _lightning(state_dict):
    return {"pytorch-lightning_version": "2.6.6", "state_dict": {f"model.{k}": v for k, v in state_dict.items()}}


def _mmdet(state_dict):
    backbone = {f"backbone.{k}": v for k, v in state_dict.items() if not k.startswith(("proj.", "norm.", "head."))}
    return {"meta": {}, "state_dict": {**backbone, "neck.lateral_convs.0.conv.weight": torch.zeros(1)}}


@pytest.mark.parametrize("wrap", [dict, _lightning, _mmdet], ids=["released", "lightning", "detection"])
def test_checkpoint_weights_are_analysed(tmp_path, wrap):
    trained = timm.create_model("ravlt_t", num_classes=10)
    path = tmp_path / "ckpt.pth"
    torch.save(wrap(trained.state_dict()), path)
    model = build_model("ravlt_t", str(path))
    key = "layers.0.blocks.1.attn.qkvo.weight"
    assert torch.equal(model.state_dict()[key], trained.state_dict()[key])
    assert not model.training


def test_checkpoint_of_another_variant_fails_clearly(tmp_path):
    path = tmp_path / "s.pth"
    torch.save({"model": timm.create_model("ravlt_s").state_dict()}, path)
    with pytest.raises(CheckpointMismatchError, match="ravlt_s"):
        build_model("ravlt_t", str(path))


def test_unreadable_image_is_an_error_naming_the_file(image_dir, tmp_path, capsys):
    (image_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    with pytest.raises(SystemExit) as exit:
        main(["--images", str(image_dir), "--out", str(tmp_path / "out")])
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: cannot read image") and "broken.png" in err and len(err.strip().splitlines()) == 1


def test_default_images_are_bundled_with_scikit_image():
    images = sample_images()
    assert [name for name, _ in images] == list(SAMPLE_IMAGES)
    assert all(image.mode == "RGB" and min(image.size) >= 256 for _, image in images)
