"""The ``predict.py`` / ``ravlt-predict`` / ``python -m ravlt.predict`` command: conf/predict.yaml composed by
Hydra (found through :mod:`ravlt.configs`), errors in one line (:mod:`ravlt.commands`)."""
from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ravlt.commands import run_command
from ravlt.configs import HYDRA_CONFIG_DIR


@hydra.main(version_base="1.3", config_path=str(HYDRA_CONFIG_DIR), config_name="predict")
def predict(cfg: DictConfig) -> None:
    from . import run

    run_command(lambda: run(cfg))


def main() -> None:
    run_command(predict)
