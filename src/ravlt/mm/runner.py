"""Running an mmengine config: train or evaluate, in this process or one spawned process per device.

:func:`run` builds mmengine's Runner from a finished config (:mod:`ravlt.mm.settings` makes it), trains
(resuming from ``ckpt_path`` when it is an mmengine training checkpoint, otherwise starting from its
weights) or evaluates ``ckpt_path`` (loaded strictly), and returns the last evaluation's metrics as
``{name: float}``.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import socket
import tempfile
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.hooks import Hook

from ravlt.errors import ConfigError
from ravlt.models.checkpoint import load_strictly, read_checkpoint, stored_weights

from .settings import resolve_path

log = logging.getLogger(__name__)


class KeepLastMetrics(Hook):
    """Remembers the metrics of the last validation / test epoch (the Runner only returns test's)."""

    priority = "LOWEST"

    def __init__(self):
        self.metrics: dict[str, float] = {}

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.metrics = dict(metrics or {})

    after_test_epoch = after_val_epoch


def is_training_checkpoint(checkpoint) -> bool:
    """An mmengine training checkpoint (resumable): weights plus optimizer and loop state."""
    return {"state_dict", "optimizer", "meta"} <= checkpoint.keys()


def _floats(metrics: dict) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) or hasattr(v, "__float__")}


def run_local(mm_cfg: Config, mode: str = "train", ckpt_path: str | None = None) -> dict[str, float]:
    """Build the Runner in this process and train or evaluate; returns the last evaluation's metrics."""
    from mmengine.runner import Runner

    mm_cfg = copy.deepcopy(mm_cfg)
    if mode not in ("train", "eval"):
        raise ConfigError(f"task.mode must be 'train' or 'eval', got {mode!r}")
    checkpoint = resolve_path(ckpt_path) if ckpt_path else None
    stored = read_checkpoint(checkpoint, "ckpt_path") if checkpoint is not None else None
    if mode == "eval" and checkpoint is None:
        log.warning("task.mode=eval without ckpt_path: evaluating freshly initialised weights")
    if mode == "eval" and stored is not None and not any(k.startswith("backbone.") for k in stored_weights(stored)):
        raise ConfigError(
            f"ckpt_path={checkpoint} holds the weights of a RAVLT alone (a classification or backbone checkpoint), "
            "not of a whole detector / segmentor: evaluate a checkpoint that training this task wrote "
            "(<run dir>/epoch_N.pth or iter_N.pth), or train from these weights with model.pretrained=..."
        )
    if mode == "train" and checkpoint is not None:
        if is_training_checkpoint(stored):
            mm_cfg.resume, mm_cfg.load_from = True, str(checkpoint)
        else:
            log.info("ckpt_path %s holds weights only: training starts from them", checkpoint)
            mm_cfg.resume, mm_cfg.load_from = False, str(checkpoint)

    if mm_cfg.get("launcher") == "pytorch" and mm_cfg.env_cfg.dist_cfg.backend == "gloo":
        # CPU DDP: mmengine's own init calls torch.cuda.set_device, which a CPU-only torch lacks
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group("gloo")
    runner = Runner.from_cfg(mm_cfg)
    keeper = KeepLastMetrics()
    runner.register_hook(keeper)
    if mode == "train":
        runner.train()
    else:
        if checkpoint is not None:
            load_strictly(runner.model, stored_weights(stored), f"ckpt_path={checkpoint}")
        runner.test()
    return _floats(keeper.metrics)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawned_worker(rank: int, nprocs: int, port: int, mm_cfg: Config, mode: str, ckpt_path, result_file) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(nprocs),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    if mm_cfg.get("custom_imports"):  # Config.fromfile ran them in the parent process only
        from mmengine.utils import import_modules_from_strings

        import_modules_from_strings(**mm_cfg.custom_imports)
    if mm_cfg.env_cfg.dist_cfg.backend == "gloo":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // nprocs))  # the processes share the cores
    metrics = run_local(mm_cfg, mode, ckpt_path)
    if rank == 0:
        Path(result_file).write_text(json.dumps(metrics))


def run(
    mm_cfg: Config, mode: str = "train", ckpt_path: str | None = None, devices: int = 1, cpu: bool = True
) -> dict[str, float]:
    """Train or evaluate with mmengine's Runner (``cpu``: hide any GPU, which mmengine would pick).

    With several ``devices`` on this node and no launcher around this process (torchrun, srun), one
    process per device is spawned here; rank 0's metrics are returned.
    """
    if cpu and torch.cuda.is_available():
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    launched = "LOCAL_RANK" in os.environ or int(os.environ.get("SLURM_NTASKS", "1")) > 1
    if mm_cfg.get("launcher", "none") == "none" or launched or devices < 2:
        return run_local(mm_cfg, mode, ckpt_path)
    with tempfile.TemporaryDirectory() as tmp:
        result_file = Path(tmp) / "metrics.json"
        torch.multiprocessing.spawn(
            _spawned_worker, args=(devices, _free_port(), mm_cfg, mode, ckpt_path, str(result_file)), nprocs=devices
        )
        return json.loads(result_file.read_text())
