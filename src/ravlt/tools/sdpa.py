"""Which kernel ``F.scaled_dot_product_attention`` actually ran: read off the profiler's operator names.

PyTorch picks the kernel at run time (flash, memory-efficient, cuDNN, or the math fallback that builds the
N×N matrix) from the device, dtype and layout; nothing else reports the choice. The GPU check uses
this to hold RAVLT's softmax stages to a fused kernel.
"""
from __future__ import annotations

from typing import Callable

from torch.profiler import ProfilerActivity

from .profiling import quiet_profile

# aten operator -> kernel family; every SDPA call lands in exactly one of them
BACKENDS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (cpu)",
    "aten::_scaled_dot_product_efficient_attention": "efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_fused_attention_overrideable": "overrideable",
    "aten::_scaled_dot_product_attention_math": "math",
    "aten::_scaled_dot_product_attention_math_for_mps": "math",
}
FUSED = {"flash", "flash (cpu)", "efficient", "cudnn"}


def sdpa_backends(fn: Callable[[], object]) -> dict[str, int]:
    """Run ``fn`` once under the profiler; {kernel family: number of SDPA calls} of what it ran."""
    with quiet_profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    counts: dict[str, int] = {}
    for event in prof.events():
        backend = BACKENDS.get(event.name)
        if backend:
            counts[backend] = counts.get(backend, 0) + 1
    return counts
