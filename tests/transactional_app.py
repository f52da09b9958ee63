"""An application's transactional handler, loaded by daemon processes in the end-to-end tests
with `call = "transactional_app:save_tags"` and `transactional = true`.

It writes its rows through `ctx.db` into the application's table `<schema>.media_tags`, which
has no unique constraint: only the transaction that also records the handler's completion
keeps a redelivered event from adding its rows twice. Every call is recorded (before its
first write and after its last, both inside the transaction) in the file named by
VOD_EVENTS_TEST_CALLS, so the test can SIGKILL the daemon while handlers are mid-transaction.

VOD_EVENTS_TEST_SCHEMA names the schema; VOD_EVENTS_TEST_PAUSE the longest pause (seconds,
random) before and after the insert.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

from psycopg import sql

from vod_events.events import AIVideoTagComplete
from vod_events.router import HandlerContext


def table_ddl(schema: str) -> sql.Composed:
    """The statement creating the application's table in `schema` (no unique constraint)."""
    return sql.SQL(
        "CREATE TABLE {} (media_id text NOT NULL, job_id text NOT NULL, tag text NOT NULL)"
    ).format(sql.Identifier(schema, "media_tags"))


def _record(phase: str, event: AIVideoTagComplete) -> None:
    with Path(os.environ["VOD_EVENTS_TEST_CALLS"]).open("a", encoding="utf-8") as out:
        out.write(json.dumps({"phase": phase, "job_id": event.job_id, "pid": os.getpid()}) + "\n")
        out.flush()


def _pause() -> None:
    time.sleep(random.uniform(0, float(os.environ.get("VOD_EVENTS_TEST_PAUSE", "0.2"))))


def save_tags(event: AIVideoTagComplete, ctx: HandlerContext) -> None:
    """Upsert-free on purpose: one plain INSERT per tag."""
    assert ctx.db is not None, "not run as a transactional handler"
    assert event.result is not None
    _record("start", event)
    _pause()
    table = sql.Identifier(os.environ["VOD_EVENTS_TEST_SCHEMA"], "media_tags")
    for tag in event.result.keyword:
        ctx.db.execute(
            sql.SQL("INSERT INTO {} (media_id, job_id, tag) VALUES (%s, %s, %s)").format(table),
            (event.media_id, event.job_id, tag.tag),
        )
    _pause()
    _record("end", event)
