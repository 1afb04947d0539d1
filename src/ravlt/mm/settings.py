"""The Hydra config's settings applied to an mmengine config, one group at a time.

A task builds its mmengine config top-down, in this order (see ``ravlt.tasks.detection.build_config``)::

    mm_cfg = load_config(sized_config_path(cfg.detector.config, cfg.model.name))
    set_dataset(mm_cfg, cfg.dataset, root)              # the task's own (COCO / ADE20K layout)
    set_model(mm_cfg, cfg.model)
    set_hardware(mm_cfg, cfg.hardware)
    set_schedule(mm_cfg, cfg.task)
    set_logger(mm_cfg, cfg.logger, cfg.run_name, cfg.output_dir)
    set_run(mm_cfg, cfg.seed, cfg.output_dir, cfg.run_name, cfg.task.get("cfg_options"))

Each step edits only the config it is given, from one group of settings, so a test can call it alone.
What each takes:

- ``model``: ``model.backbone`` arch / drop_path_rate / attn_types (the config must use
  ``ravlt.RAVLTBackbone``), ``init_cfg`` from ``model.pretrained``; the input widths of the neck
  (``model.neck.in_channels``), or of the heads when there is no neck, follow the variant.
- ``hardware``: ``devices`` × ``num_nodes`` processes (DDP through mmengine), ``precision`` (``16-mixed`` /
  ``bf16-mixed`` select ``AmpOptimWrapper`` on GPUs, anything else ``OptimWrapper``), ``num_workers`` for
  every dataloader, SyncBN only where there are GPUs.
- ``task``: ``batch_size`` (images per device; null keeps the config's), ``max_epochs`` (epoch milestones of
  the schedule scale along) / ``max_iters`` (schedulers that ended with training end with it again),
  ``val_interval``, ``vis_interval`` (the first image of every n-th validation batch is drawn; 0 draws
  none; custom hooks whose type ends in ``ImagesHook``, our W&B image hooks, follow the same interval).
- ``logger``: ``wandb`` adds ``ravlt.WandbVisBackend`` (mmengine's without the code snapshot; offline
  unless ``WANDB_MODE`` says otherwise), ``tensorboard`` mmengine's ``TensorboardVisBackend``; local JSON
  scalars and images always.
- the run: ``seed``, ``output_dir`` (the Runner's ``work_dir``), ``run_name``, atomic checkpoint writes,
  ``ravlt.PreemptionHook``, the dataloaders' loaders wrapped in ``ravlt.NameFile``, and ``cfg_options`` (a
  nested dict merged last, like ``tools/train.py --cfg-options``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from mmengine.config import Config
from omegaconf import DictConfig, ListConfig, OmegaConf

from ravlt.configs import config_file
from ravlt.errors import ConfigError
from ravlt.models import VARIANTS
from ravlt.models.checkpoint import checkpoint_weights, describe_variant, read_checkpoint
from ravlt.tracking import wandb_mode

from .loading import name_unreadable_files
from .preemption import ATOMIC_BACKEND

log = logging.getLogger(__name__)

DATALOADERS = ("train_dataloader", "val_dataloader", "test_dataloader")
SIZES = ("t", "s", "b", "l")
AMP_DTYPES = {"16-mixed": "float16", "16": "float16", "bf16-mixed": "bfloat16", "bf16": "bfloat16"}


def load_config(path: str | os.PathLike) -> Config:
    """Read an mmengine config file, with a clear error listing its siblings when it is missing."""
    file = config_file(path)
    if not file.is_file():
        siblings = sorted(p.name for p in file.parent.glob("*.py")) if file.parent.is_dir() else []
        hint = f" Configs in {file.parent}: {', '.join(siblings)}" if siblings else ""
        raise ConfigError(f"mmengine config not found: {file}.{hint}")
    return Config.fromfile(str(file))


def sized_config_path(template: str, model_name: str) -> Path:
    """The config file for this model size: ``{size}`` in the template is the variant's letter (t/s/b/l).

    Sizes without a file of their own (the paper has no RAVLT-T 3x detectors) start from the first
    size that has one; :func:`set_model` then switches the backbone and neck widths to the model.
    """
    size = model_name.rsplit("_", 1)[-1]
    path = config_file(template.format(size=size))
    if path.is_file() or "{size}" not in template:
        return path
    for other in SIZES:
        candidate = config_file(template.format(size=other))
        if candidate.is_file():
            log.info("no %s for %s: starting from %s with the backbone switched", path.name, model_name, candidate.name)
            return candidate
    raise ConfigError(f"no config matches {template} (looked for sizes {', '.join(SIZES)})")


def feature_channels(arch: str, out_indices=(0, 1, 2, 3)) -> list[int]:
    """Widths of the backbone outputs of a RAVLT variant (the neck / decode-head input channels)."""
    if arch not in VARIANTS:
        raise ConfigError(f"unknown RAVLT variant {arch!r}; choose one of {sorted(VARIANTS)}")
    dims = VARIANTS[arch].embed_dims
    return [dims[i] for i in sorted(out_indices)]


def set_model(mm_cfg: Config, model_cfg: DictConfig) -> list[int]:
    """Point ``model.backbone`` at the chosen variant; returns its output widths (neck set already)."""
    backbone = mm_cfg.model.backbone
    if backbone.get("type") not in ("ravlt.RAVLTBackbone", "RAVLTBackbone"):
        raise ConfigError(
            f"{mm_cfg.filename}: model.backbone.type is {backbone.get('type')!r}, expected 'ravlt.RAVLTBackbone'"
        )
    backbone.arch = model_cfg.name
    backbone.drop_path_rate = model_cfg.get("drop_path_rate")
    attn_types = model_cfg.get("attn_types", "llvv")
    backbone.attn_types = OmegaConf.to_container(attn_types) if isinstance(attn_types, ListConfig) else attn_types
    if model_cfg.get("pretrained"):
        checkpoint = Path(model_cfg.pretrained).expanduser().resolve()
        check_pretrained_variant(checkpoint, model_cfg.name)
        backbone.init_cfg = dict(type="Pretrained", checkpoint=str(checkpoint))
    elif backbone.get("init_cfg"):
        log.warning(
            "model.pretrained is null: the %s backbone starts from random weights. The paper's recipes "
            "fine-tune ImageNet-1k weights: set model.pretrained=/path/to/RAVLT_%s.pth (ours or released).",
            model_cfg.name, model_cfg.name[-1].upper(),
        )
        backbone.init_cfg = None
    channels = feature_channels(model_cfg.name, backbone.get("out_indices", (0, 1, 2, 3)))
    neck = mm_cfg.model.get("neck")
    if isinstance(neck, dict) and "in_channels" in neck:
        neck.in_channels = channels
    elif not neck:  # heads that read the backbone directly (UperNet and its auxiliary FCN head)
        for key in ("decode_head", "auxiliary_head"):
            heads = mm_cfg.model.get(key)
            for head in heads if isinstance(heads, list) else [heads] if heads else []:
                index = head.get("in_index", -1)
                head.in_channels = [channels[i] for i in index] if isinstance(index, (list, tuple)) else channels[index]
    return channels


def check_pretrained_variant(path: Path, model_name: str) -> None:
    """``model.pretrained`` is a readable checkpoint of the chosen variant (refused now, not after the
    dataset and detector are built; the backbone loads it strictly later)."""
    looks_like = describe_variant(checkpoint_weights(read_checkpoint(path, "model.pretrained")))
    if looks_like != model_name:
        raise ConfigError(
            f"model.pretrained={path} holds the weights of {looks_like}, not model={model_name}; "
            "pick the model that matches the checkpoint"
        )


def set_num_classes(node, num_classes: int) -> None:
    """Set every ``num_classes`` in a config subtree (box, mask, cascade-stage, decode and auxiliary heads)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "num_classes":
                node[key] = num_classes
            else:
                set_num_classes(value, num_classes)
    elif isinstance(node, (list, tuple)):
        for item in node:
            set_num_classes(item, num_classes)


