"""OpenMMLab side of RAVLT: the ``ravlt`` registry scope, the dense backbone for mmdet and mmseg, a W&B
hook for interactive validation images and a W&B backend that leaves the working directory's code out,
unreadable data files reported by name, atomic checkpoint writes and a clean stop on preemption.

Configs load it with ``custom_imports=dict(imports=['ravlt.mm'], allow_failed_imports=False)`` and
use ``type='ravlt.RAVLTBackbone'``. :mod:`ravlt.mm.settings` applies the project's Hydra settings to
an mmengine config and :mod:`ravlt.mm.runner` runs it (both shared by detection and segmentation).
"""
from . import compat  # noqa: F401  (first: config scopes of the OpenMMLab fork)
from .backbone import RAVLTBackbone
from .hooks import WandbDetectionImagesHook
from .loading import NameFile
from .preemption import PreemptionHook
from .registry import HOOKS, METRICS, MODELS, TRANSFORMS, VISBACKENDS
from .wandb_backend import WandbVisBackend

__all__ = [
    "HOOKS", "METRICS", "MODELS", "TRANSFORMS", "VISBACKENDS", "NameFile", "PreemptionHook", "RAVLTBackbone",
    "WandbDetectionImagesHook", "WandbVisBackend",
]
