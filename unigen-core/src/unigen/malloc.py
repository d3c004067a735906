"""glibc malloc settings for tensor workloads.

glibc serves every allocation above ``M_MMAP_THRESHOLD`` (128 KiB at start, adapted upward to at most
32 MiB as mmapped chunks are freed) with a fresh ``mmap`` and returns it with ``munmap`` when freed,
and it trims the top of the heap back to the kernel above ``M_TRIM_THRESHOLD``. A loop that allocates
and frees the same large tensors every step therefore page-faults its memory in again on every step.
Raising both thresholds keeps freed memory in the process for the next step, as a caching allocator
(jemalloc, tcmalloc, PyTorch's CUDA allocator) does. The cost: the process keeps its peak heap
instead of shrinking back after it.

:func:`tune` sets the two thresholds with ``mallopt`` (through ctypes) at run time; the same effect at
process start is the environment ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824``.
The ``unigen`` command calls :func:`tune` at start unless ``UNIGEN_MALLOC=system`` is set, or the user
already set either ``MALLOC_*`` variable, or the C library is not glibc (``unigen speed`` measures the
three settings side by side).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 1024 * 1024 * 1024
ENV_VARS = {"MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD), "MALLOC_TRIM_THRESHOLD_": str(TRIM_THRESHOLD)}
ENV_SWITCH = "UNIGEN_MALLOC"  # "system": leave malloc as it is

_state = {"tuned": False}


def _libc() -> ctypes.CDLL | None:
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def tune(force: bool = False) -> bool:
    """Raise glibc's mmap and trim thresholds; True when they were set. Does nothing (False) off
    glibc, when ``UNIGEN_MALLOC=system``, or when the user set a ``MALLOC_*`` threshold (theirs wins),
    unless ``force``."""
    if not force and (os.environ.get(ENV_SWITCH) == "system" or any(k in os.environ for k in ENV_VARS)):
        return False
    libc = _libc()
    if libc is None:
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    _state["tuned"] = _state["tuned"] or ok
    return ok


def describe() -> str:
    """How malloc is set in this process: 'mallopt', 'env' or 'system'."""
    if _state["tuned"]:
        return "mallopt"
    if any(k in os.environ for k in ENV_VARS):
        return "env"
    return "system"
