"""``torch.compile`` settings of our own: how much of a compiled training step's activations it keeps for
backward (:func:`activation_memory_budget`), and inference with the weights frozen in (:func:`compile_frozen`).

AOTAutograd traces each compiled training graph, the lean autograd nodes' forward and backward included
(``ravlt.models.lean``), into one joint graph and partitions it again: by default (torch's
``activation_memory_budget`` 1.0) its partitioner keeps whatever is fastest to keep, whatever the nodes'
own plan was. For RAVLT-S (batch 16, 224², fp32, CPU) that peaked at 3033 MiB against eager's 1783. A budget
below 1 makes it recompute the cheapest ops in backward until the kept activations fit that fraction of its
default (0: as if the whole graph were checkpointed). The budget is an option, off by default: on the CPU it
saved memory at some speed (docs/performance.md has both per budget).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch._functorch.config
import torch._inductor.config
from torch import nn


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


def compile_frozen(model: nn.Module, dynamic: bool | None = False) -> Callable[..., torch.Tensor]:
    """``model`` (put in eval mode) compiled for inference with Inductor's freezing: its weights become
    constants of the graph, so Inductor folds BatchNorm, prepacks every convolution's and linear layer's
    weights for oneDNN and fuses the elementwise work around them (on the CPU, RAVLT-S b1 224² ran 1.3–1.55×
    its eager speed; docs/performance.md). Calls run without autograd.

    The weights are read when a graph compiles, once per input shape (``dynamic=False``, the default: with
    dynamic shapes, torch 2.14's frozen convolutions failed a stride check on NCHW inputs): for new weights,
    compile afresh (weights changed in place afterwards are seen only in part). Dynamo decides while
    tracing whether the weights are graph inputs or constants, so every call runs with ``freezing`` on, not
    only Inductor's compilation (``torch.compile(options={"freezing": True})`` alone leaves them inputs)."""
    compiled = torch.compile(model.eval(), dynamic=dynamic)

    def run(*args, **kwargs):
        with torch._inductor.config.patch(freezing=True), torch.inference_mode():
            return compiled(*args, **kwargs)

    return run
