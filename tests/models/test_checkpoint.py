"""Released-checkpoint layout (docs/method.md §7), strict round trips and clear errors for checkpoints that do
not fit."""
import argparse

import pytest
import timm
import torch

import ravlt  # noqa: F401  (registers the timm models)
from ravlt.models import VARIANTS, CheckpointMismatchError, load_checkpoint
from ravlt.models.checkpoint import read_checkpoint

BLOCK_PARAMS = [
    "pos.weight", "pos.bias", "norm1.norm.weight", "norm1.norm.bias", "attn.qkvo.weight", "attn.qkvo.bias",
    "attn.lepe.weight", "attn.lepe.bias", "attn.proj.weight", "attn.proj.bias", "norm2.norm.weight",
    "norm2.norm.bias", "ffn.fc1.weight", "ffn.fc1.bias", "ffn.dwconv.weight", "ffn.dwconv.bias",
    "ffn.fc2.weight", "ffn.fc2.bias", "gamma_1", "gamma_2",
]  # fmt: skip
BN = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]


def released_keys(name: str) -> set[str]:
    """The key set of the authors' classification checkpoints, generated from the variant table."""
    cfg = VARIANTS[name]
    keys = set()
    for idx in (0, 3, 6, 9):
        keys |= {f"patch_embed.proj.{idx}.weight", f"patch_embed.proj.{idx}.bias"}
        keys |= {f"patch_embed.proj.{idx + 1}.{p}" for p in BN}
    for i, depth in enumerate(cfg.depths):
        keys.add(f"layers.{i}.RoPE.angle")
        for j in range(depth):
            keys |= {f"layers.{i}.blocks.{j}.{p}" for p in BLOCK_PARAMS}
        if i < len(cfg.depths) - 1:
            keys |= {f"layers.{i}.downsample.reduction.weight", f"layers.{i}.downsample.reduction.bias"}
            keys |= {f"layers.{i}.downsample.norm.{p}" for p in BN}
    keys |= {"proj.weight", "proj.bias", "head.weight", "head.bias"} | {f"norm.{p}" for p in BN}
    return keys


@pytest.mark.parametrize("name", list(VARIANTS))
def test_state_dict_keys_are_the_released_layout(name):
    model = timm.create_model(name)
    assert set(model.state_dict()) == released_keys(name)


def test_released_shapes_of_gamma_and_rope():
    sd = timm.create_model("ravlt_b").state_dict()
    assert sd["layers.0.blocks.0.gamma_1"].shape == (1, 96, 1, 1)
    assert sd["layers.0.RoPE.angle"].shape == (48,)  # head dim 96 -> d/2 values
    assert sd["layers.2.RoPE.angle"].shape == (32,)  # head dim 64
    assert sd["head.weight"].shape == (1000, 1024, 1, 1)
    assert float(sd["layers.2.blocks.0.gamma_1"].max()) == pytest.approx(1e-6)


def _randomised(name, **kw):
    model = timm.create_model(name, **kw)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return model


def test_save_load_round_trip_is_exact(tmp_path):
    src = _randomised("ravlt_t")
    path = tmp_path / "RAVLT_T.pth"
    # DeiT-style training checkpoint, including the argparse namespace such files carry
    torch.save({"model": src.state_dict(), "epoch": 299, "args": argparse.Namespace(model="RAVLT_T")}, path)
    dst = timm.create_model("ravlt_t")
    load_checkpoint(dst, path)
    for k, v in src.state_dict().items():
        assert torch.equal(v, dst.state_dict()[k]), k
    # and the plain strict load of the bare dict works without renaming
    timm.create_model("ravlt_t").load_state_dict(src.state_dict(), strict=True)


