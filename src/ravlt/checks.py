"""Checks of configuration values that would otherwise fail late, deep inside a library, or not at all:
numeric options outside their sensible range, and hardware the machine cannot provide. Each failure is a
:class:`~ravlt.errors.ConfigError` that names the key to change.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from ravlt.errors import ConfigError


@dataclass(frozen=True)
class Range:
    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself is out
    high_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.high is None:
            return f"{kind} {'>' if self.low_open else '>='} {self.low}"
        return f"{kind} in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"

    def holds(self, value) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)


COUNT, NONNEGATIVE_COUNT = Range(1, integer=True), Range(0, integer=True)
POSITIVE, NONNEGATIVE, FRACTION = Range(0, low_open=True), Range(0), Range(0, 1)
MIN_IMAGE_SIZE = 32  # four stages, each halving the resolution after the stride-4 stem's first

# Every numeric option of train.py and predict.py, by its full key; absent or null keys are not checked.
RANGES: dict[str, Range] = {
    "seed": Range(0, 2**32 - 1, integer=True),
    "task.max_epochs": COUNT,
    "task.max_iters": COUNT,
    "task.batch_size": COUNT,
    "task.accumulate_grad_batches": COUNT,
    "task.clip_grad": POSITIVE,
    "task.compile_memory_budget": FRACTION,
    "task.crop_pct": Range(0, 1, low_open=True),
    "task.label_smoothing": Range(0, 1, high_open=True),
    "task.augment.hflip": FRACTION,
    "task.augment.color_jitter": NONNEGATIVE,
    "task.augment.re_prob": FRACTION,
    "task.augment.re_count": COUNT,
    "task.mixup.mixup_alpha": NONNEGATIVE,
    "task.mixup.cutmix_alpha": NONNEGATIVE,
    "task.mixup.prob": FRACTION,
    "task.mixup.switch_prob": FRACTION,
    "task.optimizer.lr": POSITIVE,
    "task.optimizer.lr_base_batch": COUNT,
    "task.optimizer.weight_decay": NONNEGATIVE,
    "task.optimizer.eps": POSITIVE,
    "task.scheduler.warmup_epochs": NONNEGATIVE,
    "task.scheduler.warmup_lr": NONNEGATIVE,
    "task.scheduler.min_lr": NONNEGATIVE,
    "task.ema.decay": FRACTION,
    "task.ema.reference_batch": COUNT,
    "task.log_every_n_steps": COUNT,
    "task.log_images": NONNEGATIVE_COUNT,
    "task.val_interval": COUNT,
    "task.vis_interval": NONNEGATIVE_COUNT,
    "dataset.image_size": Range(MIN_IMAGE_SIZE, integer=True),
    "dataset.num_classes": COUNT,
    "model.drop_path_rate": Range(0, 1, high_open=True),
    "hardware.num_nodes": COUNT,
    "hardware.num_workers": NONNEGATIVE_COUNT,
    "hardware.threads": COUNT,
    # predict.py
    "topk": COUNT,
    "image_size": Range(MIN_IMAGE_SIZE, integer=True),
    "score_threshold": FRACTION,
    "opacity": FRACTION,
}
PRECISIONS = ("32-true", "32", "bf16-mixed", "bf16", "16-mixed", "16", "bf16-true", "16-true", "64-true", "64")
ACCELERATORS = ("cpu", "gpu", "cuda", "auto")
NODE_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK")  # Lightning's general-purpose cluster environment


def check_ranges(cfg: DictConfig, ranges: Mapping[str, Range] = RANGES) -> None:
    for key, allowed in ranges.items():
        value = OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
        if value is not None and not allowed.holds(value):
            raise ConfigError(f"{key}={value} is out of range: it must be {allowed.describe()}")


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_device(key: str, device: str) -> None:
    """A torch device string (``cpu``, ``cuda``, ``cuda:1``) that exists on this machine."""
    kind, _, index = str(device).partition(":")
    if kind == "cpu" and not index:
        return
    if kind != "cuda" or (index and not index.isdigit()):
        raise ConfigError(f"{key}={device} is not a device; use cpu, cuda or cuda:N")
    available = gpu_count()
    if int(index or 0) >= available:
        raise ConfigError(
            f"{key}={device}: this machine has {available or 'no'} CUDA GPU(s) visible to torch; use {key}=cpu"
        )


def check_hardware(hardware: DictConfig, environ: Mapping[str, str] = os.environ) -> None:
    """The ``hardware`` group asks for what this machine (and its launcher) can provide."""
    name, accelerator = hardware.get("name"), str(hardware.get("accelerator", "cpu"))
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"hardware.accelerator={accelerator} is not one of {', '.join(ACCELERATORS)}")
    devices = hardware.get("devices", 1)
    if devices not in ("auto", -1) and not COUNT.holds(devices):
        raise ConfigError(f"hardware.devices={devices} must be a count >= 1, or -1 / auto for every GPU")
    precision = str(hardware.get("precision", "32-true"))
    if precision not in PRECISIONS:
        raise ConfigError(f"hardware.precision={precision} is not one of {', '.join(PRECISIONS)}")
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpu_count() > 0)
    if accelerator in ("gpu", "cuda"):
        available = gpu_count()
        if not available:
            raise ConfigError(
                f"hardware={name} asks for GPUs (hardware.accelerator={accelerator}) but torch sees none on this "
                "machine (no CUDA build, driver or visible device: check nvidia-smi and CUDA_VISIBLE_DEVICES); "
                "run on the CPU with hardware=cpu or hardware=cpu_ddp"
            )
        if isinstance(devices, int) and devices > available:
            raise ConfigError(
                f"hardware.devices={devices} but this machine has {available} GPU(s); use at most {available}"
            )
    if not on_gpu and precision.startswith("16"):
        raise ConfigError(f"hardware.precision={precision}: float16 needs a GPU; on the CPU use 32-true or bf16-mixed")
    num_nodes = hardware.get("num_nodes", 1) or 1
    launched = "SLURM_NTASKS" in environ or "WORLD_SIZE" in environ or all(k in environ for k in NODE_ENV)
    if isinstance(num_nodes, int) and num_nodes > 1 and not launched:
        raise ConfigError(
            f"hardware.num_nodes={num_nodes} but nothing started the other nodes, so the run would wait for them "
            "forever: submit with hardware=slurm (python train.py -m ...), or start the same command on every node "
            "with MASTER_ADDR, MASTER_PORT and NODE_RANK=0..N-1 set (or through torchrun)"
        )


def check_model(model: DictConfig) -> None:
    """``model.name`` is a RAVLT variant and ``model.attn_types`` fits its stages."""
    from ravlt.models.ravlt import VARIANTS

    name = model.get("name")
    if name not in VARIANTS:
        raise ConfigError(f"model.name={name} is not a RAVLT variant; use model={' / model='.join(VARIANTS)}")
    check_attn_types("model.attn_types", name, model.get("attn_types"))


def check_attn_types(key: str, model_name: str, attn_types) -> None:
    """Attention types for every stage (``llvv``; a per-block list per stage) of the variant."""
    from ravlt.models.ravlt import VARIANTS, per_stage_attn_types

    if attn_types is None:
        return
    types = OmegaConf.to_container(attn_types) if OmegaConf.is_config(attn_types) else attn_types
    try:
        per_stage_attn_types(types, VARIANTS[model_name].depths)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{key}={attn_types}: {e} (e.g. llvv as released, llll for pure RALA)") from None