def local_devices(hardware: DictConfig) -> int:
    """Processes on this node: ``devices``, where -1 / ``auto`` mean every visible GPU (1 on the CPU)."""
    devices = hardware.get("devices", 1)
    if devices in (None, "auto", -1, "-1"):
        return max(torch.cuda.device_count(), 1) if hardware.get("accelerator", "cpu") != "cpu" else 1
    return int(devices)


def world_size(hardware: DictConfig) -> int:
    return local_devices(hardware) * int(hardware.get("num_nodes", 1) or 1)


def uses_cpu(hardware: DictConfig) -> bool:
    """The run is on the CPU: asked for, or no GPU to be had."""
    return str(hardware.get("accelerator", "cpu")) == "cpu" or not torch.cuda.is_available()


def set_hardware(mm_cfg: Config, hardware: DictConfig) -> None:
    """Device, launcher, mixed precision and dataloader workers from the ``hardware`` group."""
    on_cpu = uses_cpu(hardware)

    optim = mm_cfg.optim_wrapper
    dtype = AMP_DTYPES.get(str(hardware.get("precision", "32")))
    if dtype and not on_cpu:
        optim.type = "AmpOptimWrapper"
        optim.dtype = dtype
    else:  # mmengine's AmpOptimWrapper needs CUDA
        optim.type = "OptimWrapper"
        for key in ("dtype", "loss_scale"):
            optim.pop(key, None)

    workers = hardware.get("num_workers")
    if workers is not None:
        for name in DATALOADERS:
            if mm_cfg.get(name):
                mm_cfg[name].num_workers = int(workers)
                mm_cfg[name].persistent_workers = int(workers) > 0

    if on_cpu or not hardware.get("sync_batchnorm", True):  # torch has no SyncBatchNorm on the CPU
        mm_cfg.sync_bn = None
        _replace_norm_type(mm_cfg.model, "SyncBN", "BN")
    if world_size(hardware) > 1:
        under_slurm = int(os.environ.get("SLURM_NTASKS", "1")) > 1
        mm_cfg.launcher = "slurm" if under_slurm else "pytorch"
        env_cfg = mm_cfg.setdefault("env_cfg", {})
        env_cfg.setdefault("dist_cfg", {})["backend"] = "gloo" if on_cpu else "nccl"
        if on_cpu:  # mmengine's default wrapper passes device_ids, which CPU modules reject
            mm_cfg.model_wrapper_cfg = dict(
                type="MMDistributedDataParallel",
                device_ids=None,
                broadcast_buffers=False,
                find_unused_parameters=mm_cfg.get("find_unused_parameters", False),
            )
    else:
        mm_cfg.launcher = "none"


