"""Shared test helpers: event bodies, a consumer over the in-memory queue, waiting.

Imported by test modules as `from helpers import ...`; the fixtures are in conftest.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
