"""``--free-rala-core``: the bench with RALA's core costing nothing, a what-if for the profile.

RALA's core — φ, RoPE, the importance α, the two O(N·d²) products and the normaliser
(:func:`ravlt.models.attention.rala_forward` and its backward) — returns zeros instead, so every model
row keeps all its other work: projections, LePE, gate, FFN, norms, softmax stages, stem. The ratios
of such a run are the ceiling any faster RALA core (a fused kernel, say) could reach. Its outputs are
not RAVLT's; the bench judges no targets on it.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

from ravlt.models import attention


def zero_forward(q, k, v, table, spec):
    return torch.zeros_like(q), ()


def zero_backward(q, k, v, table, spec, saved, grad):
    return torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)


@contextmanager
def free_rala_core() -> Iterator[None]:
    """RALA's core (forward and backward) replaced by zeros while inside."""
    real = attention.CORES["l"]
    attention.CORES["l"] = (zero_forward, zero_backward)
    try:
        yield
    finally:
        attention.CORES["l"] = real
