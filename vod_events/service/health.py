"""Liveness and readiness of a running `Consumer`: one verdict for every watcher.

The ops endpoint's `/healthz` and `/readyz` and the systemd watchdog all ask this module, so
"healthy" means the same thing everywhere.

- Live: no thread died, every thread is running (until shutdown, when threads end on
  purpose), and a poller completed a receive recently. A receive returns after at most
  `wait_seconds` (the long poll), so a poller that has not finished one for `wait_seconds`
  plus a margin is stuck. Pollers that wait because every in-flight slot is taken are busy,
  not stuck: while the consumer is saturated the clock does not run.
- Ready: started, connected (a first receive succeeded) and not shutting down.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from vod_events.consumer import Consumer

# Slack on top of the long poll before a poller counts as stuck: covers network latency and
# the receive error backoff (capped at 30 s by the consumer).
POLL_MARGIN_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """An answer to "live?" or "ready?", with the reason in words for humans and probes."""

    ok: bool
    reason: str


class Health:
    """Judges one consumer. Thread-safe; cheap enough to call on every probe."""

    def __init__(
        self,
        consumer: Consumer,
        *,
        poll_bound: float | None = None,
    ) -> None:
        self.consumer = consumer
        # Longest time without a completed receive before a poller counts as stuck.
        self.poll_bound = (
            poll_bound
            if poll_bound is not None
            else consumer.settings.wait_seconds + POLL_MARGIN_SECONDS
        )
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._saturated_seen = float("-inf")  # clock() when all slots were last seen taken

    def mark_connected(self) -> None:
        """Record the first successful receive (wire this to `Consumer.on_ready`)."""
        self._connected.set()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def started(self) -> bool:
        return bool(self.consumer.threads)

    def liveness(self) -> Verdict:
        """Is the process doing its job? A failing answer means: restart it."""
        consumer = self.consumer
        if consumer.crashed:
            return Verdict(False, f"thread died: {', '.join(consumer.crashed)}")
        if consumer.stopping.is_set():
            return Verdict(True, "shutting down")  # threads end on purpose now
        if not self.started:
            return Verdict(True, "starting")
        dead = [t.name for t in consumer.threads if not t.is_alive()]
        if dead:
            return Verdict(False, f"thread not running: {', '.join(dead)}")
        idle = self._seconds_since_progress()
        if idle > self.poll_bound:
            return Verdict(
                False, f"no receive completed for {idle:.1f} s (limit {self.poll_bound:g} s)"
            )
        return Verdict(True, "ok")

    def readiness(self) -> Verdict:
        """Should this replica count as serving? Started, connected and not stopping."""
        if self.consumer.stopping.is_set() or self.consumer.stop_requested:
            return Verdict(False, "shutting down")
        if not self.started:
            return Verdict(False, "starting")
        if not self.connected:
            return Verdict(False, "not connected: no receive has succeeded yet")
        return Verdict(True, "ok")

    def _seconds_since_progress(self) -> float:
        """Seconds since a poller last completed a receive or was idle only for lack of slots."""
        now = time.monotonic()  # the clock of Consumer.last_poll
        consumer = self.consumer
        capacity = consumer.settings.workers + consumer.settings.prefetch
        with self._lock:
            if consumer.active >= capacity:
                self._saturated_seen = now
            return now - max(consumer.last_poll, self._saturated_seen)
