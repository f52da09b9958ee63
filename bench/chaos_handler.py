"""The chaos suite's handler: does some "work", recording when each call starts and ends.

Each record is one line written with one `write` on an O_APPEND descriptor, so concurrent
workers and processes never interleave, and a SIGKILL cannot leave half a line: the kernel
keeps what was written even when the process dies the next instant.

    start|end <TAB> job id <TAB> message id <TAB> DequeueCount <TAB> pid <TAB> unix time

A call that has a `start` but no `end` was cut short by a SIGKILL; an `end` is a handler
run that completed, so two `end` lines for one job are a duplicate handler run.

How long the "work" takes depends on the job id (`chaos-<kind>-<i>-<run>`, see chaos.py):
`slow` jobs take CHAOS_SLOW_SECONDS (longer than the queue's visibility timeout: only the
heartbeat keeps their messages from being handed to someone else), `dup` jobs, sent twice,
take CHAOS_DUP_SECONDS (so that the second copy arrives while the first runs), and the others
a random time averaging CHAOS_HANDLER_MS milliseconds.

`record_tx` is the same handler run as a transactional one (`transactional = true`, the
postgres store): it also inserts one row per call, through `ctx.db`, into
`<CHAOS_SCHEMA>.chaos_effects` - a table with no unique constraint - before its "work", so
a SIGKILL during the work finds an uncommitted row. The row commits together with the
store's record of the handler's completion, or not at all: an `end` line whose call was
then SIGKILLed before the commit has no row, and the next run of that event is not a
second effect. The rows, not the `end` lines, are what this handler did.

`record_async` is the same handler as `record`, `async def`: the daemon awaits it on its
event-loop thread, and its "work" is an `asyncio.sleep` of the same length, so a worker
thread does not wait for it. Its lines are written the same way, from that thread; a call
cancelled at shutdown writes no `end`, like one cut short by a SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg import sql

_FD: int | None = None


def _write(line: str) -> None:
    global _FD  # noqa: PLW0603 - one descriptor per process, opened on first use
    if _FD is None:
        _FD = os.open(os.environ["CHAOS_CALLS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_FD, line.encode())


def work_seconds(job: str) -> float:
    kind = job.split("-")[1] if job.count("-") >= 3 else ""
    if kind == "slow":
        return float(os.environ["CHAOS_SLOW_SECONDS"])
    if kind == "dup":
        return float(os.environ["CHAOS_DUP_SECONDS"])
    return random.uniform(0.0, 2 * float(os.environ.get("CHAOS_HANDLER_MS", "20")) / 1000)


def effects_table(schema: str) -> sql.Composed:
    """The statement creating the table `record_tx` writes to: no unique constraint, no
    key, so nothing in the table itself stops a second row for one job."""
    return sql.SQL(
        "CREATE TABLE {} (job text NOT NULL, message_id text NOT NULL, pid int NOT NULL,"
        " at timestamptz NOT NULL)"
    ).format(sql.Identifier(schema, "chaos_effects"))


_INSERT = "INSERT INTO {} (job, message_id, pid, at) VALUES (%s, %s, %s, clock_timestamp())"


@contextmanager
def _recorded(event: Any, ctx: Any) -> Iterator[str]:
    """Write the call's `start` line, then its `end` line once the block completes (not if
    it raises, nor if it is cut short); yields the job id."""
    job = str(event.job_id)
    where = f"{job}\t{ctx.message_id}\t{ctx.dequeue_count}\t{os.getpid()}"
    _write(f"start\t{where}\t{time.time():.3f}\n")
    yield job
    _write(f"end\t{where}\t{time.time():.3f}\n")


def _run(event: Any, ctx: Any, effect: bool) -> None:
    with _recorded(event, ctx) as job:
        if effect:
            table = sql.Identifier(os.environ["CHAOS_SCHEMA"], "chaos_effects")
            ctx.db.execute(sql.SQL(_INSERT).format(table), (job, ctx.message_id, os.getpid()))
        time.sleep(work_seconds(job))


def record(event: Any, ctx: Any) -> None:
    _run(event, ctx, effect=False)


async def record_async(event: Any, ctx: Any) -> None:
    """`record`, awaited on the daemon's event loop: its work is an `asyncio.sleep`."""
    with _recorded(event, ctx) as job:
        await asyncio.sleep(work_seconds(job))


def record_tx(event: Any, ctx: Any) -> None:
    """The transactional handler: one row per call in chaos_effects, through ctx.db."""
    if ctx.db is None:
        raise RuntimeError("record_tx needs `transactional = true` (and the postgres store)")
    _run(event, ctx, effect=True)
