"""Per-handler limits for sync handlers: how many run at once, and how long one may take.

`Route.max_concurrency` holds a handler to that many calls at once, across every worker (e.g.
to stay under VOD OpenAPI's QPS when the handler calls it): a worker waits for a place, and
the heartbeat keeps its message meanwhile. Async handlers get the same from `AsyncRunner.limit`.

`Route.timeout` for a sync handler: a thread cannot be cancelled safely, so a call that
outlives its timeout is logged and counted (`handler_overruns`) once, while it runs on and
the heartbeat keeps its message; its result stands when it returns. (An async handler past
its timeout is cancelled instead: see `Processor`.)
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import structlog

from vod_events.stats import Stats

log = structlog.get_logger("vod_events.limits")

OVERRUN_CHECK_SECONDS = 0.5


class Concurrency:
    """One semaphore per handler name that has a `max_concurrency`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}

    def of(self, name: str, limit: int) -> threading.BoundedSemaphore:
        with self._lock:
            semaphore = self._semaphores.get(name)
            if semaphore is None:
                semaphore = self._semaphores[name] = threading.BoundedSemaphore(limit)
            return semaphore


@dataclass(slots=True, eq=False)
class _Call:
    handler: str
    message_id: str
    timeout: float
    started: float
    reported: bool = False


class OverrunWatch:
    """The sync handler calls running with a timeout; one thread (started on first use)
    reports each that outlives it, once."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self._lock = threading.Lock()
        self._calls: set[_Call] = set()
        self._thread: threading.Thread | None = None

    @contextlib.contextmanager
    def running(self, handler: str, message_id: str, timeout: float) -> Iterator[None]:
        call = _Call(handler, message_id, timeout, time.monotonic())
        with self._lock:
            self._calls.add(call)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="vod-events-overruns", daemon=True
                )
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._calls.discard(call)
            if call.reported:
                log.warning(
                    "handler finished after overrunning its timeout",
                    handler=handler,
                    message_id=message_id,
                    timeout_s=timeout,
                    took_s=round(time.monotonic() - call.started, 2),
                )

    def _watch(self) -> None:
        while True:
            time.sleep(OVERRUN_CHECK_SECONDS)
            now = time.monotonic()
            with self._lock:
                late = [c for c in self._calls if not c.reported and now - c.started > c.timeout]
                for call in late:
                    call.reported = True
            for call in late:
                self.stats.incr("handler_overruns")
                log.warning(
                    "handler overran its timeout; a thread cannot be cancelled, so it runs on "
                    "and the heartbeat keeps its message",
                    handler=call.handler,
                    message_id=call.message_id,
                    timeout_s=call.timeout,
                )
