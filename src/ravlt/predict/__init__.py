"""Inference on one image with a RAVLT checkpoint, for every task (``predict.py``).

``run(cfg)`` dispatches to ``ravlt.predict.<cfg.task.name>.predict(cfg) -> dict``: classification prints
the top-k classes; detection and segmentation write the prediction drawn over the image (PNG) and print a
summary.
"""
from __future__ import annotations

import importlib

from omegaconf import DictConfig

from ravlt.checks import check_device, check_model, check_ranges
from ravlt.errors import ConfigError
from ravlt.extras import require_task_packages

TASKS = ("classification", "detection", "segmentation")


def run(cfg: DictConfig) -> dict:
    name = cfg.task.name
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    check_ranges(cfg)
    check_model(cfg.model)
    check_device("device", cfg.device)
    require_task_packages(name)
    if name != "classification":
        import ravlt.mm  # noqa: F401  (before mmdet / mmseg: holds back the forks' OneDL notice, see ravlt.mm.compat)
    return importlib.import_module(f"ravlt.predict.{name}").predict(cfg)
