"""Process-wide memory settings the daemon applies once, before it starts any thread.

glibc's malloc gives a thread that finds its arena locked an arena of its own, up to 8 per
core, and memory freed in one arena is never reused by another. The daemon runs ~35 threads,
so its resident memory kept creeping for as long as threads met in malloc: the 200,000-message
soak (`bench/bench_consumer.py --soak`, defaults) grew 2.9 MB after its warm-up with glibc's
default and 1.8-2.1 MB with 2 arenas. With the GIL, at most one thread allocates Python
objects at a time, so two arenas cost no throughput that the soak could see.

Only the daemon applies this (`vod-events consume`, `python -m vod_events.consume`; the
benchmark's consumer process too, to measure what the daemon does), never an application that
imports the package: malloc's settings belong to the whole process.
"""

from __future__ import annotations

import ctypes
import os

M_ARENA_MAX = -8  # glibc's <malloc.h>
MALLOC_ARENAS = 2


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas at `arenas`; True when applied. Leaves a `MALLOC_ARENA_MAX`
    set in the environment alone (glibc has read it), and does nothing without glibc."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):  # no mallopt: not glibc (macOS, Windows)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_ARENA_MAX, arenas))
