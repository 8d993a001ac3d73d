"""Keeping freed memory in the process for the next batch (glibc): what the command line does."""

from __future__ import annotations

import ctypes
import sys
import typing as t

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Makes glibc's malloc keep freed memory for reuse: no block of its own ``mmap`` (which glibc gives
    to every request above 32 MiB and unmaps on ``free``) and no trimming of the heap below 2 GiB.

    A graph convolution allocates blocks of tens of MiB per batch. Unmapped on ``free``, each comes
    back as fresh pages the kernel must fault in and zero: 10-15 million page faults and 18-27 s of
    system time against 28 s of computing when ``aiida-cgcnn predict`` predicted 5,000 phonondb crystals
    with the five ``phonons-300K`` members; kept, 0.2 million and 0.6 s, and the command took 27 s
    instead of 46-55 s. The resident set stays at its peak until the process ends, so the command line
    does this for its own process, not the library. Returns whether it was done (glibc only)."""
    mallopt = glibc_mallopt()
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def glibc_mallopt() -> t.Any:
    """glibc's ``mallopt``, or None elsewhere (musl's parameters differ). Loaded by its soname: looking
    the library up (``ctypes.util.find_library``) runs ``ldconfig``, 20 ms at every command's start."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.gnu_get_libc_version  # noqa: B018  # glibc, not musl
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt
