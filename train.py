"""Hydra entry point: compose the config, hand it to the task's runner.

    python train.py task=classification model=ravlt_t dataset=digits
    python train.py task=detection model=ravlt_s detector=mask_rcnn_1x dataset=coco hardware=gpus

A wrong input ends in one line ``error: ...`` (exit status 2): :mod:`ravlt.commands`.
"""
import hydra
from omegaconf import DictConfig

from ravlt.commands import run_command


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from ravlt.tasks import run

    return run_command(lambda: run(cfg))


if __name__ == "__main__":
    run_command(main)