def _replace_norm_type(node, old: str, new: str) -> None:
    """Swap a norm layer type (e.g. the heads' SyncBN) everywhere in a model config."""
    if isinstance(node, dict):
        if node.get("type") == old:
            node["type"] = new
        for value in node.values():
            _replace_norm_type(value, old, new)
    elif isinstance(node, list):
        for item in node:
            _replace_norm_type(item, old, new)


def scale_epoch_schedule(mm_cfg: Config, max_epochs: int) -> None:
    """Train for ``max_epochs`` with the same schedule shape: epoch-based schedulers that ran to the old
    last epoch now run to the new one, and step milestones move proportionally (8/12, 11/12 stay)."""
    old = int(mm_cfg.train_cfg.max_epochs)
    mm_cfg.train_cfg.max_epochs = max_epochs
    schedulers = mm_cfg.get("param_scheduler") or []
    for sched in schedulers if isinstance(schedulers, list) else [schedulers]:
        if not sched.get("by_epoch", True):
            continue
        if sched.get("end") == old:
            sched.end = max_epochs
        if "milestones" in sched:
            sched.milestones = [max(1, round(m * max_epochs / old)) for m in sched.milestones]


def scale_iter_schedule(mm_cfg: Config, max_iters: int) -> None:
    """Train for ``max_iters``: iteration schedulers that ended with training (poly decay) end with it
    again; a warm-up longer than the run is cut to it."""
    old = int(mm_cfg.train_cfg.max_iters)
    mm_cfg.train_cfg.max_iters = max_iters
    schedulers = mm_cfg.get("param_scheduler") or []
    for sched in schedulers if isinstance(schedulers, list) else [schedulers]:
        if sched.get("by_epoch", True):
            continue
        if sched.get("end") == old or sched.get("end", 0) > max_iters:
            sched.end = max_iters
        sched.begin = min(int(sched.get("begin", 0)), max_iters - 1)


