"""The paper's 25 runs, as a user launches them, and what a rehearsal on the CPU changes in each.

A run is its family (the recipe: ImageNet-1k, a detector, a segmentor) and a model size. ``shipped``
are the overrides a user types (README, ``conf/experiment/``); the rehearsal adds only what the CPU
forces — the ``hardware=cpu`` preset (fp32 instead of AMP, one process, its dataloader workers), the
images per process and the number of iterations — plus, for the detectors, the score threshold of the
evaluation (untrained heads score below the shipped 0.05, and CocoMetric has nothing to evaluate).
Everything else — pipelines, image scales and crops, model widths and heads, optimizer, schedulers,
hooks, evaluator, checkpointing — is the shipped config.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass

from ravlt.errors import ConfigError

SIZES = ("t", "s", "b", "l")
# optimizer steps before the checkpoint, and again after resuming from it: one for the dense tasks (a step
# at 1333x800 takes 10-60 s on 2 cores); classification takes two, its first step of a process also counts
# the model's FLOPs for Lightning's ThroughputMonitor, so the second is the one that times a step
DENSE_STEPS = 1
CLASSIFICATION_STEPS = 2
VAL_BATCHES = 1  # classification: validation batches per evaluation (mm tasks: the whole generated val split)


@dataclass(frozen=True)
class Family:
    name: str
    task: str  # classification | detection | segmentation
    sizes: tuple[str, ...]
    shipped: tuple[str, ...]  # "{size}" is the size letter
    cpu: tuple[str, ...]  # what the CPU forces, beyond the training length
    metrics: tuple[str, ...]  # what the evaluator must report
    steps: int = DENSE_STEPS  # per phase


CLASSIFICATION_CPU = ("hardware=cpu", "task.batch_size=4")  # Mixup pairs images: an even batch
DETECTION_CPU = ("hardware=cpu", "task.batch_size=1")
SEGMENTATION_CPU = ("hardware=cpu",)  # 2 images per process as shipped (UperNet's pooling BatchNorm needs 2)
RCNN_SCORE = "+task.cfg_options.model.test_cfg.rcnn.score_thr=0.0"


def _dense(task: str, group: str, config: str) -> tuple[str, ...]:
    dataset = "coco" if task == "detection" else "ade20k"
    return (f"task={task}", f"{group}={config}", "model=ravlt_{size}", f"dataset={dataset}", "hardware=gpus")


FAMILIES = (
    Family("in1k", "classification", SIZES, ("experiment=in1k_ravlt_{size}",), CLASSIFICATION_CPU,
           ("val/top1", "val/top5"), CLASSIFICATION_STEPS),
    Family("retinanet-1x", "detection", SIZES, _dense("detection", "detector", "retinanet_1x"),
           (*DETECTION_CPU, "+task.cfg_options.model.test_cfg.score_thr=0.0"), ("coco/bbox_mAP",)),
    Family("mask-rcnn-1x", "detection", SIZES, _dense("detection", "detector", "mask_rcnn_1x"),
           (*DETECTION_CPU, RCNN_SCORE), ("coco/bbox_mAP", "coco/segm_mAP")),
    Family("mask-rcnn-3x", "detection", SIZES[1:], _dense("detection", "detector", "mask_rcnn_3x"),
           (*DETECTION_CPU, RCNN_SCORE), ("coco/bbox_mAP", "coco/segm_mAP")),
    Family("cascade-mask-rcnn-3x", "detection", SIZES[1:], _dense("detection", "detector", "cascade_mask_rcnn_3x"),
           (*DETECTION_CPU, RCNN_SCORE), ("coco/bbox_mAP", "coco/segm_mAP")),
    Family("fpn-80k", "segmentation", SIZES, _dense("segmentation", "segmentor", "fpn_80k"), SEGMENTATION_CPU,
           ("mIoU", "mAcc", "aAcc")),
    Family("upernet-160k", "segmentation", SIZES[1:], _dense("segmentation", "segmentor", "upernet_160k"),
           SEGMENTATION_CPU, ("mIoU", "mAcc", "aAcc")),
)  # fmt: skip


@dataclass(frozen=True)
class Run:
    family: Family
    size: str

    @property
    def name(self) -> str:
        return f"{self.family.name}-{self.size}"

    @property
    def task(self) -> str:
        return self.family.task

    @property
    def steps(self) -> int:
        return self.family.steps

    def shipped(self, dataset_root: str, pretrained: str, output_dir: str) -> list[str]:
        """The user's command: the shipped overrides and where their data, weights and outputs are."""
        where = [f"dataset.root={dataset_root}", f"model.pretrained={pretrained}", f"output_dir={output_dir}"]
        return [o.format(size=self.size) for o in self.family.shipped] + where

    def rehearsal(
        self, dataset_root: str, pretrained: str, output_dir: str, resume_from: str | None = None
    ) -> list[str]:
        """The rehearsal's command: the user's, the CPU's changes and the training length (``steps``; with
        ``resume_from``, as many more after resuming from that checkpoint)."""
        phase = 2 if resume_from else 1
        overrides = [*self.shipped(dataset_root, pretrained, output_dir), *self.family.cpu, *self.length(phase)]
        if self.task == "classification":  # seconds per step (mmengine's checkpoints carry their own)
            overrides += ["+task.callbacks.step_times._target_=ravlt.rehearse.timing.StepTimes",
                          "+task.callbacks.step_times.path=${output_dir}/step_times.json"]  # fmt: skip
        return overrides + ([f"ckpt_path={resume_from}"] if resume_from else [])

    def length(self, phase: int) -> list[str]:
        """Training length of phase 1 (train) or 2 (resume). Epoch-based detectors train one epoch per
        phase over ``steps`` generated images; the mm evaluator runs once, at the end of phase 2."""
        if self.task == "classification":
            return [f"task.max_epochs={phase}", f"+task.trainer.limit_train_batches={self.steps}",
                    f"+task.trainer.limit_val_batches={VAL_BATCHES}"]  # fmt: skip
        if self.task == "detection":
            return [f"task.max_epochs={phase}", "+task.cfg_options.train_cfg.val_begin=2"]
        return [f"task.max_iters={phase * self.steps}", f"+task.cfg_options.train_cfg.val_begin={2 * self.steps}"]


PAPER_RUNS = tuple(Run(family, size) for family in FAMILIES for size in family.sizes)


def select(patterns: list[str] | None) -> list[Run]:
    """The paper runs whose names match any of the shell-style ``patterns`` (all runs without any)."""
    if not patterns:
        return list(PAPER_RUNS)
    chosen = [run for run in PAPER_RUNS if any(fnmatch.fnmatchcase(run.name, p) for p in patterns)]
    unmatched = [p for p in patterns if not any(fnmatch.fnmatchcase(run.name, p) for run in PAPER_RUNS)]
    if unmatched:
        raise ConfigError(
            f"--runs {' '.join(unmatched)} matches none of the paper runs: {', '.join(r.name for r in PAPER_RUNS)}"
        )
    return chosen
