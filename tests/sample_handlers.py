"""Handlers that test processes load with `call = "sample_handlers:..."`.

They record what they did in files named by environment variables, so the test (another
process) can see every call.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def _record(**fields: Any) -> None:
    with Path(os.environ["VOD_TEST_CALLS"]).open("a", encoding="utf-8") as out:
        out.write(json.dumps(fields) + "\n")
        out.flush()
        os.fsync(out.fileno())


def record(event: Any, ctx: Any) -> None:
    """Record the call, then sleep VOD_TEST_SLEEP seconds (0 by default)."""
    _record(phase="start", job_id=event.job_id, message_id=ctx.message_id, pid=os.getpid())
    time.sleep(float(os.environ.get("VOD_TEST_SLEEP", "0")))
    _record(phase="end", job_id=event.job_id, message_id=ctx.message_id, pid=os.getpid())


async def record_async(event: Any, ctx: Any) -> None:
    """`record`, as an async handler: awaits VOD_TEST_SLEEP seconds."""
    import asyncio

    _record(phase="start", job_id=event.job_id, message_id=ctx.message_id, pid=os.getpid())
    await asyncio.sleep(float(os.environ.get("VOD_TEST_SLEEP", "0")))
    _record(phase="end", job_id=event.job_id, message_id=ctx.message_id, pid=os.getpid())
