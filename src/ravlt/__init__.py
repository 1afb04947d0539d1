"""RAVLT suite: the RALA / RAVLT backbone (CVPR 2025) for classification, detection and segmentation.

``import ravlt`` registers ``ravlt_t``/``ravlt_s``/``ravlt_b``/``ravlt_l`` with timm.
"""
from . import models
from .models import RAVLT, load_checkpoint

__version__ = "0.1.0"
__all__ = ["RAVLT", "load_checkpoint", "models", "__version__"]
