"""Image classification: a Hydra config in, a Lightning Trainer behind, top-1 / top-5 out.

    python train.py task=classification model=ravlt_t dataset=digits hardware=cpu logger=csv experiment=digits_demo
    python train.py experiment=in1k_ravlt_s                       # the paper's ImageNet-1k recipe, all local GPUs
    python train.py task.mode=eval model=ravlt_t dataset=imagenet ckpt_path=RAVLT_T.pth

What each config group sets: ``model`` the timm model (``name``, ``drop_path_rate``, ``attn_types``,
``pretrained`` weights to start from), ``dataset`` the class-folder root and resolution, ``task`` the
recipe and the mode, ``hardware`` devices / strategy / precision / workers, ``logger`` where metrics go.
``ckpt_path`` resumes a training run (``task.mode=train``) or names the checkpoint to evaluate.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar, ThroughputMonitor
from omegaconf import DictConfig, OmegaConf

from ravlt.classification import (
    AtomicCheckpointIO,
    ImageClassifier,
    ImageFolderDataModule,
    RngStateCheckpoint,
    UnreadableImageReport,
    ValidationImageGrid,
    build_loggers,
    checkpoint_weights,
    finish_wandb,
)
from ravlt.classification.checkpointing import is_lightning_checkpoint, trained_model
from ravlt.classification.data import batch_size_of
from ravlt.models.checkpoint import match_state_dict

from . import ConfigError

log = logging.getLogger(__name__)

MODES = ("train", "eval")


def plain(node) -> dict | list:
    return OmegaConf.to_container(node, resolve=True)


def dataset_root(dataset: DictConfig, splits: tuple[str, ...]) -> Path:
    """The dataset's root with its class-folder splits; generated first for ``generator: digits``."""
    name, env = dataset.name, dataset.get("root_env")
    hint = f"dataset.root=/path/to/{name}" + (f" or export {env}=/path/to/{name}" if env else "")
    if not dataset.get("root"):
        raise ConfigError(
            f"dataset={name} needs its data: set {hint} (a folder with {'/ and '.join(splits)}/ class folders). "
            "No dataset at hand? dataset=digits trains on an offline one."
        )
    root = Path(dataset.root).expanduser()
    if dataset.get("generator") == "digits":
        from ravlt.data.digits import ensure_digits

        ensure_digits(root)
    for split in splits:
        if not (root / split).is_dir():
            raise ConfigError(
                f"dataset={name}: {root / split} not found. Set {hint} (a folder with "
                f"{'/ and '.join(splits)}/ class folders). No dataset at hand? dataset=digits trains on an offline one."
            )
    return root


def build_datamodule(cfg: DictConfig, root: Path) -> ImageFolderDataModule:
    task, dataset = cfg.task, cfg.dataset
    return ImageFolderDataModule(
        root,
        image_size=dataset.image_size,
        batch_size=task.batch_size,
        num_workers=cfg.hardware.num_workers,
        train_split=dataset.train_split,
        val_split=dataset.val_split,
        interpolation=task.interpolation,
        crop_pct=task.crop_pct,
        augment=plain(task.augment),
        repeated_aug=task.repeated_aug,
        seed=cfg.seed,
        pin_memory=cfg.hardware.accelerator != "cpu",
    )


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
    model_kwargs = plain(model)
    for key in ("name", "pretrained"):
        model_kwargs.pop(key, None)
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
        class_names=list(datamodule.classes),
        image_size=int(cfg.dataset.image_size),
    )


def load_weights(module: ImageClassifier, model_sd: dict, ema_sd: dict | None, for_eval: bool) -> None:
    """Load checkpoint weights into the model and, when both exist, into the EMA.

    Evaluation loads strictly. Fine-tuning keeps a fresh head when the class count differs and starts
    the EMA from the loaded weights.
    """
    module.model.load_state_dict(match_state_dict(model_sd, module.model, allow_new_head=not for_eval), strict=False)
    if module.model_ema is None:
        return
    if for_eval:
        module.model_ema.module.load_state_dict(match_state_dict(ema_sd, module.model_ema.module), strict=False)
    else:
        module.model_ema.set(module.model)


def build_callbacks(cfg: DictConfig, has_loggers: bool) -> list[L.Callback]:
    task = cfg.task
    checkpoints = Path(cfg.output_dir) / "checkpoints"
    callbacks: list[L.Callback] = [
        # best by the monitored metric; then last.ckpt after every validation (Lightning's save_last only
        # writes when the best one was written too)
        ModelCheckpoint(
            dirpath=checkpoints,
            filename="best-epoch{epoch:03d}",
            monitor=task.monitor,
            mode="max",
            auto_insert_metric_name=False,
        ),  # fmt: skip
        ModelCheckpoint(dirpath=checkpoints, filename="last", monitor=None),
        RngStateCheckpoint(),
        UnreadableImageReport(),
        ThroughputMonitor(batch_size_fn=batch_size_of),
        ValidationImageGrid(task.log_images),
    ]
    if has_loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if task.progress_bar:
        callbacks.append(RichProgressBar())
    return callbacks


