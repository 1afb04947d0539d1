"""Every config in detection/configs builds its detector; small ones take a loss step on generated shapes;
a detection checkpoint with the released key layout loads strictly."""
import re
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.runner import load_checkpoint

from ravlt.data.shapes_coco import CLASSES
from ravlt.models import VARIANTS

CONFIG_DIR = Path(__file__).resolve().parents[2] / "detection" / "configs"
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.py"))
LOSS_STEP_CONFIGS = [
    "retinanet_ravlt-t_fpn_1x_coco.py",
    "mask-rcnn_ravlt-t_fpn_1x_coco.py",
    "mask-rcnn_ravlt-t_fpn-slim_shapes-coco.py",
    "cascade-mask-rcnn_ravlt-s_fpn_ms-crop-3x_coco.py",
]


def build_detector(name: str, few_rois: bool = False):
    from mmdet.registry import MODELS

    cfg = Config.fromfile(CONFIG_DIR / name)
    init_default_scope(cfg.default_scope)
    if few_rois and "rpn_proposal" in cfg.model.train_cfg:  # same heads, 32 sampled RoIs: a cheap CPU step
        cfg.model.train_cfg.rpn_proposal.max_per_img = 64
        for stage in (
            cfg.model.train_cfg.rcnn if isinstance(cfg.model.train_cfg.rcnn, list) else [cfg.model.train_cfg.rcnn]
        ):
            stage.sampler.num = 32
    return cfg, MODELS.build(cfg.model)


def test_the_paper_detectors_have_configs():
    expected = [f"retinanet_ravlt-{s}_fpn_1x_coco.py" for s in "tsbl"]
    expected += [f"mask-rcnn_ravlt-{s}_fpn_1x_coco.py" for s in "tsbl"]
    expected += [f"mask-rcnn_ravlt-{s}_fpn_ms-crop-3x_coco.py" for s in "sbl"]
    expected += [f"cascade-mask-rcnn_ravlt-{s}_fpn_ms-crop-3x_coco.py" for s in "sbl"]
    assert set(expected) <= set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_builds_its_detector(name):
    cfg, model = build_detector(name)
    size = re.search(r"ravlt-([tsbl])", name).group(1)
    dims = VARIANTS[f"ravlt_{size}"].embed_dims
    assert model.backbone.arch == f"ravlt_{size}"
    assert model.backbone.embed_dims == dims
    assert [conv.conv.in_channels for conv in model.neck.lateral_convs] == list(dims[model.neck.start_level :])
    assert cfg.sync_bn == "torch"
    assert cfg.optim_wrapper.paramwise_cfg.norm_decay_mult == 0.0
    if "shapes" not in name:  # the paper's recipe (docs/method.md §8)
        assert cfg.optim_wrapper.type == "AmpOptimWrapper"
        assert cfg.optim_wrapper.optimizer.type == "AdamW" and cfg.optim_wrapper.optimizer.lr == 1e-4
        assert cfg.optim_wrapper.optimizer.weight_decay == (1e-4 if name.startswith("retinanet") else 0.05)
        assert cfg.auto_scale_lr == dict(enable=True, base_batch_size=16)
        assert cfg.train_dataloader.batch_size == 2
        steps = [27, 33] if "3x" in name else [8, 11]
        assert cfg.param_scheduler[1].milestones == steps and cfg.param_scheduler[0].end == 500
        assert cfg.model.backbone.init_cfg.checkpoint == f"checkpoints/RAVLT_{size.upper()}.pth"


@pytest.mark.parametrize("name", LOSS_STEP_CONFIGS)
def test_loss_step_on_generated_shapes(name, shapes_root):
    from mmdet.registry import DATASETS

    _, model = build_detector(name, few_rois=True)
    model.train()
    dataset = DATASETS.build(dict(
        type="CocoDataset",
        data_root=str(shapes_root),
        ann_file="annotations/instances_train2017.json",
        data_prefix=dict(img="train2017/"),
        metainfo=dict(classes=CLASSES),
        pipeline=[
            dict(type="LoadImageFromFile"),
            dict(type="LoadAnnotations", with_bbox=True, with_mask=True),
            dict(type="Resize", scale=(96, 96), keep_ratio=True),
            dict(type="PackDetInputs"),
        ],
    ))  # fmt: skip
    data = model.data_preprocessor(pseudo_collate([dataset[0], dataset[1]]), training=True)
    losses = model(**data, mode="loss")
    loss, log_vars = model.parse_losses(losses)
    assert torch.isfinite(loss) and loss > 0
    if "mask" in name:
        assert any("loss_mask" in k for k in log_vars)
    loss.backward()
    assert model.backbone.patch_embed.proj[0].weight.grad is not None
    assert model.backbone.extra_norms["3"].norm.weight.grad is not None


