"""keep_freed_memory: a freed large block stays with the process instead of going back to the OS."""

import subprocess
import sys

import pytest

CHECK = """
import os
import numpy as np
from textcnn.core.memory import keep_freed_memory

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

def returned_to_os_mb():
    block = np.ones(64 * 2**20 // 8)  # 64 MB, above glibc's largest mmap threshold
    held = rss_mb()
    del block
    return held - rss_mb()

plain = returned_to_os_mb()  # mmap'd, unmapped on free: the RSS falls by the block
applied = keep_freed_memory()
kept = returned_to_os_mb()  # from the heap, kept on free: the RSS stays
print(applied, round(plain), round(kept))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt: Linux only")
def test_freed_large_blocks_stay_with_the_process():
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    applied, plain, kept = out.stdout.split()
    if applied != "True":
        pytest.skip("this C library has no mallopt (not glibc)")
    assert int(plain) >= 60  # by default the 64 MB go back to the OS at once
    assert int(kept) <= 4  # kept: the next step's allocation finds its pages in place


def test_opting_out_leaves_malloc_alone(monkeypatch):
    from textcnn.core.memory import OPT_OUT_VARIABLE, keep_freed_memory

    monkeypatch.setenv(OPT_OUT_VARIABLE, "0")
    assert keep_freed_memory() is False
