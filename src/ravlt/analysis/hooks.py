"""Forward pre-hooks that record what every attention block of a RAVLT receives."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class AttentionInput:
    """One call of one attention block: its (normalised) input x and the stage's RoPE tables."""

    stage: int
    block: int
    attn: nn.Module
    x: torch.Tensor
    sin: torch.Tensor
    cos: torch.Tensor


@contextmanager
def record_attention_inputs(model: nn.Module) -> Iterator[list[AttentionInput]]:
    """Within the context, every forward appends one :class:`AttentionInput` per attention block
    (``model.layers[i].blocks[j].attn``) to the yielded list, in execution order."""
    calls: list[AttentionInput] = []
    handles = []
    for i, stage in enumerate(model.layers):
        for j, block in enumerate(stage.blocks):

            def record(module, args, i=i, j=j):
                x, sin, cos = args
                calls.append(AttentionInput(i, j, module, x.detach(), sin.detach(), cos.detach()))

            handles.append(block.attn.register_forward_pre_hook(record))
    try:
        yield calls
    finally:
        for handle in handles:
            handle.remove()
