"""The chaos suite's handler: does a little "work", then records the call.

A line is written with one `write` on an O_APPEND descriptor, so concurrent workers and
processes never interleave, and a SIGKILL cannot leave half a line: the kernel keeps what
was written even when the process dies the next instant.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

_FD: int | None = None


def record(event: Any, ctx: Any) -> None:
    global _FD  # noqa: PLW0603 - one descriptor per process, opened on first use
    # "Work" for CHAOS_HANDLER_MS on average: kills then land mid-handler, not only between.
    time.sleep(random.uniform(0.0, 2 * float(os.environ.get("CHAOS_HANDLER_MS", "10")) / 1000))
    if _FD is None:
        _FD = os.open(os.environ["CHAOS_CALLS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_FD, f"{event.job_id}\t{os.getpid()}\n".encode())
