"""The RAVLT backbone: attention, architecture, variants (registered with timm) and checkpoints.

Stands alone: nothing here imports Lightning or OpenMMLab.
"""
from .attention import RALA, SoftmaxAttention
from .checkpoint import (
    CheckpointMismatchError,
    checkpoint_weights,
    describe_variant,
    load_checkpoint,
    load_weights,
    read_checkpoint,
)
from .ravlt import (
    RAVLT,
    VARIANTS,
    RAVLTConfig,
    checkpoint_filter_fn,
    ravlt_b,
    ravlt_l,
    ravlt_s,
    ravlt_t,
    variant_kwargs,
)
from .rope import RoPE2d, apply_rope

__all__ = [
    "RALA", "RAVLT", "VARIANTS", "CheckpointMismatchError", "RAVLTConfig", "RoPE2d", "SoftmaxAttention",
    "apply_rope", "checkpoint_filter_fn", "checkpoint_weights", "describe_variant", "load_checkpoint",
    "load_weights", "ravlt_b", "ravlt_l", "ravlt_s", "ravlt_t", "read_checkpoint", "variant_kwargs",
]
