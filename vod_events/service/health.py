"""Liveness and readiness of a running `Consumer`: one verdict for every watcher.

The ops endpoint's `/healthz` and `/readyz` and the systemd watchdog all ask this module, so
"healthy" means the same thing everywhere (docs/design.md rules 10 and 14).

- Live: no thread died, every thread is running (until shutdown, when threads end on
  purpose), no thread is stuck in a call, the heartbeat and the deleters keep moving, and a
  poller completed a receive recently. A stuck heartbeat or deleter thus restarts the
  process (watchdog, liveness probe) instead of letting messages lapse or pile up while
  health says ok.
  - A call (to the queue or the store) is stuck when it has run longer than any timeout
    could explain: `call_bound` (an extension, a delete, a hand back, a claim renewal; a
    receive gets `wait_seconds` more, its long poll). The transport's timeouts end a call
    long before that; this catches what they cannot (a DNS lookup, a peer trickling bytes,
    a store without a timeout).
  - Moving: no extension more than `call_bound` late (a failed one is due again at once,
    so only a heartbeat that stopped or cannot keep up falls behind), no message waiting
    longer than that for a deleter.
  - A receive returns after at most `wait_seconds` (the long poll), so a poller that has
    not finished one for `wait_seconds` plus a margin is stuck or failing. Pollers that wait
    because every in-flight slot is taken are busy, not stuck: while the consumer is
    saturated the clock does not run (a stuck deleter or heartbeat is caught above).
- Ready: started, connected (a first receive succeeded), the queue answering (the latest
  receive did not fail: the reason says which endpoint and what failed) and not shutting
  down.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from vod_events.consumer import Consumer

# Slack on top of the long poll before a poller counts as stuck: covers network latency and
# the receive error backoff (capped at 30 s by the consumer).
POLL_MARGIN_SECONDS = 30.0
# Longest any other call to the queue or the store may run: several times the transport's
# timeout (10 s per socket operation), a fraction of WatchdogSec (90 s).
CALL_BOUND_SECONDS = 45.0
STORE_CHECK_SECONDS = 2.0  # how often readiness asks the idempotency store


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
        call_bound: float = CALL_BOUND_SECONDS,
    ) -> None:
        self.consumer = consumer
        # Longest time without a completed receive before a poller counts as stuck.
        self.poll_bound = (
            poll_bound
            if poll_bound is not None
            else consumer.settings.wait_seconds + POLL_MARGIN_SECONDS
        )
        # Longest any other queue or store call may run before its thread counts as stuck.
        self.call_bound = call_bound
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._saturated_seen = float("-inf")  # clock() when all slots were last seen taken
        # The idempotency store's last health check (stores with `ping`: PostgreSQL), cached
        # so that probes every second do not each cost the database a round trip.
        self._store_checked = float("-inf")
        self._store_error: str | None = None

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
        if stuck := self._stuck_call():
            return Verdict(False, stuck)
        bound = self.call_bound
        if (late := consumer.extension_lateness()) > bound:
            return Verdict(
                False, f"heartbeat: an extension is {late:.1f} s late (limit {bound:g} s)"
            )
        if (waited := consumer.delete_wait()) > bound:
            return Verdict(
                False, f"deleters: a delete has waited {waited:.1f} s (limit {bound:g} s)"
            )
        idle = self._seconds_since_progress()
        if idle > self.poll_bound:
            return Verdict(
                False, f"no receive completed for {idle:.1f} s (limit {self.poll_bound:g} s)"
            )
        return Verdict(True, "ok")

    def readiness(self) -> Verdict:
        """Should this replica count as serving? Started, connected, the queue answering,
        and not stopping. When not, the reason says why (which endpoint, what failed)."""
        consumer = self.consumer
        if consumer.stopping.is_set() or consumer.stop_requested:
            return Verdict(False, "shutting down")
        if not self.started:
            return Verdict(False, "starting")
        if (failing := consumer.queue_error) is not None:
            for_s = time.monotonic() - failing.since
            return Verdict(
                False,
                f"queue {consumer.queue_name!r} at {failing.endpoint} failing for "
                f"{for_s:.0f} s: {failing.error}",
            )
        if not self.connected:
            return Verdict(False, "not connected: no receive has succeeded yet")
        if (store_error := self._store_unavailable()) is not None:
            return Verdict(False, store_error)
        return Verdict(True, "ok")

    def _store_unavailable(self) -> str | None:
        """Why the idempotency store cannot serve claims, or None. Every delivery would be
        handed back meanwhile (never lost), so the replica is not ready. Checked at most
        every STORE_CHECK_SECONDS; the reason names the store, never its password."""
        ping = getattr(self.consumer.processor.store, "ping", None)
        if not callable(ping):
            return None
        now = time.monotonic()
        with self._lock:
            if now - self._store_checked < STORE_CHECK_SECONDS:
                return self._store_error
            self._store_checked = now  # one probe at a time asks the store
        try:
            ping(timeout=1.0)
            error = None
        except Exception as exc:
            error = f"idempotency store unavailable: {exc}"
        with self._lock:
            self._store_error = error
        return error

    def _stuck_call(self) -> str | None:
        """Why a thread counts as stuck in a call, or None."""
        now = time.monotonic()
        for call in self.consumer.calls.running():
            bound = self.call_bound
            if call.what == "receive":
                bound += self.consumer.settings.wait_seconds
            if (running := now - call.started) > bound:
                thread = call.thread.removeprefix("vod-events-")
                return (
                    f"{thread}: {call.what} has not returned for {running:.1f} s "
                    f"(limit {bound:g} s)"
                )
        return None

    def _seconds_since_progress(self) -> float:
        """Seconds since a poller last completed a receive or was idle only for lack of slots."""
        now = time.monotonic()  # the clock of Consumer.last_poll
        consumer = self.consumer
        capacity = consumer.settings.workers + consumer.settings.prefetch
        with self._lock:
            if consumer.active >= capacity:
                self._saturated_seen = now
            return now - max(consumer.last_poll, self._saturated_seen)
