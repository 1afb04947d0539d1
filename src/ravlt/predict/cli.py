"""The ``predict.py`` / ``ravlt-predict`` command: conf/predict.yaml composed by Hydra, errors in one line."""
from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

CONFIG_DIR = Path(__file__).resolve().parents[3] / "conf"


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="predict")
def main(cfg: DictConfig) -> None:
    from ravlt.data.images import UnreadableImageError
    from ravlt.errors import ConfigError
    from ravlt.models import CheckpointMismatchError

    from . import run

    try:
        run(cfg)
    except (CheckpointMismatchError, UnreadableImageError, ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