def released_dense_backbone_keys(arch: str) -> set[str]:
    """The docs/method.md §7 names of a detection backbone, written out from the variant table."""
    v = VARIANTS[arch]
    wb = ("weight", "bias")
    bn = (*wb, "running_mean", "running_var", "num_batches_tracked")
    keys = {f"patch_embed.proj.{i}.{p}" for i in (0, 3, 6, 9) for p in wb}
    keys |= {f"patch_embed.proj.{i}.{p}" for i in (1, 4, 7, 10) for p in bn}
    block_parts = ["pos", "norm1.norm", "attn.qkvo", "attn.lepe", "attn.proj", "norm2.norm", "ffn.fc1", "ffn.dwconv",
                   "ffn.fc2"]  # fmt: skip
    for i, depth in enumerate(v.depths):
        keys.add(f"layers.{i}.RoPE.angle")
        for j in range(depth):
            keys |= {f"layers.{i}.blocks.{j}.{part}.{p}" for part in block_parts for p in wb}
            keys |= {f"layers.{i}.blocks.{j}.gamma_1", f"layers.{i}.blocks.{j}.gamma_2"}
        if i < len(v.depths) - 1:
            keys |= {f"layers.{i}.downsample.reduction.{p}" for p in wb}
            keys |= {f"layers.{i}.downsample.norm.{p}" for p in bn}
        keys |= {f"extra_norms.{i}.norm.{p}" for p in wb}
    return keys


def test_released_layout_detection_checkpoint_loads_strictly(tmp_path):
    _, source = build_detector("mask-rcnn_ravlt-t_fpn_1x_coco.py")
    state = source.state_dict()
    backbone_keys = {k.removeprefix("backbone.") for k in state if k.startswith("backbone.")}
    assert backbone_keys == released_dense_backbone_keys("ravlt_t")
    path = tmp_path / "mask_rcnn_ravlt_t_1x.pth"
    torch.save({"meta": {"epoch": 12}, "state_dict": state}, path)

    _, target = build_detector("mask-rcnn_ravlt-t_fpn_1x_coco.py")
    load_checkpoint(target, str(path), map_location="cpu", strict=True)
    for key, value in target.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_checkpoint_of_another_variant_does_not_load(tmp_path):
    _, small = build_detector("mask-rcnn_ravlt-t_fpn_1x_coco.py")
    path = tmp_path / "t.pth"
    torch.save({"state_dict": small.state_dict()}, path)
    _, other = build_detector("mask-rcnn_ravlt-s_fpn_1x_coco.py")
    with pytest.raises(RuntimeError, match="size mismatch|missing keys|unexpected key"):
        load_checkpoint(other, str(path), map_location="cpu", strict=True)


@pytest.mark.slow
def test_mmdet_own_train_script_runs_our_config_unchanged(tmp_path):
    """mmdet's `tools/train.py` (shipped in the package under .mim) trains the demo config as it is: the
    backbone comes in through the config's custom_imports, nothing is imported by hand."""
    import subprocess
    import sys

    import mmdet

    from ravlt.data.shapes_coco import generate_shapes_coco

    train_script = Path(mmdet.__file__).parent / ".mim" / "tools" / "train.py"
    generate_shapes_coco(tmp_path / "data" / "generated" / "shapes_coco", num_train=8, num_val=4, image_size=96)
    subprocess.run([sys.executable, str(train_script), str(CONFIG_DIR / "mask-rcnn_ravlt-t_fpn-slim_shapes-coco.py"),
                    "--work-dir", "work", "--cfg-options", "train_cfg.max_epochs=1", "train_cfg.val_interval=1"],
                   cwd=tmp_path, check=True, timeout=600, capture_output=True)  # fmt: skip
    assert (tmp_path / "work" / "epoch_1.pth").is_file()
