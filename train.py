"""Hydra entry point: compose the config, hand it to the task's runner.

    python train.py task=classification model=ravlt_t dataset=digits
    python train.py task=detection model=ravlt_s detector=mask_rcnn_1x dataset=coco hardware=gpus
"""
import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from ravlt.tasks import ConfigError, run

    try:
        return run(cfg)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
