"""Process-wide memory settings for the processes the project owns (the CLI and batch workers).

glibc's malloc serves a request above its mmap threshold (at most 32 MB) with a fresh `mmap`
and gives it back to the OS on `free`. CNN training on a CPU allocates activations of hundreds
of megabytes every step, so every step faults those pages in again and the kernel zeroes them:
R-CNN training on this project's 2-core machine spent as much time in the kernel as in its own
code. Keeping freed memory in the process removes that cost (R-CNN: 1.9x faster training) at the
price of holding on to the peak memory, which a training process needs again at the next step.
"""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_MAX = -4
OPT_OUT_VARIABLE = "TEXTCNN_KEEP_FREED_MEMORY"  # set to 0 to leave malloc as it is


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse: no `mmap` for large blocks, no trimming
    of the heap below 2 GB of free space. Returns whether it applied (glibc only; not when
    TEXTCNN_KEEP_FREED_MEMORY=0). Meant for processes the project owns, not for a library call."""
    if os.environ.get(OPT_OUT_VARIABLE, "1") == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no such knobs
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def peak_rss_bytes() -> int | None:
    """The process's peak resident memory since it started or since `reset_peak_rss` (Linux's
    VmHWM; the maximum RSS from getrusage elsewhere, which cannot be reset)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource
    except ImportError:  # not a Unix
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes, Linux KiB


def reset_peak_rss() -> bool:
    """Start the peak of `peak_rss_bytes` over from the memory held now (Linux: writing 5 to
    /proc/self/clear_refs), so that a benchmark or test measures one stage's peak; False where
    it cannot be reset."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True
