"""Shared test helpers: event bodies, a consumer over the in-memory queue, waiting."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from vod_events import log as logging_setup
from vod_events.backoff import RedeliveryBackoff
from vod_events.deadletter import DirectorySink
from vod_events.dedupe import IdempotencyStore, MemoryStore
from vod_events.memory_transport import MemoryBroker, MemoryTransport
from vod_events.processing import Processor
from vod_events.retry import RetryPolicy
from vod_events.router import Router
from vod_events.stats import Stats
from vod_events.worker import Consumer, ConsumerSettings

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


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(
        *,
        visibility_timeout: int = 30,
        settings: ConsumerSettings | None = None,
        retry: RetryPolicy | None = None,
        redelivery: RedeliveryBackoff | None = None,
        store: IdempotencyStore | None = None,
        max_deliveries: int = 10,
    ) -> Harness:
        broker = MemoryBroker()
        broker.create_queue(QUEUE, visibility_timeout=visibility_timeout)
        router = Router()
        stats = Stats()
        dead_dir = tmp_path / f"dead-{len(made)}"
        processor = Processor(
            router,
            stats=stats,
            stopping=threading.Event(),
            source=QUEUE,
            store=store or MemoryStore(),
            dead_letters=DirectorySink(dead_dir),
            retry=retry or RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.02),
            redelivery=redelivery or RedeliveryBackoff(initial=1, maximum=2),
            max_deliveries=max_deliveries,
        )
        consumer = Consumer(
            lambda name: MemoryTransport(broker, name),
            QUEUE,
            processor,
            settings or ConsumerSettings(pollers=1, workers=4, wait_seconds=1, deleters=1),
        )
        h = Harness(broker, consumer, router, dead_dir)
        made.append(h)
        return h

    yield make
    for h in made:
        if h.thread is not None and h.thread.is_alive():
            h.stop()


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    # Warnings and up, to stderr (as the daemon does), so stdout stays the commands' own.
    logging_setup.configure("warning", "console")
