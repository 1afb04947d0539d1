"""The profiler's native log lines (``USDT: ... profiler_start``, ``ERROR: ... gpuGetDeviceCount``) stay out of
the bench's output; what the process writes to stderr after the profiler does not."""
import os

import torch
from torch.profiler import ProfilerActivity

from ravlt.tools.profiling import quiet_profile


def test_quiet_profile_drops_native_log_lines_and_restores_stderr(capfd):
    with quiet_profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        torch.ones(64) + 1
    os.write(2, b"after the profiler\n")
    err = capfd.readouterr().err
    assert "profiler_st" not in err and "gpuGetDeviceCount" not in err, err
    assert "after the profiler" in err
    assert any(e.name == "aten::add" for e in prof.events())  # it still profiled
