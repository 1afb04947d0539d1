"""``torch.compile`` settings of our own: how much of a compiled training step's activations it keeps for
backward (:func:`activation_memory_budget`), and inference with the weights frozen in (:func:`compile_frozen`).

AOTAutograd traces each compiled training graph, the lean autograd nodes' forward and backward included
(``ravlt.models.lean``), into one joint graph and partitions it again: by default (torch's
``activation_memory_budget`` 1.0) its partitioner keeps whatever is fastest to keep, whatever the nodes'
own plan was. For RAVLT-S (batch 16, 224², fp32, CPU) that peaked at 3033 MiB against eager's 1783. A budget
below 1 makes it recompute the cheapest ops in backward until the kept activations fit that fraction of its
default (0: as if the whole graph were checkpointed). The budget is an option, off by default: on the CPU it
saved memory at some speed (docs/performance.md has both per budget).

Every compiling entry point of the package first calls :func:`inductor_cache_per_cpu_capability`.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import torch
import torch._functorch.config
import torch._inductor.config
from torch import nn
from torch._inductor.runtime.cache_dir_utils import default_cache_dir


def inductor_cache_per_cpu_capability() -> str:
    """Points Inductor's on-disk cache (``TORCHINDUCTOR_CACHE_DIR``, by default ``/tmp/torchinductor_<user>``)
    at a subdirectory named after the CPU capability ATen runs (``avx512``, ``avx2``, ...) and returns it.

    Inductor writes its C++ kernels for that capability (``ATEN_CPU_CAPABILITY`` sets it, as the bench's
    imitated AVX2 class does), but torch 2.14's cache key leaves it out: a process reusing the other class's
    kernels computed NaN (AVX2 process, AVX-512 kernels) or corrupted its heap (the reverse)."""
    capability = torch.backends.cpu.get_cpu_capability().lower()
    base = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or default_cache_dir()
    if os.path.basename(os.path.normpath(base)) != capability:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.path.join(base, capability)
    return os.environ["TORCHINDUCTOR_CACHE_DIR"]


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
    inductor_cache_per_cpu_capability()
    compiled = torch.compile(model.eval(), dynamic=dynamic)

    def run(*args, **kwargs):
        with torch._inductor.config.patch(freezing=True), torch.inference_mode():
            return compiled(*args, **kwargs)

    return run
