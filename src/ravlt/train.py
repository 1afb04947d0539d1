"""The training command (``train.py`` in the repository, ``ravlt-train`` / ``python -m ravlt.train`` installed):
compose the Hydra config (``conf/``, found through :mod:`ravlt.configs`) and hand it to the task's runner.

    python train.py task=classification model=ravlt_t dataset=digits
    python train.py task=detection model=ravlt_s detector=mask_rcnn_1x dataset=coco hardware=gpus

A wrong input ends in one line ``error: ...`` (exit status 2): :mod:`ravlt.commands`.
"""
import hydra
from omegaconf import DictConfig

from ravlt.commands import run_command
from ravlt.configs import HYDRA_CONFIG_DIR


@hydra.main(version_base="1.3", config_path=str(HYDRA_CONFIG_DIR), config_name="config")
def train(cfg: DictConfig) -> float | None:
    from ravlt.tasks import run

    return run_command(lambda: run(cfg))


def main() -> None:
    run_command(train)


if __name__ == "__main__":
    main()
