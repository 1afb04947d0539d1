"""Validation predictions to Weights & Biases as interactive overlays (boxes and masks per class).

mmdet's ``DetVisualizationHook`` draws predictions into pixels (saved locally and sent to every
visualisation backend, W&B included). This hook adds what only W&B can show: the same validation
samples as ``wandb.Image`` with box and mask overlays that can be toggled per class and filtered by
score in the W&B UI, ground-truth boxes beside the predictions. It does nothing unless the
visualiser has a ``WandbVisBackend``.
"""
from __future__ import annotations

from typing import Sequence

import mmcv
import numpy as np
from mmengine.hooks import Hook

from .registry import HOOKS


@HOOKS.register_module()
class WandbDetectionImagesHook(Hook):
    """Logs ``val/predictions``: the first sample of every ``interval``-th validation batch (the
    batches ``DetVisualizationHook`` draws with the same interval), at most ``max_images`` per epoch.

    Args:
        interval: validation batches between logged samples.
        score_thr: predictions below it are left out.
        max_images: cap per validation epoch.
    """

    priority = "LOW"

    def __init__(self, interval: int = 50, score_thr: float = 0.3, max_images: int = 16):
        self.interval = interval
        self.score_thr = score_thr
        self.max_images = max_images
        self._images: list = []

    @staticmethod
    def _wandb(runner):
        backend = runner.visualizer.get_backend("WandbVisBackend")
        return backend.experiment if backend is not None else None

    def before_val_epoch(self, runner) -> None:
        self._images = []

    def after_val_iter(self, runner, batch_idx: int, data_batch: dict, outputs: Sequence) -> None:
        if (runner.iter + batch_idx) % self.interval or len(self._images) >= self.max_images:
            return
        wandb = self._wandb(runner)
        if wandb is None:
            return
        classes = runner.val_loop.dataloader.dataset.metainfo["classes"]
        self._images.append(self.to_wandb_image(wandb, outputs[0], classes))

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self._images:
            self._wandb(runner).log({"val/predictions": self._images})
        self._images = []

    def to_wandb_image(self, wandb, sample, classes: Sequence[str]):
        """One ``wandb.Image`` with prediction / ground-truth boxes and a prediction class mask."""
        image = mmcv.imread(sample.img_path, channel_order="rgb")
        labels = {i: name for i, name in enumerate(classes)}
        pred = sample.pred_instances
        pred = pred[pred.scores >= self.score_thr]
        boxes = {"predictions": {"box_data": [
            _box(box, int(label), f"{classes[int(label)]} {float(score):.2f}", score=float(score))
            for box, label, score in zip(pred.bboxes.tolist(), pred.labels, pred.scores)
        ], "class_labels": labels}}  # fmt: skip
        if "gt_instances" in sample and len(sample.gt_instances):
            scale = np.tile(np.asarray(sample.scale_factor, dtype=np.float32), 2)  # ground truth is at network scale
            gt = sample.gt_instances
            boxes["ground_truth"] = {"box_data": [
                _box(box, int(label), classes[int(label)])
                for box, label in zip((gt.bboxes.cpu().numpy() / scale).tolist(), gt.labels)
            ], "class_labels": labels}  # fmt: skip
        masks = None
        if "masks" in pred and len(pred):
            class_map = np.zeros(image.shape[:2], dtype=np.int32)
            for i in pred.scores.argsort().tolist():  # highest score painted last
                class_map[pred.masks[i].cpu().numpy().astype(bool)] = int(pred.labels[i]) + 1
            mask_labels = {0: "background", **{i + 1: name for i, name in enumerate(classes)}}
            masks = {"predictions": {"mask_data": class_map, "class_labels": mask_labels}}
        return wandb.Image(image, boxes=boxes, masks=masks, caption=sample.img_path.rsplit("/", 1)[-1])


def _box(xyxy, class_id: int, caption: str, **scores) -> dict:
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    box = dict(position=dict(minX=x0, minY=y0, maxX=x1, maxY=y1), domain="pixel", class_id=class_id,
               box_caption=caption)  # fmt: skip
    if scores:
        box["scores"] = scores
    return box
