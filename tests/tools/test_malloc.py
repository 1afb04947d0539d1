"""ravlt.tools.malloc: after keep_freed_memory(), memory a step frees is served again without page faults, in
the process and in the processes it starts; give_freed_memory_back() undoes both."""
import os
import platform
import resource
import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys, torch
from ravlt.tools.malloc import give_freed_memory_back, keep_freed_memory
if sys.argv[1] in ("keep", "given back"):
    assert keep_freed_memory()
if sys.argv[1] == "given back":
    give_freed_memory_back()
def step():
    x = [torch.ones(2**23) for _ in range(16)]  # 16 blocks of 32 MiB: mmap-sized for glibc
    del x
step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(3):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


CHILD_OF_KEEPER = f"""
import subprocess, sys
from ravlt.tools.malloc import give_freed_memory_back, keep_freed_memory
assert keep_freed_memory()
if sys.argv[1] == "child given back":
    give_freed_memory_back()
subprocess.run([sys.executable, "-c", {SCRIPT!r}, "system"], check=True)
"""


def faults(mode: str) -> int:
    code = CHILD_OF_KEEPER if mode.startswith("child") else SCRIPT
    # glibc's defaults, even where an earlier in-process run (hardware=cpu) set MALLOC_* for its children
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True, env=env)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults():
    pages = 3 * 16 * 32 * 2**20 // resource.getpagesize()
    assert faults("system") > pages / 2  # each step faults its 512 MiB in again
    assert faults("keep") < pages / 20
    assert faults("child") < pages / 20  # a process started after keep_freed_memory() keeps its memory too
    assert faults("given back") > pages / 2
    assert faults("child given back") > pages / 2
