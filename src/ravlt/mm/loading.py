"""Unreadable files in a detection or segmentation dataset, reported by name.

mmcv's and mmseg's loaders fail on a corrupt image or label map with an error about a byte buffer
(``cannot identify image file <_io.BytesIO ...>``) or a bare assertion, without the file. ``ravlt.NameFile``
wraps a loading transform and turns any such failure into an :class:`~ravlt.data.images.UnreadableImageError`
naming the file; :func:`name_unreadable_files` wraps the loaders of every dataloader of a config (it runs for
every ``train.py`` run, :func:`ravlt.mm.settings.set_run`) and :func:`unwrapped` gives a pipeline back as written.
"""
from __future__ import annotations

from mmcv.transforms import BaseTransform
from mmengine.registry import TRANSFORMS as ROOT_TRANSFORMS

from ravlt.data.images import UnreadableImageError

from .registry import TRANSFORMS

WRAPPER = "ravlt.NameFile"
LOADERS = ("LoadImageFromFile", "LoadAnnotations")
PATH_KEYS = ("seg_map_path", "img_path")  # a label map's loader has both: the label map is what it reads


@TRANSFORMS.register_module()
class NameFile(BaseTransform):
    """Runs ``transform`` (a loading transform's config); a file it cannot read raises
    :class:`~ravlt.data.images.UnreadableImageError` with the file's path."""

    def __init__(self, transform: dict):
        self.loader = ROOT_TRANSFORMS.build(transform)  # in the config's default scope (mmdet / mmseg)
        self.reads = "seg_map_path" if "LoadAnnotations" in transform["type"] else "img_path"

    def transform(self, results: dict) -> dict | None:
        try:
            return self.loader(results)
        except (OSError, ValueError, AssertionError, SyntaxError) as e:
            path = results.get(self.reads) or next((results[k] for k in PATH_KEYS if results.get(k)), "?")
            raise UnreadableImageError(
                f"cannot read {path} ({type(e).__name__}: {e}); replace or remove the file, or fix the dataset's "
                "annotation file that lists it"
            ) from None


def name_unreadable_files(dataset: dict) -> None:
    """Wrap the loading transforms of a dataset config (and of the datasets it wraps) in ``NameFile``."""
    pipeline = dataset.get("pipeline")
    if pipeline:
        dataset["pipeline"] = [
            dict(type=WRAPPER, transform=step) if any(name in str(step.get("type")) for name in LOADERS) else step
            for step in pipeline
        ]
    inner = [dataset["dataset"]] if isinstance(dataset.get("dataset"), dict) else dataset.get("datasets") or []
    for child in inner:
        name_unreadable_files(child)


def unwrapped(pipeline: list) -> list:
    """The pipeline as written, without ``NameFile`` around its loaders."""
    return [step["transform"] if step.get("type") == WRAPPER else step for step in pipeline]
