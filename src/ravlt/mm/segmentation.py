"""mmseg additions for the segmentation configs (``custom_imports=['ravlt.mm', 'ravlt.mm.segmentation']``).

- ``ravlt.IgnoreInvalidLabels`` (training pipelines) and ``ravlt.CheckedIoUMetric`` (evaluation):
  label values outside ``0..num_classes-1`` (a label map from another dataset version, a wrong
  ``num_classes``, a corrupt PNG) become the ignore index and are counted, instead of crashing the
  loss or silently skewing the union of the predicted class. Training warns once per file;
  evaluation reports ``invalid_label_pixels`` beside aAcc / mIoU / mAcc.
- ``ravlt.SegVisualizationHook``: mmseg's hook (image with true and predicted masks overlaid, side
  by side, to every visualisation backend), except that a test run draws every ``interval``-th image
  like validation does; mmseg's draws every test image (2000 pictures for one ADE20K evaluation).
"""
from __future__ import annotations

import logging
import os.path as osp
from typing import Sequence

import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine.fileio import get
from mmengine.logging import print_log
from mmseg.engine.hooks import SegVisualizationHook as MMSegVisualizationHook
from mmseg.evaluation import IoUMetric

from .registry import HOOKS, METRICS, TRANSFORMS


def invalid_label_mask(label: np.ndarray | torch.Tensor, num_classes: int, ignore_index: int):
    """Pixels whose label is neither a class index nor ``ignore_index``."""
    return ((label < 0) | (label >= num_classes)) & (label != ignore_index)


@TRANSFORMS.register_module()
class IgnoreInvalidLabels(BaseTransform):
    """Set ``gt_seg_map`` values outside ``0..num_classes-1`` to ``ignore_index``; put after
    ``LoadAnnotations`` (labels as the model sees them, i.e. after ``reduce_zero_label``).

    Adds ``invalid_label_pixels`` (this sample's count) to the results and warns once per file.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes = int(num_classes)
        self.ignore_index = int(ignore_index)
        self._reported: set[str] = set()

    def transform(self, results: dict) -> dict:
        seg = results["gt_seg_map"]
        bad = invalid_label_mask(seg, self.num_classes, self.ignore_index)
        count = int(bad.sum())
        results["invalid_label_pixels"] = count
        if count:
            path = str(results.get("seg_map_path", "<in memory>"))
            if path not in self._reported:
                self._reported.add(path)
                values = np.unique(seg[bad]).tolist()
                print_log(
                    f"{path}: {count} label pixels have values {values[:10]} outside the {self.num_classes} "
                    f"classes (0..{self.num_classes - 1} after reduce_zero_label); they are ignored "
                    f"(set to {self.ignore_index}). Files with such labels so far: {len(self._reported)}.",
                    logger="current",
                    level=logging.WARNING,
                )
            seg = seg.copy()
            seg[bad] = self.ignore_index
            results["gt_seg_map"] = seg
        return results

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_classes={self.num_classes}, ignore_index={self.ignore_index})"


@METRICS.register_module()
class CheckedIoUMetric(IoUMetric):
    """mmseg's ``IoUMetric`` (same arguments and metrics) that ignores label values outside the class
    range and reports how many pixels had them as ``invalid_label_pixels``."""

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        if self.format_only:
            return super().process(data_batch, data_samples)
        num_classes = len(self.dataset_meta["classes"])
        for sample in data_samples:
            label = sample["gt_sem_seg"]["data"]
            bad = invalid_label_mask(label, num_classes, self.ignore_index)
            count = int(bad.sum())
            if count:
                gt = {**sample["gt_sem_seg"], "data": label.masked_fill(bad, self.ignore_index)}
                sample = {**sample, "gt_sem_seg": gt}
            super().process(data_batch, [sample])
            self.results[-1] = (*self.results[-1], count)

    def compute_metrics(self, results: list) -> dict[str, float]:
        if self.format_only:
            return super().compute_metrics(results)
        invalid = sum(int(r[4]) for r in results)
        metrics = super().compute_metrics([r[:4] for r in results])
        metrics["invalid_label_pixels"] = invalid
        if invalid:
            print_log(
                f"{invalid} ground-truth pixels had labels outside the {len(self.dataset_meta['classes'])} classes "
                f"and were ignored; check the dataset's annotations and num_classes",
                logger="current",
                level=logging.WARNING,
            )
        return metrics


@HOOKS.register_module()
class SegVisualizationHook(MMSegVisualizationHook):
    """mmseg's ``SegVisualizationHook`` with ``interval`` honoured when testing too."""

    def after_test_iter(self, runner, batch_idx: int, data_batch: dict, outputs: Sequence) -> None:
        if not self.draw:
            return
        for sample in outputs:
            self._test_index += 1
            if (self._test_index - 1) % self.interval:
                continue
            image = mmcv.imfrombytes(get(sample.img_path, backend_args=self.backend_args), channel_order="rgb")
            self._visualizer.add_datasample(
                f"test_{osp.basename(sample.img_path)}",
                image,
                data_sample=sample,
                show=self.show,
                wait_time=self.wait_time,
                step=self._test_index,
            )