def build_trainer(cfg: DictConfig, loggers: list, callbacks: list) -> L.Trainer:
    hw, task = cfg.hardware, cfg.task
    return L.Trainer(
        accelerator=hw.accelerator,
        devices=hw.devices,
        num_nodes=hw.num_nodes,
        strategy=hw.strategy,
        precision=hw.precision,
        sync_batchnorm=hw.sync_batchnorm,
        max_epochs=task.max_epochs,
        accumulate_grad_batches=task.accumulate_grad_batches,
        gradient_clip_val=task.clip_grad,
        log_every_n_steps=task.log_every_n_steps,
        enable_progress_bar=bool(task.progress_bar),
        logger=loggers or False,
        callbacks=callbacks,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=cfg.output_dir,
        use_distributed_sampler=False,  # the DataModule shards (and repeats) itself
        **plain(task.trainer),
    )


def check_trained_model(path: str, model: DictConfig) -> None:
    """Our checkpoints record their model: evaluating it as another one (e.g. softmax stages where it was
    trained with RALA, which have the same weights) is refused rather than silently wrong."""
    trained = trained_model(path)
    if trained is None:
        return
    attn_types = plain(model.attn_types) if OmegaConf.is_config(model.attn_types) else model.attn_types
    wanted = {"model_name": model.name, "attn_types": attn_types}
    if trained != wanted:
        raise ConfigError(
            f"ckpt_path={path} was trained as model={trained['model_name']} model.attn_types={trained['attn_types']}, "
            f"not model={model.name} model.attn_types={model.attn_types}; evaluate it with the same model settings"
        )


def check_resume_checkpoint(path: str) -> None:
    if not Path(path).is_file():
        raise ConfigError(f"ckpt_path={path}: file not found")
    if not is_lightning_checkpoint(torch.load(path, map_location="cpu", mmap=True, weights_only=True)):
        raise ConfigError(
            f"ckpt_path={path} is not a training checkpoint of this project, so there is no run to resume. "
            "To start from its weights use model.pretrained=...; to evaluate it use task.mode=eval."
        )


def quiet_lightning() -> None:
    """Under Hydra, whose handlers already print every record, drop Lightning's own console handlers
    (which would print each line twice) and the warning about the EMA copy being in eval mode."""
    if logging.getLogger().handlers:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            logger.handlers.clear()
            logger.propagate = True
    warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")


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
    if cfg.ckpt_path and training:
        check_resume_checkpoint(cfg.ckpt_path)

    quiet_lightning()
    if cfg.hardware.get("threads"):
        torch.set_num_threads(cfg.hardware.threads)
    L.seed_everything(cfg.seed, workers=True)
    splits = (cfg.dataset.train_split, cfg.dataset.val_split) if training else (cfg.dataset.val_split,)
    datamodule = build_datamodule(cfg, dataset_root(cfg.dataset, splits))

    if training:
        module = build_module(cfg, datamodule, ema=bool(task.ema.enabled))
        if cfg.model.pretrained and not cfg.ckpt_path:
            load_weights(module, *checkpoint_weights(cfg.model.pretrained), for_eval=False)
            log.info("starting from the weights of %s", cfg.model.pretrained)
    else:  # the EMA is evaluated when the checkpoint has EMA weights
        check_trained_model(cfg.ckpt_path, cfg.model)
        model_sd, ema_sd = checkpoint_weights(cfg.ckpt_path)
        module = build_module(cfg, datamodule, ema=ema_sd is not None)
        load_weights(module, model_sd, ema_sd, for_eval=True)

    loggers = build_loggers(cfg.logger, cfg.output_dir, cfg.run_name)
    callbacks = build_callbacks(cfg, bool(loggers))
    trainer = build_trainer(cfg, loggers, callbacks)
    num_params = sum(p.numel() for p in module.model.parameters())
    for logger in loggers:
        logger.log_hyperparams({"config": plain(cfg), "model/params": num_params})

    if training:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        best, last = (cb for cb in callbacks if isinstance(cb, ModelCheckpoint))
        if best.best_model_score is not None:  # none with fast_dev_run
            metrics[f"{task.monitor}_best"] = float(best.best_model_score)
            metrics.update({"checkpoint/best": best.best_model_path, "checkpoint/last": last.best_model_path})
        metrics.update(epoch=trainer.current_epoch, global_step=trainer.global_step)
    else:
        metrics = {k: float(v) for k, v in trainer.validate(module, datamodule=datamodule)[0].items()}
        metrics["checkpoint"] = str(cfg.ckpt_path)
    metrics["model/params"] = num_params
    metrics["data/unreadable_images"] = len(next(cb for cb in callbacks if isinstance(cb, UnreadableImageReport)).paths)

    if trainer.is_global_zero:
        hint = finish_wandb(loggers)
        if hint:
            print(f"W&B ran offline; upload this run with:\n  {hint}")
    return metrics