def test_timm_pretrained_from_local_file(tmp_path):
    src = _randomised("ravlt_t").eval()
    path = tmp_path / "RAVLT_T.pth"
    torch.save({"model": src.state_dict()}, path)
    model = timm.create_model("ravlt_t", pretrained=True, pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(model(x), src(x))
    # fine-tuning to other classes keeps everything but a fresh head
    tuned = timm.create_model("ravlt_t", pretrained=True, num_classes=10, pretrained_cfg_overlay=dict(file=str(path)))
    assert tuned.head.weight.shape[0] == 10
    assert torch.equal(tuned.state_dict()["proj.weight"], src.state_dict()["proj.weight"])


@pytest.mark.parametrize("wrapper", ["model", "model_ema", "state_dict", "backbone"])
def test_wrappers_are_unwrapped(tmp_path, wrapper):
    src = _randomised("ravlt_t")
    sd = src.state_dict()
    if wrapper == "backbone":
        ckpt = {"state_dict": {f"backbone.{k}": v for k, v in sd.items()}}
    elif wrapper == "model_ema":
        ckpt = {"model": timm.create_model("ravlt_t").state_dict(), "model_ema": sd}
    else:
        ckpt = {wrapper: sd}
    path = tmp_path / "ckpt.pth"
    torch.save(ckpt, path)
    dst = timm.create_model("ravlt_t")
    load_checkpoint(dst, path, use_ema=wrapper == "model_ema")
    assert torch.equal(dst.state_dict()["layers.1.blocks.0.attn.qkvo.weight"], sd["layers.1.blocks.0.attn.qkvo.weight"])


def test_wrong_variant_raises_one_clear_error(tmp_path):
    path = tmp_path / "RAVLT_S.pth"
    torch.save({"model": timm.create_model("ravlt_s").state_dict()}, path)
    with pytest.raises(CheckpointMismatchError) as err:
        load_checkpoint(timm.create_model("ravlt_t"), path)
    msg = str(err.value)
    assert "model is ravlt_t" in msg and "looks like ravlt_s" in msg
    assert "unexpected" in msg and "shape mismatch" in msg


def test_wrong_variant_through_timm_pretrained_raises(tmp_path):
    path = tmp_path / "RAVLT_B.pth"
    torch.save({"model": timm.create_model("ravlt_b").state_dict()}, path)
    with pytest.raises(CheckpointMismatchError, match="looks like ravlt_b"):
        timm.create_model("ravlt_t", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_truncated_file_raises_clear_error(tmp_path):
    path = tmp_path / "RAVLT_T.pth"
    torch.save({"model": timm.create_model("ravlt_t").state_dict()}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointMismatchError, match="is truncated"):
        load_checkpoint(timm.create_model("ravlt_t"), path)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: None, "checkpoint not found"),
        (lambda p: p.mkdir(), "is a folder; give the checkpoint file in it"),
        (lambda p: p.write_bytes(b""), "is an empty file"),
        (lambda p: p.write_text("model weights, honestly"), "is not a PyTorch checkpoint file"),
        (lambda p: torch.save([1, 2], p), "holds a list, not a checkpoint"),
        (lambda p: torch.save({"x": object}, p), "holds Python objects other than weights"),
    ],
    ids=["missing", "folder", "empty", "text", "list", "object"],
)  # fmt: skip
def test_files_that_are_not_checkpoints_name_the_option_and_the_file(tmp_path, make, message):
    path = tmp_path / "RAVLT_T.pth"
    make(path)
    with pytest.raises(
        CheckpointMismatchError, match=rf"^(could not read checkpoint )?model.pretrained={path}.*{message}"
    ):
        read_checkpoint(path, "model.pretrained")


def test_missing_keys_are_not_loaded_silently(tmp_path):
    sd = timm.create_model("ravlt_t").state_dict()
    del sd["layers.2.blocks.5.ffn.fc2.weight"]
    path = tmp_path / "partial.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointMismatchError, match="missing: layers.2.blocks.5.ffn.fc2.weight"):
        load_checkpoint(timm.create_model("ravlt_t"), path)
