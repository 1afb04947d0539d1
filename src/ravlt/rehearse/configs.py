"""The project's Hydra config composed from overrides, as ``train.py`` composes it, and the keys in
which two composed configs differ (what the rehearsal changed)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

import ravlt.tracking  # noqa: F401  (the wandb_mode resolver of conf/logger/wandb.yaml)

CONFIG_DIR = Path(__file__).resolve().parents[3] / "conf"


def compose_config(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=overrides)


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a.b.0.c": leaf}`` of nested dicts and lists (items by index); empty ones vanish."""
    if isinstance(node, (dict, list, tuple)):
        items = node.items() if isinstance(node, dict) else enumerate(node)
        out: dict[str, Any] = {}
        for key, value in items:
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: node}


def changed_keys(shipped: DictConfig, rehearsal: DictConfig) -> dict[str, list]:
    """``{key: [shipped value, rehearsal value]}`` for every resolved leaf that differs (``None`` where a
    key exists on one side only)."""
    before, after = (flatten(OmegaConf.to_container(c, resolve=True)) for c in (shipped, rehearsal))
    return {
        k: [before.get(k), after.get(k)] for k in sorted(before.keys() | after.keys()) if before.get(k) != after.get(k)
    }
