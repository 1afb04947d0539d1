"""The RAVLT backbone: attention, architecture, variants (registered with timm) and checkpoints.

Stands alone: nothing here imports Lightning or OpenMMLab.
"""
from .attention import RALA, SoftmaxAttention
from .checkpoint import CheckpointMismatchError, describe_variant, load_checkpoint, read_checkpoint, unwrap_state_dict
from .ravlt import RAVLT, VARIANTS, RAVLTConfig, checkpoint_filter_fn, ravlt_b, ravlt_l, ravlt_s, ravlt_t, variant_kwargs
from .rope import RoPE2d, apply_rope

__all__ = [
    "RALA", "RAVLT", "VARIANTS", "CheckpointMismatchError", "RAVLTConfig", "RoPE2d", "SoftmaxAttention",
    "apply_rope", "checkpoint_filter_fn", "describe_variant", "load_checkpoint", "ravlt_b", "ravlt_l",
    "ravlt_s", "ravlt_t", "read_checkpoint", "unwrap_state_dict", "variant_kwargs",
]
