"""Keep freed host memory in the process for reuse (glibc), so that XLA:CPU steps stop
page-faulting.

An XLA:CPU executable allocates all its temporaries (about 350 MB for an ir-CSN-50 training
step on 2 clips of 8x112x112) as one block per call, from one of its worker threads. glibc serves
a block that large in a worker thread's arena by a fresh `mmap` and unmaps it on free, so the
kernel faults in and zeroes every page again on every step: 86,000 page faults per step, a
quarter of the step's time on a 2-core machine (bench/bench_flax.py). With one arena, no `mmap`
for large blocks and no trimming, the block is carved from the heap and reused: no faults.
This is what `GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:
glibc.malloc.trim_threshold=2147483647` does at start-up, set from inside the process; it must
run before the threads that allocate (jax's) first allocate. The cost: memory freed after a
peak stays with the process, as in PyTorch's CUDA caching allocator.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import sys

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_applied: bool | None = None


def reuse_freed_memory() -> bool:
    """Tell glibc's malloc to keep and reuse freed memory (see the module docstring).

    Returns whether it applies: False off Linux, on a C library other than glibc, and
    when the user already chose malloc settings in GLIBC_TUNABLES or MALLOC_* variables
    (theirs stand). Called more than once, it acts once.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if not sys.platform.startswith("linux"):
        return False
    if "glibc.malloc" in os.environ.get("GLIBC_TUNABLES", "") or any(
        k.startswith("MALLOC_") for k in os.environ
    ):
        return False
    if platform.libc_ver()[0] != "glibc":  # musl has no such mallopt parameters
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    _applied = all(
        mallopt(param, value) == 1
        for param, value in (
            (_M_ARENA_MAX, 1),
            (_M_MMAP_MAX, 0),
            (_M_TRIM_THRESHOLD, 2**31 - 1),
        )
    )
    return _applied