def set_schedule(mm_cfg: Config, task: DictConfig) -> None:
    """Images per device, training length, validation and drawing intervals from the ``task`` group."""
    if task.get("batch_size"):
        mm_cfg.train_dataloader.batch_size = int(task.batch_size)
    train_cfg = mm_cfg.train_cfg
    if task.get("max_epochs") and "max_epochs" in train_cfg:
        scale_epoch_schedule(mm_cfg, int(task.max_epochs))
    if task.get("max_iters") and "max_iters" in train_cfg:
        scale_iter_schedule(mm_cfg, int(task.max_iters))
    if task.get("val_interval"):
        train_cfg.val_interval = int(task.val_interval)
    if task.get("vis_interval") is not None:
        set_drawing_interval(mm_cfg, int(task.vis_interval))


def set_drawing_interval(mm_cfg: Config, interval: int) -> None:
    """Draw the first image of every ``interval``-th validation batch (0: none) with the config's
    visualization hook and with the custom hooks whose type ends in ``ImagesHook`` (our W&B ones)."""
    vis_hook = mm_cfg.get("default_hooks", {}).get("visualization")
    custom = mm_cfg.get("custom_hooks", [])
    image_hooks = [h for h in custom if str(h.get("type")).endswith("ImagesHook")]
    if vis_hook is not None:
        vis_hook.draw = interval > 0
    if interval <= 0:
        mm_cfg.custom_hooks = [h for h in custom if h not in image_hooks]
        return
    for hook in filter(None, [vis_hook, *image_hooks]):
        hook.interval = interval


def set_logger(mm_cfg: Config, logger: DictConfig, run_name: str, output_dir: str) -> None:
    """mmengine visualisation backends for the ``logger`` group (scalars, images)."""
    name = logger.get("name", "none")
    backends: list[dict[str, Any]] = [dict(type="LocalVisBackend")]
    if name == "wandb":
        backends.append(dict(
            type="ravlt.WandbVisBackend",
            init_kwargs=dict(
                project=logger.get("project") or "ravlt",
                entity=logger.get("entity"),
                name=run_name,
                dir=output_dir,
                mode=wandb_mode(logger.get("mode")),
                tags=list(logger.get("tags") or []),
            ),
        ))  # fmt: skip
    elif name == "tensorboard":
        backends.append(dict(type="TensorboardVisBackend"))
    mm_cfg.visualizer.vis_backends = backends
    mm_cfg.vis_backends = backends
    # Unnamed, the Runner names it after this run (experiment name + timestamp). The shipped name
    # ('visualizer') would hand a later run in the same process the first run's instance, which writes
    # into the first run's folder.
    mm_cfg.visualizer.pop("name", None)


def set_run(mm_cfg: Config, seed: int, output_dir: str, run_name: str, cfg_options: DictConfig | None = None) -> None:
    """Seed, work directory and experiment name, checkpoints written atomically and a checkpoint on
    preemption (:mod:`ravlt.mm.preemption`), unreadable data files named (:mod:`ravlt.mm.loading`);
    ``cfg_options`` (nested) merged last."""
    mm_cfg.work_dir = str(output_dir)
    mm_cfg.randomness = dict(seed=int(seed), deterministic=False)
    mm_cfg.experiment_name = run_name
    checkpoint_hook = mm_cfg.get("default_hooks", {}).get("checkpoint")
    if checkpoint_hook is not None:
        checkpoint_hook.backend_args = dict(backend=ATOMIC_BACKEND)
    mm_cfg.custom_hooks = [*mm_cfg.get("custom_hooks", []), dict(type="ravlt.PreemptionHook")]
    for name in DATALOADERS:
        if mm_cfg.get(name):
            name_unreadable_files(mm_cfg[name].dataset)
    if cfg_options:
        mm_cfg.merge_from_dict(OmegaConf.to_container(cfg_options, resolve=True))
