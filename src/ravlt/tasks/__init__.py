"""One runner per task: a composed Hydra config in, metrics out (printed and in ``metrics.json``)."""
from __future__ import annotations

import importlib
import json
import logging
import os
from pathlib import Path

from omegaconf import DictConfig

from ravlt.checks import check_hardware, check_model, check_ranges
from ravlt.errors import ConfigError
from ravlt.extras import require_task_packages
from ravlt.files import write_text_atomically

log = logging.getLogger(__name__)

TASKS = ("classification", "detection", "segmentation")
__all__ = ["ConfigError", "TASKS", "run", "is_global_zero", "write_metrics"]


def run(cfg: DictConfig) -> float | None:
    """Dispatch to ``ravlt.tasks.<task>.run(cfg) -> dict`` and report its metrics."""
    name = cfg.task.name
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    dataset_task = cfg.dataset.get("task")
    if dataset_task and dataset_task != name:
        raise ConfigError(
            f"dataset={cfg.dataset.name} is a {dataset_task} dataset but task={name}; "
            f"pick a {name} dataset (see conf/dataset/)"
        )
    check_ranges(cfg)
    check_model(cfg.model)
    check_hardware(cfg.hardware)
    require_task_packages(name)
    if cfg.hardware.get("keep_freed_memory"):
        from ravlt.tools.malloc import keep_freed_memory

        keep_freed_memory()
    runner = importlib.import_module(f"ravlt.tasks.{name}")
    metrics = runner.run(cfg)
    if is_global_zero():
        write_metrics(metrics, cfg.output_dir)
    key = cfg.task.get("monitor")
    return metrics.get(key) if key else None


def is_global_zero() -> bool:
    """Rank 0 of a distributed run, or a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return all(os.environ.get(k, "0") == "0" for k in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"))


def write_metrics(metrics: dict, output_dir: str | os.PathLike) -> Path:
    """Print the final metrics and write them to ``<output_dir>/metrics.json`` atomically."""
    clean = {
        k: (float(v) if hasattr(v, "__float__") and not isinstance(v, (int, str)) else v) for k, v in metrics.items()
    }
    out = write_text_atomically(Path(output_dir) / "metrics.json", json.dumps(clean, indent=2, sort_keys=True) + "\n")
    width = max((len(k) for k in clean), default=0)
    print("Final metrics:")
    for k, v in sorted(clean.items()):
        print(f"  {k:<{width}}  {v:.4f}" if isinstance(v, float) else f"  {k:<{width}}  {v}")
    print(f"metrics written to {out}")
    return out
