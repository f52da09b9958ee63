"""Two-phase stop on SIGTERM / SIGINT, the same for every long-running command.

The first signal asks for a graceful stop (running handlers finish, pending deletes are
sent). A second one means the operator will not wait: the process exits at once with
128 + the signal number; messages still in flight return to the queue when their visibility
lapses, and claims held expire.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from types import FrameType

import structlog

log = structlog.get_logger("vod_events.signals")


def stop_on_signals(stop: Callable[[], None]) -> None:
    """Call `stop` on the first SIGTERM/SIGINT; exit immediately on the second."""
    received: list[str] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if received:
            log.warning("second signal: exiting now", signal=name)
            os._exit(128 + signum)
        received.append(name)
        log.info("signal received: stopping gracefully", signal=name)
        stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
