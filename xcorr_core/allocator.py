"""Process-wide allocator setting for long CPU runs: keep freed memory for reuse.

glibc's malloc hands every large block (above its mmap threshold, at most 32 MB) to the kernel on
``free`` and maps fresh pages on the next ``malloc``. Batched explainers allocate the same 10-100 MB
intermediates chunk after chunk, so each chunk pays page faults and the kernel's zeroing of every
page again (measured on ``xcorr demo``: see the getting-started page).
With large blocks taken from the heap (``M_MMAP_MAX = 0``) and the heap never trimmed, freed blocks
are reused instead.

The price is a resident size that stays at its peak until the process ends, so this is a choice for
a whole process: the ``xcorr`` executable makes it (``cli.console_main``; opt out with ``XCORR_RETAIN_MEMORY=0``); library
code never does. In your own process call `retain_freed_memory` once at start-up, or set the same
through the environment (``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4294967296``).
Touches nothing but glibc's malloc parameters; no-op elsewhere.
"""
from __future__ import annotations

import ctypes
import os
import sys

__all__ = ["retain_freed_memory"]

_M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
_M_MMAP_MAX = -4
_ENV = "XCORR_RETAIN_MEMORY"


def retain_freed_memory(*, respect_env: bool = True) -> bool:
    """Make glibc's malloc keep freed memory in the process (no mmap for large blocks, no trimming).

    Args:
        respect_env: skip when the environment sets ``XCORR_RETAIN_MEMORY=0``.

    Returns:
        Whether the setting was applied (False on non-glibc systems, or when opted out).
    """
    if respect_env and os.environ.get(_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
