"""The whole Hydra config tree composes: every option of every group, the experiment presets, the shared
hardware / logger fields every task reads, and Hydra's errors. (Every CPU-runnable classification
combination is composed and instantiated in tests/classification/test_instantiate.py.)"""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

CONF = Path(__file__).resolve().parents[1] / "conf"
TASKS = ("classification", "detection", "segmentation")
HARDWARE_FIELDS = {"accelerator", "devices", "num_nodes", "strategy", "precision", "sync_batchnorm", "num_workers",
                   "threads"}  # fmt: skip
PRECISIONS = {"32-true", "32", "bf16-mixed", "16-mixed"}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_config(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[*overrides, "output_dir=/tmp/ravlt-compose"], return_hydra_config=hydra)


def dataset_task(name: str) -> str:
    return OmegaConf.load(CONF / "dataset" / f"{name}.yaml").task


CLASSIFICATION_DATASETS = [d for d in options("dataset") if dataset_task(d) == "classification"]
GROUPS = ["task", "model", "dataset", "hardware", "logger", "detector", "segmentor", "experiment"]


# ids such as "gpu" alone would read as the gpu marker to tests/conftest.py
@pytest.mark.parametrize("choice", [f"{g}={o}" for g in GROUPS for o in options(g)])
def test_every_option_of_every_group_composes(choice):
    group, option = choice.split("=")
    cfg = compose_config(choice)
    if group == "experiment":
        assert cfg.task.name in TASKS
    else:
        node = cfg[group]
        assert node.name == option or group == "task" and node.name in TASKS


def test_the_groups_the_tasks_share_exist():
    assert {"cpu", "cpu_ddp", "gpu", "gpus", "slurm"} <= set(options("hardware"))
    assert {"wandb", "csv", "tensorboard", "none"} <= set(options("logger"))
    assert {"imagenet", "image_folder", "digits"} <= set(CLASSIFICATION_DATASETS)
    assert {"ravlt_t", "ravlt_s", "ravlt_b", "ravlt_l"} <= set(options("model"))
    assert {"in1k_ravlt_t", "in1k_ravlt_s", "in1k_ravlt_b", "in1k_ravlt_l", "digits_demo"} <= set(options("experiment"))


@pytest.mark.parametrize("hardware", options("hardware"), ids=lambda h: f"hardware={h}")
def test_hardware_has_the_fields_every_task_reads(hardware):
    hw = compose_config(f"hardware={hardware}").hardware
    assert HARDWARE_FIELDS <= set(hw)
    assert hw.accelerator in ("cpu", "gpu") and str(hw.precision) in PRECISIONS
    assert isinstance(hw.num_workers, int) and hw.num_workers >= 0
    assert hw.devices == -1 or hw.devices >= 1
    if hw.accelerator == "cpu":
        assert not hw.sync_batchnorm  # torch's SyncBatchNorm needs GPUs
    if hw.devices != 1 or hw.num_nodes > 1:
        assert hw.strategy == "ddp"


def test_cpu_ddp_is_two_gloo_capable_processes():
    hw = compose_config("hardware=cpu_ddp").hardware
    assert (hw.accelerator, hw.devices, hw.num_nodes, hw.strategy) == ("cpu", 2, 1, "ddp")


def test_slurm_hands_the_job_to_submitit_with_one_task_per_gpu():
    cfg = compose_config("hardware=slurm", "hardware.num_nodes=4", hydra=True)
    launcher = cfg.hydra.launcher
    assert "submitit" in launcher._target_ and "Slurm" in launcher._target_
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (4, 8, 8)
    assert cfg.hardware.strategy == "ddp" and cfg.hardware.sync_batchnorm


def test_wandb_is_offline_by_default_and_every_logger_is_named():
    assert compose_config("logger=wandb").logger.mode == "offline"
    for name in options("logger"):
        assert compose_config(f"logger={name}").logger.name == name


@pytest.mark.parametrize("name", options("dataset"))
def test_every_dataset_names_its_task(name):
    dataset = OmegaConf.load(CONF / "dataset" / f"{name}.yaml")
    assert dataset.name == name and dataset.task in TASKS


@pytest.mark.parametrize("size", ["t", "s", "b", "l"])
def test_imagenet_presets_reproduce_the_papers_recipe(size):
    cfg = compose_config(f"experiment=in1k_ravlt_{size}")
    task = cfg.task
    assert (cfg.model.name, cfg.dataset.name, cfg.hardware.name) == (f"ravlt_{size}", "imagenet", "gpus")
    assert (task.max_epochs, task.batch_size, task.optimizer.name) == (300, 128, "adamw")
    assert (task.optimizer.lr, task.optimizer.lr_base_batch, task.optimizer.weight_decay) == (5e-4, 512, 0.05)
    assert (task.scheduler.name, task.scheduler.warmup_epochs, task.scheduler.warmup_lr, task.scheduler.min_lr) == (
        "cosine", 5, 1e-6, 1e-5)  # fmt: skip
    assert task.augment.auto_augment == "rand-m9-mstd0.5-inc1" and task.augment.re_prob == 0.25
    assert task.interpolation == "bicubic" and task.crop_pct == 0.9 and task.augment.color_jitter == 0.4
    assert (task.mixup.mixup_alpha, task.mixup.cutmix_alpha, task.label_smoothing) == (0.8, 1.0, 0.1)
    assert task.repeated_aug and task.clip_grad is None
    assert (task.ema.enabled, task.ema.decay, task.ema.reference_batch) == (True, 0.99996, 512)
    assert cfg.hardware.precision in ("bf16-mixed", "16-mixed") and cfg.dataset.image_size == 224


def test_digits_demo_is_a_cpu_run_of_ravlt_t_on_digits():
    cfg = compose_config("experiment=digits_demo", "hardware=cpu", "logger=csv")
    assert (cfg.task.name, cfg.model.name, cfg.dataset.name, cfg.hardware.accelerator) == (
        "classification", "ravlt_t", "digits", "cpu")  # fmt: skip
    assert cfg.task.augment.hflip == 0  # a mirrored digit is another glyph
    assert cfg.hardware.threads == 1 and cfg.hardware.num_workers == 0


def test_imagenet_root_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("IMAGENET_ROOT", "/data/imagenet")
    assert compose_config("dataset=imagenet").dataset.root == "/data/imagenet"
    monkeypatch.delenv("IMAGENET_ROOT")
    assert compose_config("dataset=imagenet").dataset.root is None


def test_an_unknown_option_lists_the_choices():
    with pytest.raises(MissingConfigException) as error:
        compose_config("dataset=imagenett")
    message = str(error.value)
    assert "dataset/imagenett" in message and "imagenet" in message and "digits" in message


def test_an_unknown_key_is_rejected():
    with pytest.raises(ConfigCompositionException, match="task.learning_rate"):
        compose_config("task.learning_rate=0.1")


def test_slurm_cpu_hands_the_job_to_submitit_with_one_gloo_process_per_node():
    cfg = compose_config("hardware=slurm_cpu", hydra=True)
    launcher = cfg.hydra.launcher
    assert "Slurm" in launcher._target_ and launcher.gpus_per_node is None
    assert (launcher.nodes, launcher.tasks_per_node) == (2, 1) == (cfg.hardware.num_nodes, cfg.hardware.devices)
    assert cfg.hardware.accelerator == "cpu" and not cfg.hardware.sync_batchnorm
