"""Detection / instance segmentation: boxes and masks drawn over the image (PNG next to the input)."""
from __future__ import annotations

import copy
import warnings

import numpy as np
from mmdet.apis import inference_detector, init_detector
from mmdet.utils import get_test_pipeline_cfg
from mmdet.visualization import DetLocalVisualizer
from mmengine.dataset import Compose
from omegaconf import DictConfig

from ravlt.files import atomic_path
from ravlt.mm.loading import unwrapped

from .dense import bgr_array, dataset_meta, dense_inputs, load_weights, overlay_path

SHOWN = 10  # detections listed on the console


def inference_pipeline(config) -> Compose:
    """The config's test pipeline for an in-memory image: no annotations to load."""
    steps = unwrapped(copy.deepcopy(get_test_pipeline_cfg(config)))
    steps = [step for step in steps if "LoadAnnotations" not in step["type"]]
    steps[0]["type"] = "mmdet.LoadImageFromNDArray"
    return Compose(steps)


def predict(cfg: DictConfig) -> dict:
    path, image, checkpoint, config = dense_inputs(cfg, "detection", "detector")
    with warnings.catch_warnings(record=True) as caught:  # init_detector resets the filters itself
        model = init_detector(config, None, device=cfg.device)
    for w in caught:  # its "checkpoint is None" does not apply: the weights are loaded strictly below
        if "checkpoint is None" not in str(w.message):
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    load_weights(model, checkpoint, path)
    model.dataset_meta = dataset_meta(checkpoint) or model.dataset_meta  # else mmdet's COCO classes

    result = inference_detector(model, bgr_array(image), test_pipeline=inference_pipeline(model.cfg))
    out = overlay_path(cfg, "detection")
    visualizer = DetLocalVisualizer(name="ravlt_predict_detection")
    visualizer.dataset_meta = model.dataset_meta
    with atomic_path(out) as tmp:
        visualizer.add_datasample(
            "prediction", np.asarray(image), result, draw_gt=False,
            pred_score_thr=cfg.score_threshold, out_file=str(tmp),
        )  # fmt: skip

    instances = result.pred_instances
    keep = instances.scores >= cfg.score_threshold
    classes = model.dataset_meta["classes"]
    detections = [
        {"class": classes[int(label)], "score": float(score), "box_xyxy": [round(float(v), 1) for v in box]}
        for label, score, box in zip(instances.labels[keep], instances.scores[keep], instances.bboxes[keep])
    ]
    print(f"{len(detections)} detection(s) with score >= {cfg.score_threshold} in {cfg.image}"
          f"{' (masks drawn too)' if 'masks' in instances else ''}:")  # fmt: skip
    for d in detections[:SHOWN]:
        print(f"  {d['score']:.2f}  {d['class']}  box {d['box_xyxy']}")
    if len(detections) > SHOWN:
        print(f"  ... and {len(detections) - SHOWN} more")
    print(f"overlay written to {out}")
    return {"task": "detection", "image": str(cfg.image), "overlay": str(out), "detections": detections}
