"""The daemon caps glibc's malloc arenas; counted by glibc itself (`malloc_stats`) in a fresh
interpreter whose threads allocate at the same time (zlib gives up the GIL while it does)."""

from __future__ import annotations

import ctypes
import os
import platform
import subprocess
import sys

import pytest

PROGRAM = """
import ctypes, os, sys, threading, zlib
from vod_events.service.memory import limit_malloc_arenas
if sys.argv[1] == "limit":
    print(limit_malloc_arenas(), flush=True)
data = os.urandom(1 << 16)
def work():
    for _ in range(200):
        zlib.compress(data, 1)
threads = [threading.Thread(target=work) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
ctypes.CDLL(None).malloc_stats()  # to stderr: one "Arena N:" line per arena
"""


def _has_glibc_malloc_stats() -> bool:
    try:
        ctypes.CDLL(None).malloc_stats  # noqa: B018 - looked up only to see that it exists
    except (OSError, AttributeError):
        return False
    return platform.libc_ver()[0] == "glibc"


pytestmark = pytest.mark.skipif(not _has_glibc_malloc_stats(), reason="glibc only")


def arenas(mode: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    run = subprocess.run(
        [sys.executable, "-c", PROGRAM, mode],
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    count = sum(line.startswith("Arena ") for line in run.stderr.splitlines())
    return run.stdout.strip(), count


def test_threads_allocating_at_once_get_arenas_of_their_own_by_default() -> None:
    assert arenas("default")[1] > 2  # what the cap is for


def test_the_daemon_caps_them_at_two() -> None:
    assert arenas("limit") == ("True", 2)


def test_a_malloc_arena_max_of_the_users_is_left_alone() -> None:
    applied, count = arenas("limit", {"MALLOC_ARENA_MAX": "3"})
    assert applied == "False"
    assert count == 3
