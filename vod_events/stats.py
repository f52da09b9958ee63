"""The consumer's counters and timings, in one place.

Plain integers and floats behind one lock: cheap on the hot path, and a snapshot is
consistent. The metrics endpoint (Prometheus), the systemd STATUS= line and the benchmarks
all read `Stats.snapshot()`; nothing else holds counts.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

# Counter names, in the order they are reported. Each is a monotonically increasing total.
COUNTERS = (
    "received",  # deliveries taken from the queue
    "handled",  # deliveries whose handlers all succeeded
    "retried",  # handler calls that failed and were retried in process
    "failed",  # deliveries handed back to the queue for a later retry
    "deleted",  # messages deleted from the queue
    "delete_failures",  # handles a delete could not act on (already gone)
    "unhandled",  # events no handler was registered for (deleted)
    "duplicates",  # deliveries skipped because the idempotency store says done
    "dead_lettered",  # messages moved to the dead-letter target
    "released",  # unstarted messages handed back at shutdown
    "extended",  # visibility extensions by the heartbeat
    "poll_errors",  # failed receive calls (network, 5xx)
    "empty_polls",  # receives that returned nothing
    "callbacks_rejected",  # HTTP callbacks refused: bad signature, too large, too many at once
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
    counters: dict[str, int]
    in_flight: int
    handler_seconds: Histogram
    lag_seconds: Histogram  # from EnqueueTime to handler start


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters = dict.fromkeys(COUNTERS, 0)
        self._in_flight = 0
        self._handler = Histogram()
        self._lag = Histogram()

    def incr(self, name: str, amount: int = 1) -> None:
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

    def get(self, name: str) -> int:
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
