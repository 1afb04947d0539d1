"""Semantic segmentation: the colour-coded class map blended over the image (PNG next to the input)."""
from __future__ import annotations

import numpy as np
import torch
from mmseg.apis import inference_model, init_model
from mmseg.utils import dataset_aliases, get_classes, get_palette
from mmseg.visualization import SegLocalVisualizer
from omegaconf import DictConfig

from ravlt.files import atomic_path

from .dense import bgr_array, dataset_meta, dense_inputs, load_weights, overlay_path

SHOWN = 8  # classes listed on the console


def classes_and_palette(meta: dict, num_classes: int) -> tuple[list[str], list]:
    """The run's classes and palette; without them, a known dataset's of that size (e.g. ADE20K's 150), else
    numbered classes; a missing palette is drawn from a fixed seed."""
    classes, palette = meta.get("classes"), meta.get("palette")
    if not classes:
        known = next((name for name in dataset_aliases if len(get_classes(name)) == num_classes), None)
        classes = get_classes(known) if known else [f"class {i}" for i in range(num_classes)]
        palette = palette or (get_palette(known) if known else None)
    if not palette or len(palette) != len(classes):
        palette = np.random.default_rng(0).integers(0, 256, (len(classes), 3)).tolist()
    return list(classes), [tuple(int(c) for c in colour) for colour in palette]


def predict(cfg: DictConfig) -> dict:
    path, image, checkpoint, config = dense_inputs(cfg, "segmentation", "segmentor")
    model = init_model(config, None, device=cfg.device)
    load_weights(model, checkpoint, path)
    classes, palette = classes_and_palette(dataset_meta(checkpoint), model.decode_head.num_classes)
    model.dataset_meta = {"classes": classes, "palette": palette}

    result = inference_model(model, bgr_array(image))
    out = overlay_path(cfg, "segmentation")
    visualizer = SegLocalVisualizer(name="ravlt_predict_segmentation", alpha=cfg.opacity)
    visualizer.set_dataset_meta(classes=classes, palette=palette)
    with atomic_path(out) as tmp:
        visualizer.add_datasample("prediction", np.asarray(image), result, draw_gt=False, out_file=str(tmp))

    labels = result.pred_sem_seg.data.flatten().cpu()
    counts = torch.bincount(labels, minlength=len(classes)).double() / labels.numel()
    order = counts.argsort(descending=True)
    coverage = [{"class": classes[int(i)], "fraction": float(counts[i])} for i in order if counts[i] > 0]
    print(f"classes in {cfg.image} ({image.width}×{image.height}), by area:")
    for c in coverage[:SHOWN]:
        print(f"  {100 * c['fraction']:5.1f}%  {c['class']}")
    if len(coverage) > SHOWN:
        print(f"  ... and {len(coverage) - SHOWN} more")
    print(f"overlay written to {out}")
    return {"task": "segmentation", "image": str(cfg.image), "overlay": str(out), "coverage": coverage}
