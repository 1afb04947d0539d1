"""Image classification: a Hydra config in, a Lightning Trainer behind, top-1 / top-5 out.

    python train.py task=classification model=ravlt_t dataset=digits hardware=cpu logger=csv experiment=digits_demo
    python train.py experiment=in1k_ravlt_s                       # the paper's ImageNet-1k recipe, all local GPUs
    python train.py task.mode=eval model=ravlt_t dataset=imagenet ckpt_path=RAVLT_T.pth

The DataModule, callbacks, loggers and Trainer are ``_target_`` nodes of the config (``task.datamodule``,
``task.callbacks``, ``logger.lightning``, ``task.trainer``) built with ``hydra.utils.instantiate``; this
module adds what needs logic: the dataset check, the LightningModule (its class count comes from the
data), which weights to load, and resuming. ``ckpt_path`` resumes a training run (``task.mode=train``)
or names the checkpoint to evaluate.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar
from omegaconf import DictConfig, OmegaConf

import ravlt.tracking  # noqa: F401  (the wandb_mode resolver of conf/logger/wandb.yaml)
from ravlt.classification import ImageClassifier, ImageFolderDataModule, finish_wandb
from ravlt.data.roots import dataset_root, require
from ravlt.models.checkpoint import (
    checkpoint_weights,
    has_ema,
    is_lightning_checkpoint,
    load_weights,
    read_checkpoint,
    recorded_model,
)
from ravlt.preemption import requeued_slurm_job

from . import ConfigError

log = logging.getLogger(__name__)

MODES = ("train", "eval")
LAYOUT = "a folder with {splits} class folders"


def plain(node) -> dict | list:
    return OmegaConf.to_container(node, resolve=True)


def checked_root(dataset: DictConfig, splits: tuple[str, ...]) -> Path:
    """The dataset's root with its class-folder splits (generated first for the offline dataset)."""
    layout = LAYOUT.format(splits="/ and ".join(splits) + "/")
    root = dataset_root(dataset, layout)
    require(dataset, root, splits, layout)
    return root


def build_datamodule(cfg: DictConfig, root: Path) -> ImageFolderDataModule:
    return instantiate(cfg.task.datamodule, root=root)


def num_classes_of(cfg: DictConfig, datamodule: ImageFolderDataModule) -> int:
    found = datamodule.num_classes
    expected = cfg.dataset.get("num_classes")
    if expected and expected != found:
        raise ConfigError(
            f"dataset={cfg.dataset.name} expects {expected} classes but {datamodule.root} has {found} class folders; "
            f"fix the folders or set dataset.num_classes={found}"
        )
    return found


def build_module(cfg: DictConfig, datamodule: ImageFolderDataModule, ema: bool) -> ImageClassifier:
    task, model = cfg.task, cfg.model
    model_kwargs = {k: v for k, v in plain(model).items() if k not in ("name", "pretrained")}
    if model_kwargs.get("drop_path_rate") is None:
        model_kwargs.pop("drop_path_rate", None)  # the variant's own rate
    return ImageClassifier(
        model.name,
        num_classes_of(cfg, datamodule),
        model_kwargs=model_kwargs,
        batch_size=task.batch_size,
        optimizer=plain(task.optimizer),
        scheduler=plain(task.scheduler),
        mixup=plain(task.mixup),
        label_smoothing=task.label_smoothing,
        ema={**plain(task.ema), "enabled": ema},
        compile=task.compile,
        compile_memory_budget=task.compile_memory_budget,
        class_names=list(datamodule.classes),
        image_size=int(cfg.dataset.image_size),
    )


def load_checkpoint_weights(module: ImageClassifier, checkpoint: Mapping, for_eval: bool) -> None:
    """The checkpoint's weights into the model and, when both exist, its EMA weights into the EMA.

    Evaluation loads strictly. Fine-tuning keeps a fresh head when the class count differs and starts
    the EMA from the loaded weights.
    """
    load_weights(module.model, checkpoint_weights(checkpoint), allow_new_head=not for_eval)
    if module.model_ema is None:
        return
    if for_eval:
        load_weights(module.model_ema.module, checkpoint_weights(checkpoint, use_ema=True))
    else:
        module.model_ema.set(module.model)


def build_loggers(cfg: DictConfig) -> list:
    return [instantiate(node) for node in (cfg.logger.get("lightning") or {}).values()]


def build_callbacks(cfg: DictConfig, has_loggers: bool) -> dict[str, L.Callback]:
    """``task.callbacks`` by name, without those Lightning refuses here (the learning-rate monitor
    without a logger, a progress bar when it is switched off)."""
    callbacks = {name: instantiate(node) for name, node in cfg.task.callbacks.items() if node}
    return {
        name: cb for name, cb in callbacks.items()
        if (has_loggers or not isinstance(cb, LearningRateMonitor))
        and (cfg.task.progress_bar or not isinstance(cb, ProgressBar))
    }  # fmt: skip


def build_trainer(cfg: DictConfig, loggers: list, callbacks: dict[str, L.Callback]) -> L.Trainer:
    return instantiate(cfg.task.trainer, logger=loggers or False, callbacks=list(callbacks.values()))


