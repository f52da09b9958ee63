"""The systemd notify protocol, and the reporter that tells systemd how the consumer is doing.

Protocol: newline-separated `KEY=VALUE` assignments in one datagram, sent to the unix
datagram socket named by `$NOTIFY_SOCKET` (a path, or `@name` for an abstract socket).
Without `$NOTIFY_SOCKET` (not run by systemd with `Type=notify`) every call does nothing.

`ServiceReporter` speaks it for a `Consumer` (unit `Type=notify`, `WatchdogSec=`):
- `READY=1` after the first successful receive (wire `ready()` to `Consumer.on_ready`);
- `STATUS=` with the counts, every `status_interval` seconds;
- `STOPPING=1` as soon as the consumer starts shutting down;
- `WATCHDOG=1` every half `$WATCHDOG_USEC`, only while `Health.liveness()` is ok, so a
  stuck or crashed consumer is restarted by systemd: a dead thread, pollers that stopped
  completing receives, or any thread stuck in a queue or store call (a heartbeat or a
  deleter that stopped moving); the STATUS= line then starts with the reason.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Mapping

import structlog

from vod_events.consumer import Consumer
from vod_events.service.health import Health

log = structlog.get_logger("vod_events.service.sdnotify")

TICK_SECONDS = 0.25  # how often the reporter looks at the consumer


class Notifier:
    """Sends notify messages to `$NOTIFY_SOCKET`; a no-op when it is unset."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(env)
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send `KEY=VALUE` lines as one datagram; False if disabled or the send failed."""
        if self.address is None:
            return False
        data = "\n".join(assignments).encode()
        with self._lock:
            try:
                if self._socket is None:
                    self._socket = socket.socket(
                        socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                    )
                self._socket.sendto(data, self.address)
            except OSError as exc:
                # systemd gone or the socket not ours: the service must run on regardless.
                log.warning("sd_notify failed", error=str(exc))
                return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def stopping(self, status: str = "") -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def _socket_address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # Linux abstract namespace
    if value.startswith("/"):
        return value
    if value:  # e.g. vsock: addresses (VMs), which a service next to its host never gets
        log.warning("NOTIFY_SOCKET not understood; systemd notifications are off", value=value)
    return None


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of `$WATCHDOG_USEC`, if meant for this process."""
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # set for a parent process, inherited by us
    return int(usec) / 1_000_000 / 2


def status_line(consumer: Consumer) -> str:
    """The one-line summary shown by `systemctl status`."""
    snapshot = consumer.stats.snapshot()
    c = snapshot.counters
    return (
        f"queue {consumer.queue_name}: received {c['received']}, handled {c['handled']}, "
        f"deleted {c['deleted']}, failed {c['failed']}, dead-lettered {c['dead_lettered']}, "
        f"in flight {snapshot.in_flight}"
    )


class ServiceReporter:
    """A background thread reporting a consumer's state to systemd. See the module docstring."""

    def __init__(
        self,
        consumer: Consumer,
        health: Health,
        notifier: Notifier | None = None,
        *,
        status_interval: float = 10.0,
    ) -> None:
        self.consumer = consumer
        self.health = health
        self.notifier = notifier or Notifier()
        self.status_interval = status_interval
        self._closed = threading.Event()
        self._stopping_sent = False
        self._thread = threading.Thread(target=self._loop, name="vod-events-sdnotify", daemon=True)

    def start(self) -> ServiceReporter:
        if self.notifier.enabled:
            self._thread.start()
        return self

    def ready(self) -> None:
        """The first receive succeeded: the service is up."""
        self.health.mark_connected()
        self.notifier.ready(status_line(self.consumer))

    def close(self) -> None:
        """Stop reporting; make sure systemd heard STOPPING=1 (also when the start failed)."""
        self._closed.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)
        if not self._stopping_sent:
            self._send_stopping()
        self.notifier.close()

    def _send_stopping(self) -> None:
        self._stopping_sent = True
        self.notifier.stopping(f"stopping; {status_line(self.consumer)}")

    def _prefix(self) -> str:
        """What `systemctl status` shows before the counts: stopping, or why unhealthy."""
        if self._stopping_sent:
            return "stopping; "
        verdict = self.health.liveness()
        return "" if verdict.ok else f"unhealthy: {verdict.reason}; "

    def _loop(self) -> None:
        watchdog = self.notifier.watchdog_interval
        next_status = time.monotonic() + self.status_interval
        next_ping = time.monotonic()  # at once: the watchdog interval started at exec
        while not self._closed.is_set():
            if not self._stopping_sent and self.consumer.stopping.is_set():
                self._send_stopping()
            now = time.monotonic()
            if now >= next_status:
                if self.health.connected or self._stopping_sent:
                    self.notifier.status(self._prefix() + status_line(self.consumer))
                next_status = now + self.status_interval
            if watchdog is not None and now >= next_ping:
                verdict = self.health.liveness()
                if verdict.ok:
                    self.notifier.watchdog()
                else:
                    # No ping: systemd restarts us when WatchdogSec runs out.
                    log.error("unhealthy: withholding the watchdog ping", reason=verdict.reason)
                next_ping = now + watchdog
            # A short tick so STOPPING=1 follows the start of a shutdown closely.
            self._closed.wait(TICK_SECONDS)
