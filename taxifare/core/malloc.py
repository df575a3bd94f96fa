"""The C heap's arenas: fewer of them, so that memory freed by TensorFlow's threads is reused.

glibc's malloc gives a thread that finds the heap locked an arena of its own, up to eight per core, and
keeps what is freed in each. TensorFlow's thread pools allocate and free from many threads: the default
`taxifare train` on the real sample peaked at 1,093-1,168 MB with glibc's arenas and at 1,070-1,109 MB
with two, for the same model and at the same speed. Two arenas is what MALLOC_ARENA_MAX=2 would
set; a MALLOC_ARENA_MAX of the user's own is left alone, and so is a C library that is not glibc.
"""

from __future__ import annotations

import ctypes
import os
import sys

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's malloc.h


def use_few_arenas() -> None:
    """Cap the arenas; call early, before the threads that would make the arenas start."""
    if not sys.platform.startswith("linux") or "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mallopt(_M_ARENA_MAX, ARENAS)
