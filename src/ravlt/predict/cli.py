"""The ``predict.py`` / ``ravlt-predict`` command: conf/predict.yaml composed by Hydra, errors in one line
(:mod:`ravlt.commands`)."""
from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from ravlt.commands import run_command

CONFIG_DIR = Path(__file__).resolve().parents[3] / "conf"


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="predict")
def predict(cfg: DictConfig) -> None:
    from . import run

    run_command(lambda: run(cfg))


def main() -> None:
    run_command(predict)
