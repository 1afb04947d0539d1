"""Numeric options out of range, models that do not exist and hardware this machine cannot provide are
refused before a run starts, naming the key; every shipped configuration passes the same checks."""
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from ravlt.checks import check_device, check_hardware, check_model, check_ranges
from ravlt.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONF = PROJECT_ROOT / "conf"
NO_GPU = not torch.cuda.is_available()


def composed(*overrides: str, config: str = "config"):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config, overrides=list(overrides))


def shipped_runs():
    yield ("task=classification",)
    for experiment in sorted(p.stem for p in (CONF / "experiment").glob("*.yaml")):
        yield ("task=classification", f"experiment={experiment}")
    for detector in sorted(p.stem for p in (CONF / "detector").glob("*.yaml")):
        yield ("task=detection", "dataset=coco", f"detector={detector}")
    for segmentor in sorted(p.stem for p in (CONF / "segmentor").glob("*.yaml")):
        yield ("task=segmentation", "dataset=ade20k", f"segmentor={segmentor}")


@pytest.mark.parametrize("overrides", list(shipped_runs()), ids=" ".join)
def test_every_shipped_configuration_is_within_range(overrides):
    cfg = composed(*overrides)
    check_ranges(cfg)
    check_model(cfg.model)


@pytest.mark.parametrize(
    "override",
    [
        "task.max_epochs=0", "task.batch_size=0", "task.batch_size=2.5", "task.optimizer.lr=-1",
        "task.optimizer.weight_decay=-0.1", "task.ema.decay=2", "task.label_smoothing=1", "task.crop_pct=0",
        "task.mixup.prob=1.5", "task.accumulate_grad_batches=0", "task.log_every_n_steps=0", "seed=-1",
        "model.drop_path_rate=1.5", "dataset.image_size=8", "hardware.num_workers=-1", "hardware.threads=0",
        "hardware.num_nodes=0", "task.max_epochs=ten", "task.compile_memory_budget=1.5",
    ],
)  # fmt: skip
def test_an_option_out_of_range_names_its_key(override):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"^{key}=.* is out of range: it must be "):
        check_ranges(composed("task=classification", override))


@pytest.mark.parametrize("override", ["task.max_iters=0", "task.val_interval=0", "task.vis_interval=-1"])
def test_dense_schedule_options_are_checked(override):
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        check_ranges(composed("task=segmentation", "dataset=ade20k", override))


@pytest.mark.parametrize("override", ["topk=0", "score_threshold=1.5", "opacity=-1", "image_size=16"])
def test_predict_options_are_checked(override):
    cfg = composed("checkpoint=x.pth", "image=y.jpg", override, config="predict")
    with pytest.raises(ConfigError, match=override.split("=")[0]):
        check_ranges(cfg)


def test_attention_types_must_fit_the_variant():
    with pytest.raises(ConfigError, match=r"model.attn_types=xx: need attention types for 4 stages"):
        check_model(composed("model.attn_types=xx").model)
    with pytest.raises(ConfigError, match="model.attn_types=llqv"):
        check_model(composed("model.attn_types=llqv").model)
    check_model(composed("model=ravlt_s", "model.attn_types=llll").model)


@pytest.mark.skipif(not NO_GPU, reason="checks the machine without a GPU")
@pytest.mark.parametrize("preset", ["gpu", "gpus", "slurm"])
def test_a_gpu_preset_on_a_machine_without_one_says_to_use_the_cpu(preset):
    with pytest.raises(ConfigError, match=rf"hardware={preset} asks for GPUs .* hardware=cpu"):
        check_hardware(composed(f"hardware={preset}").hardware, environ={"SLURM_NTASKS": "16"})
    with pytest.raises(ConfigError, match="device=cuda: this machine has no CUDA GPU"):
        check_device("device", "cuda")


@pytest.mark.parametrize(
    "override, message",
    [
        ("hardware.devices=0", "hardware.devices=0 must be a count >= 1"),
        ("hardware.precision=8-true", "hardware.precision=8-true is not one of"),
        ("hardware.precision=16-mixed", "float16 needs a GPU"),
        ("hardware.accelerator=tpu", "hardware.accelerator=tpu is not one of"),
        ("hardware.num_nodes=2", "nothing started the other nodes"),
    ],
)  # fmt: skip
def test_impossible_hardware_is_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        check_hardware(composed("hardware=cpu", override).hardware, environ={})


def test_several_nodes_need_a_launcher_or_the_node_variables():
    hardware = composed("hardware=cpu", "hardware.num_nodes=2", "hardware.strategy=ddp").hardware
    check_hardware(hardware, environ={"SLURM_NTASKS": "2"})
    check_hardware(hardware, environ={"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500", "NODE_RANK": "1"})
    check_hardware(hardware, environ={"WORLD_SIZE": "2"})  # torchrun
    with pytest.raises(ConfigError, match="NODE_RANK"):
        check_hardware(hardware, environ={"MASTER_ADDR": "10.0.0.1"})
