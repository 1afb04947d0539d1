"""ravlt.tools.malloc: after keep_freed_memory(), memory a step frees is served again without page faults, in
the process and in the processes it starts; give_freed_memory_back() undoes both; grow_heap_top() leaves resident
memory at the heap's top for allocations no free block fits."""
import os
import platform
import resource
import subprocess
import sys

import pytest

from ravlt.tools.malloc import heap_bytes

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


RESERVE_SCRIPT = """
import resource, sys, torch
from ravlt.tools.malloc import grow_heap_top, keep_freed_memory
assert keep_freed_memory()
grown = grow_heap_top(256 << 20) if sys.argv[1] == "reserve" else 0
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
x = torch.ones(2**25)  # 128 MiB: larger than any free block, so carved from the heap's top
print(grown, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(heap_bytes() is None, reason="glibc >= 2.33: mallopt and mallinfo2")
def test_heap_top_grown_in_advance_serves_a_new_block_without_page_faults():
    pages = 2**27 // resource.getpagesize()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}

    def run(mode: str) -> list[int]:
        out = subprocess.run([sys.executable, "-c", RESERVE_SCRIPT, mode], capture_output=True, text=True, check=True,
                             env=env)
        return [int(n) for n in out.stdout.split()[-2:]]

    grown, faults_after_reserve = run("reserve")
    assert grown >= 256 << 20 and faults_after_reserve < pages / 20
    assert run("none")[1] > pages / 2  # the heap grows into fresh pages, each faulted in on first touch