def check_recorded_model(checkpoint: Mapping, path: str, model: DictConfig) -> None:
    """Our checkpoints record their model: evaluating it as another one (e.g. softmax stages where it was
    trained with RALA, which have the same weights) is refused rather than silently wrong."""
    trained = recorded_model(checkpoint)
    if trained is None:
        return
    attn_types = plain(model.attn_types) if OmegaConf.is_config(model.attn_types) else model.attn_types
    if trained != {"model_name": model.name, "attn_types": attn_types}:
        raise ConfigError(
            f"ckpt_path={path} was trained as model={trained['model_name']} model.attn_types={trained['attn_types']}, "
            f"not model={model.name} model.attn_types={model.attn_types}; evaluate it with the same model settings"
        )


def check_resume_checkpoint(path: str) -> None:
    if not is_lightning_checkpoint(read_checkpoint(path, "ckpt_path")):
        raise ConfigError(
            f"ckpt_path={path} is not a training checkpoint of this project, so there is no run to resume. "
            "To start from its weights use model.pretrained=...; to evaluate it use task.mode=eval."
        )


def resume_path(cfg: DictConfig) -> str | None:
    """``ckpt_path``; in a requeued SLURM job without one, the checkpoint that the preemption callback
    writes into the run directory, when it is there."""
    if cfg.ckpt_path or not requeued_slurm_job():
        return cfg.ckpt_path
    node = cfg.task.callbacks.get("preemption")
    found = Path(node.dirpath) / node.filename if node else None
    if found is not None and found.is_file():
        log.info("requeued SLURM job: resuming from %s", found)
        return str(found)
    return None


def quiet_lightning() -> None:
    """Under Hydra, whose handlers already print every record, drop Lightning's own console handlers
    (which would print each line twice), the warning about the EMA copy being in eval mode and the one
    about a mid-epoch checkpoint."""
    if logging.getLogger().handlers:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
    # resuming mid-epoch is exact here: the DataModule restores the epoch's position itself
    warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")


def run(cfg: DictConfig) -> dict:
    task = cfg.task
    if task.mode not in MODES:
        raise ConfigError(f"task.mode={task.mode} is not one of {', '.join(MODES)}")
    training = task.mode == "train"
    if not training and not cfg.ckpt_path:
        raise ConfigError(
            "task.mode=eval needs ckpt_path=/path/to/checkpoint: one of ours (<run dir>/checkpoints/last.ckpt) "
            "or a released RAVLT_T/S/B/L.pth"
        )
    resume = resume_path(cfg) if training else None
    if resume:
        check_resume_checkpoint(resume)

    quiet_lightning()
    if cfg.hardware.get("threads"):
        torch.set_num_threads(cfg.hardware.threads)
    L.seed_everything(cfg.seed, workers=True)
    splits = (cfg.dataset.train_split, cfg.dataset.val_split) if training else (cfg.dataset.val_split,)
    datamodule = build_datamodule(cfg, checked_root(cfg.dataset, splits))

    if training:
        module = build_module(cfg, datamodule, ema=bool(task.ema.enabled))
        if cfg.model.pretrained and not resume:
            load_checkpoint_weights(module, read_checkpoint(cfg.model.pretrained, "model.pretrained"), for_eval=False)
            log.info("starting from the weights of %s", cfg.model.pretrained)
    else:  # the EMA is evaluated when the checkpoint has EMA weights
        checkpoint = read_checkpoint(cfg.ckpt_path, "ckpt_path")
        check_recorded_model(checkpoint, cfg.ckpt_path, cfg.model)
        module = build_module(cfg, datamodule, ema=has_ema(checkpoint))
        load_checkpoint_weights(module, checkpoint, for_eval=True)

    loggers = build_loggers(cfg)
    callbacks = build_callbacks(cfg, bool(loggers))
    trainer = build_trainer(cfg, loggers, callbacks)
    num_params = sum(p.numel() for p in module.model.parameters())
    for logger in loggers:
        logger.log_hyperparams({"config": plain(cfg), "model/params": num_params})

    if training:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        best, last = callbacks.get("best_checkpoint"), callbacks.get("last_checkpoint")
        if best is not None and best.best_model_score is not None:  # none with fast_dev_run
            metrics[f"{task.monitor}_best"] = float(best.best_model_score)
            metrics["checkpoint/best"] = best.best_model_path
        if last is not None and last.best_model_path:
            metrics["checkpoint/last"] = last.best_model_path
        metrics.update(epoch=trainer.current_epoch, global_step=trainer.global_step)
    else:
        metrics = {k: float(v) for k, v in trainer.validate(module, datamodule=datamodule)[0].items()}
        metrics["checkpoint"] = str(cfg.ckpt_path)
    metrics["model/params"] = num_params
    if "unreadable_images" in callbacks:
        metrics["data/unreadable_images"] = len(callbacks["unreadable_images"].paths)

    if trainer.is_global_zero:
        hint = finish_wandb(loggers)
        if hint:
            print(f"W&B ran offline; upload this run with:\n  {hint}")
    return metrics
