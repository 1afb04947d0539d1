"""1×1 convolutions with their weights packed once for oneDNN: small-map CPU inference after
:meth:`ravlt.models.RAVLT.fuse`.

A plain ``F.conv2d`` on the CPU reorders its weight into oneDNN's blocked layout on every call. Where a
feature map has few pixels and the weight is large (stage 4 at batch 1, 224²: 49 rows against up to
512×2048 weights) that reorder costs about as much as the product itself. For the weights :func:`pack`
was given, :func:`pointwise_conv` keeps packed copies (one per input shape, the last two shapes) and
reuses them — what Inductor's freezing does at compile time, here in eager mode; a new shape costs one
reorder, what the plain call pays every time. Where the map has more rows the reorder is cheap beside the
product and packing measured no faster, so those keep the plain call (docs/performance.md has the
figures).

Opt-in, because a packed copy cannot see every change of its weight: in-place changes of the parameter
itself (``load_state_dict``, optimizers) bump its version and the copy is packed again, but writes through
``weight.data`` do not. Only plain inference takes the path: CPU, float32, no autograd, no autocast, no
tracing or compiling. The copies (one more copy of the weights of stages 3–4 and the head per input shape
kept: 84 MiB for RAVLT-S at 224²) live as long as the parameters; :func:`set_enabled` switches the path
off everywhere.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.weak import WeakIdKeyDictionary

MAX_ROWS = 256  # batch × height × width up to which the packed weight pays (stages 3–4 at batch 1, 224²)
SHAPES_PER_WEIGHT = 2  # packed copies kept per weight, one per input shape (a model used at two sizes)

AVAILABLE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
_enabled = AVAILABLE
_packed: WeakIdKeyDictionary = WeakIdKeyDictionary()  # weight -> (version, {input shape: packed weight})
_NO_PADDING, _UNIT = [0, 0], [1, 1]


def pack(module: nn.Module) -> None:
    """Let the 1×1 convolutions (:class:`PointwiseConv2d`) of ``module`` run on packed weights in
    inference (not where torch has no oneDNN, nor for inference tensors, which have no version to check)."""
    if not AVAILABLE:
        return
    for m in module.modules():
        if isinstance(m, PointwiseConv2d) and not m.weight.is_inference() and m.weight not in _packed:
            _packed[m.weight] = (m.weight._version, {})


def set_enabled(enabled: bool) -> None:
    """Switch packed weights on (the default where torch has oneDNN) or off for every model; off drops
    the packed copies (the weights stay registered)."""
    global _enabled
    _enabled = bool(enabled) and AVAILABLE
    if not _enabled:
        for weight, (version, _) in list(_packed.items()):
            _packed[weight] = (version, {})


def takes_packed_path(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (  # compiling first: Dynamo must not trace the checks after it
        not torch.compiler.is_compiling()
        and _enabled
        and weight in _packed
        and x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and x.dim() == 4
        and x.shape[0] * x.shape[2] * x.shape[3] <= MAX_ROWS
        and (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))
        and not torch.is_grad_enabled()
        and not torch.is_autocast_enabled("cpu")
        and not torch.jit.is_tracing()
    )


def packed_weight(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``weight`` reordered for oneDNN's convolution of ``x``, kept for the last :data:`SHAPES_PER_WEIGHT`
    input shapes (with memory format); all packed again when the parameter changed in place (its version).
    oneDNN picks the blocked layout for the input's shape: a copy packed for another shape can be reordered
    back on every call."""
    key = (*x.shape, x.is_contiguous())
    version, copies = _packed[weight]
    if version != weight._version:
        copies = {}
        _packed[weight] = (weight._version, copies)
    found = copies.pop(key, None)  # re-inserted last: the dict's order is least recently used first
    if found is None:
        found = torch.ops.mkldnn._reorder_convolution_weight(weight, _NO_PADDING, _UNIT, _UNIT, 1, list(x.shape))
        while len(copies) >= SHAPES_PER_WEIGHT:
            del copies[next(iter(copies))]
    copies[key] = found
    return found


@torch.fx.wrap  # FX tracing records one call instead of tracing into the run-time choice
def pointwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.conv2d(x, weight, bias)`` for a 1×1 kernel, through the packed weight where that pays."""
    if not takes_packed_path(x, weight):
        return F.conv2d(x, weight, bias)
    return torch.ops.mkldnn._convolution_pointwise(
        x, packed_weight(weight, x), bias, _NO_PADDING, _UNIT, _UNIT, 1, "none", [], ""
    )


class PointwiseConv2d(nn.Conv2d):
    """A 1×1 ``nn.Conv2d`` (same parameters and state-dict keys) that runs through :func:`pointwise_conv`."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs):
        super().__init__(in_channels, out_channels, 1, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return pointwise_conv(x, self.weight, self.bias)
