"""Every classification combination that can run on a CPU composes and instantiates (no training):
model x dataset x hardware x logger, and each classification experiment with hardware x logger.

A piece that depends on only some groups (the LightningModule on model, task and class count; the
DataModule on dataset and task) is built once per distinct input, so every combination is covered
without building the same 95M-parameter model dozens of times."""

import io
import itertools

import pytest
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import OmegaConf
from PIL import Image

from ravlt.models import VARIANTS
from ravlt.tasks import classification as runner

MODELS = list(VARIANTS)
DATASETS = ["imagenet", "image_folder", "digits"]
CPU_HARDWARE = ["cpu", "cpu_ddp"]
LOGGERS = {"wandb": WandbLogger, "csv": CSVLogger, "tensorboard": TensorBoardLogger, "none": None}
EXPERIMENTS = ["digits_demo", "in1k_ravlt_t", "in1k_ravlt_s", "in1k_ravlt_b", "in1k_ravlt_l"]


@pytest.fixture
def roots(tmp_path, monkeypatch, data_env, make_image_folder):
    imagenet = tmp_path / "imagenet"  # 1000 class folders, one tiny JPEG each: enough to index and sample
    jpeg = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 60, 30)).save(jpeg, format="JPEG")
    for split, index in itertools.product(("train", "val"), range(1000)):
        (imagenet / split / f"n{index:08d}").mkdir(parents=True)
        (imagenet / split / f"n{index:08d}" / "0.JPEG").write_bytes(jpeg.getvalue())
    monkeypatch.setenv("IMAGENET_ROOT", str(imagenet))
    monkeypatch.setenv("IMAGE_FOLDER_ROOT", str(make_image_folder(tmp_path / "colours", per_class=1)))


def combinations():
    for model, dataset, hardware, logger in itertools.product(MODELS, DATASETS, CPU_HARDWARE, LOGGERS):
        yield [f"model={model}", f"dataset={dataset}", f"hardware={hardware}", f"logger={logger}"]
    for experiment, hardware, logger in itertools.product(EXPERIMENTS, CPU_HARDWARE, LOGGERS):
        yield [f"experiment={experiment}", f"hardware={hardware}", f"logger={logger}"]


def key(*nodes) -> str:
    return "\n".join(OmegaConf.to_yaml(n, resolve=True) if OmegaConf.is_config(n) else repr(n) for n in nodes)


@pytest.mark.slow
def test_every_cpu_combination_instantiates(roots, compose_run, tmp_path):
    datamodules, checked_modules = {}, set()  # a module is built once per key and dropped: RAVLT-B/L weigh GBs
    count = 0
    for overrides in combinations():
        cfg = compose_run("task=classification", *overrides)
        splits = (cfg.dataset.train_split, cfg.dataset.val_split)
        dm_key = key(cfg.dataset, cfg.task, cfg.hardware.num_workers)
        if dm_key not in datamodules:
            datamodule = runner.build_datamodule(cfg, runner.checked_root(cfg.dataset, splits))
            datamodule.setup("fit")
            assert datamodule.image_size == cfg.dataset.image_size
            datamodules[dm_key] = datamodule
        datamodule = datamodules[dm_key]
        num_classes = runner.num_classes_of(cfg, datamodule)
        assert num_classes == {"imagenet": 1000, "image_folder": 3, "digits": 10}[cfg.dataset.name]

        module_key = key(cfg.model, cfg.task, num_classes)
        if module_key not in checked_modules:
            module = runner.build_module(cfg, datamodule, ema=cfg.task.ema.enabled)
            assert module.hparams.class_names == datamodule.classes
            assert module.hparams.image_size == cfg.dataset.image_size
            assert module.model.embed_dims == VARIANTS[cfg.model.name].embed_dims
            assert module.model.head.out_channels == num_classes
            assert (module.model_ema is not None) == cfg.task.ema.enabled
            checked_modules.add(module_key)
            del module

        loggers = runner.build_loggers(cfg)
        expected_logger = LOGGERS[cfg.logger.name]
        assert [type(lg) for lg in loggers][-1:] == ([expected_logger] if expected_logger else [])
        callbacks = runner.build_callbacks(cfg, bool(loggers))
        trainer = runner.build_trainer(cfg, loggers, callbacks)
        assert trainer.num_devices == cfg.hardware.devices
        assert isinstance(trainer.strategy, DDPStrategy) == (cfg.hardware.name == "cpu_ddp")
        assert trainer.max_epochs == cfg.task.max_epochs
        assert trainer.checkpoint_callback.monitor == "val/top1"
        assert isinstance(trainer.checkpoint_callback, ModelCheckpoint)
        count += 1
    assert count == len(MODELS) * len(DATASETS) * len(CPU_HARDWARE) * len(LOGGERS) + len(EXPERIMENTS) * 8
