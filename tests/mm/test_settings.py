"""Each step of the Hydra → mmengine translation (ravlt.mm.settings), called alone on a real config."""
from pathlib import Path

import pytest
import timm
import torch
from omegaconf import OmegaConf

from ravlt.errors import ConfigError
from ravlt.mm import settings
from ravlt.models import CheckpointMismatchError

CONFIGS = Path(__file__).resolve().parents[2] / "detection" / "configs"


@pytest.fixture
def mm_cfg():
    return settings.load_config(CONFIGS / "mask-rcnn_ravlt-s_fpn_1x_coco.py")


def test_load_config_lists_the_configs_beside_a_missing_one():
    with pytest.raises(ConfigError, match="mask-rcnn_ravlt-s_fpn_1x_coco.py"):
        settings.load_config(CONFIGS / "mask-rcnn_ravlt-x_fpn_1x_coco.py")


def test_sized_config_path_falls_back_to_a_size_that_has_a_file():
    template = str(CONFIGS / "mask-rcnn_ravlt-{size}_fpn_ms-crop-3x_coco.py")
    assert settings.sized_config_path(template, "ravlt_b").name == "mask-rcnn_ravlt-b_fpn_ms-crop-3x_coco.py"
    assert settings.sized_config_path(template, "ravlt_t").name == "mask-rcnn_ravlt-s_fpn_ms-crop-3x_coco.py"


def test_set_model_switches_backbone_and_neck_widths(mm_cfg):
    channels = settings.set_model(mm_cfg, OmegaConf.create({"name": "ravlt_b", "drop_path_rate": 0.3}))
    assert channels == [96, 192, 384, 512] == mm_cfg.model.neck.in_channels
    assert mm_cfg.model.backbone.arch == "ravlt_b" and mm_cfg.model.backbone.drop_path_rate == 0.3
    assert mm_cfg.model.backbone.init_cfg is None  # no pretrained weights named: random init, said in a warning


def test_set_model_refuses_a_missing_broken_or_other_variant_pretrained_file(mm_cfg, tmp_path):
    model = {"name": "ravlt_s", "pretrained": str(tmp_path / "none.pth")}
    with pytest.raises(CheckpointMismatchError, match="model.pretrained=.*none.pth: checkpoint not found"):
        settings.set_model(mm_cfg, OmegaConf.create(model))
    (tmp_path / "half.pth").write_bytes(b"PK\x03\x04 and then the copy stopped")
    with pytest.raises(CheckpointMismatchError, match="model.pretrained=.*half.pth is truncated"):
        settings.set_model(mm_cfg, OmegaConf.create({**model, "pretrained": str(tmp_path / "half.pth")}))
    torch.save({"model": timm.create_model("ravlt_t").state_dict()}, tmp_path / "RAVLT_T.pth")
    with pytest.raises(ConfigError, match="holds the weights of ravlt_t, not model=ravlt_s"):
        settings.set_model(mm_cfg, OmegaConf.create({**model, "pretrained": str(tmp_path / "RAVLT_T.pth")}))


def test_set_hardware_on_the_cpu_drops_amp_and_syncbn(mm_cfg):
    hardware = OmegaConf.create({"accelerator": "cpu", "devices": 2, "precision": "16-mixed", "num_workers": 0})
    settings.set_hardware(mm_cfg, hardware)
    assert mm_cfg.optim_wrapper.type == "OptimWrapper" and "loss_scale" not in mm_cfg.optim_wrapper
    assert mm_cfg.sync_bn is None
    assert mm_cfg.launcher == "pytorch" and mm_cfg.env_cfg.dist_cfg.backend == "gloo"
    assert mm_cfg.train_dataloader.num_workers == 0 and not mm_cfg.train_dataloader.persistent_workers


def test_set_schedule_scales_epoch_milestones(mm_cfg):
    settings.set_schedule(mm_cfg, OmegaConf.create({"max_epochs": 24, "batch_size": 4, "val_interval": 2}))
    steps = next(s for s in mm_cfg.param_scheduler if "milestones" in s)
    assert mm_cfg.train_cfg.max_epochs == 24 and steps.milestones == [16, 22]  # 8/12 and 11/12 of the run
    assert mm_cfg.train_dataloader.batch_size == 4 and mm_cfg.train_cfg.val_interval == 2


def test_set_logger_wandb_mode_follows_the_environment(mm_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    settings.set_logger(mm_cfg, OmegaConf.create({"name": "wandb", "mode": "online"}), "run", "/tmp/out")
    wandb = next(b for b in mm_cfg.visualizer.vis_backends if b["type"] == "ravlt.WandbVisBackend")
    assert wandb["init_kwargs"]["mode"] == "disabled"


def test_set_run_merges_cfg_options_last(mm_cfg):
    options = OmegaConf.create({"optim_wrapper": {"optimizer": {"lr": 2e-4}}})
    settings.set_run(mm_cfg, 3, "/tmp/out", "run", options)
    assert mm_cfg.optim_wrapper.optimizer.lr == 2e-4 and mm_cfg.randomness.seed == 3 and mm_cfg.work_dir == "/tmp/out"
