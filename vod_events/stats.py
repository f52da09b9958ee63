"""The consumer's counters and timings, in one place.

Plain integers and floats behind one lock: cheap on the hot path, and a snapshot is
consistent. The metrics endpoint (Prometheus), the systemd STATUS= line and the benchmarks
all read `Stats.snapshot()`; nothing else holds counts.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field
from typing import Literal

# Every counter's name. A misspelt name passed to `Stats.incr` is a type error, not a
# KeyError that ends a worker thread. `COUNTERS` must list exactly these (a test checks).
CounterName = Literal[
    "received",
    "handled",
    "retried",
    "failed",
    "deleted",
    "delete_failures",
    "unhandled",
    "duplicates",
    "deferred",
    "dead_lettered",
    "released",
    "extended",
    "poll_errors",
    "empty_polls",
    "refused_polls",
    "callbacks_rejected",
    "handler_timeouts",
    "handler_overruns",
    "completion_failures",
]


@dataclass(frozen=True, slots=True)
class Counter:
    """One monotonically increasing total: its Stats name and how /metrics exposes it.

    metric: the Prometheus name without the `vod_events_` prefix and the `_total` suffix.
    """

    name: CounterName
    metric: str
    help: str


# The one table of counters, in the order they are reported.
COUNTERS: tuple[Counter, ...] = (
    Counter("received", "messages_received", "Deliveries taken from the queue."),
    Counter("handled", "messages_handled", "Deliveries whose handlers all succeeded."),
    Counter("retried", "handler_retries", "Handler calls that failed and were retried in process."),
    Counter("failed", "messages_failed", "Deliveries handed back to the queue for a later retry."),
    Counter("deleted", "messages_deleted", "Messages deleted from the queue."),
    Counter("delete_failures", "delete_failures", "Receipt handles a delete could not act on."),
    Counter("unhandled", "messages_unhandled", "Events no handler was registered for (deleted)."),
    Counter(
        "duplicates",
        "messages_duplicate",
        "Deliveries skipped as already handled (idempotency).",
    ),
    Counter(
        "deferred",
        "messages_deferred",
        "Deliveries handed back for seconds because the same handler was running elsewhere.",
    ),
    Counter("dead_lettered", "messages_dead_lettered", "Messages moved to the dead-letter target."),
    Counter("released", "messages_released", "Unstarted messages handed back at shutdown."),
    Counter("extended", "visibility_extensions", "Visibility extensions made by the heartbeat."),
    Counter("poll_errors", "receive_errors", "Receive calls that failed (network errors, 5xx)."),
    Counter("empty_polls", "empty_receives", "Receive calls that returned no message."),
    Counter(
        "refused_polls",
        "long_polls_refused",
        "Long polls answered at once with no message (MNS's cap on long polls per IP): with "
        'pollers = "auto", one poller fewer each.',
    ),
    Counter(
        "callbacks_rejected",
        "http_callbacks_rejected",
        "VOD HTTP callbacks refused: bad signature, too large, or too many at once.",
    ),
    Counter(
        "handler_timeouts",
        "handler_timeouts",
        "Async handler calls cancelled at their timeout (each counts as a failed try).",
    ),
    Counter(
        "handler_overruns",
        "handler_overruns",
        "Sync handler calls that outlived their timeout (run on: threads cannot be cancelled).",
    ),
    Counter(
        "completion_failures",
        "completion_failures",
        "Handler completions the idempotency store could not record (left to their lease).",
    ),
)

# Histogram bucket upper bounds, in seconds (Prometheus-style, cumulative on export).
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(slots=True)
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds
        self.count += 1


@dataclass(frozen=True, slots=True)
class Snapshot:
    counters: dict[CounterName, int]  # every counter, in `COUNTERS` order
    in_flight: int
    handler_seconds: Histogram
    lag_seconds: Histogram  # from EnqueueTime to handler start


class Stats:
    """Exactly the counters of `COUNTERS`, each from 0, plus in-flight and two histograms."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters = dict.fromkeys((c.name for c in COUNTERS), 0)
        self._in_flight = 0
        self._handler = Histogram()
        self._lag = Histogram()

    def incr(self, name: CounterName, amount: int = 1) -> None:
        with self._lock:
            self._counters[name] += amount

    def set_in_flight(self, value: int) -> None:
        self._in_flight = value  # a single assignment: no lock needed

    def observe_handler(self, seconds: float) -> None:
        with self._lock:
            self._handler.observe(seconds)

    def observe_lag(self, seconds: float) -> None:
        with self._lock:
            self._lag.observe(max(seconds, 0.0))

    def get(self, name: CounterName) -> int:
        with self._lock:
            return self._counters[name]

    def snapshot(self) -> Snapshot:
        with self._lock:
            return Snapshot(
                counters=dict(self._counters),
                in_flight=self._in_flight,
                handler_seconds=Histogram(
                    list(self._handler.counts), *self._scalars(self._handler)
                ),
                lag_seconds=Histogram(list(self._lag.counts), *self._scalars(self._lag)),
            )

    @staticmethod
    def _scalars(histogram: Histogram) -> tuple[float, int]:
        return histogram.total, histogram.count
