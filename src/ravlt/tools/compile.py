"""How much of a compiled training step's activations ``torch.compile`` keeps for backward.

AOTAutograd traces each compiled training graph, the lean autograd nodes' forward and backward included
(``ravlt.models.lean``), into one joint graph and partitions it again: by default (torch's
``activation_memory_budget`` 1.0) its partitioner keeps whatever is fastest to keep, whatever the nodes'
own plan was. For RAVLT-S (batch 16, 224², fp32, CPU) that peaked at 3033 MiB against eager's 1783. A budget
below 1 makes it recompute the cheapest ops in backward until the kept activations fit that fraction of its
default (0: as if the whole graph were checkpointed). The budget is an option, off by default: on the CPU it
saved memory at some speed (the README's Performance section has both per budget).
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch._functorch.config


def checked_budget(budget: float | None) -> float | None:
    if budget is not None and not 0.0 <= budget <= 1.0:
        raise ValueError(f"the compile memory budget is a fraction in [0, 1] or null (torch's default), got {budget}")
    return budget


@contextlib.contextmanager
def activation_memory_budget(budget: float | None) -> Iterator[None]:
    """Training graphs compiled inside keep at most ``budget`` (0–1) of the activations torch's default
    partition keeps; None leaves torch's setting. Compilation reads it, in the forward that compiles: wrap
    every compiled forward (a later one may recompile), the backward needs nothing."""
    if checked_budget(budget) is None:
        yield
        return
    with torch._functorch.config.patch(activation_memory_budget=budget):
        yield
