"""Tracing hooks: what the processor tells a tracer about each delivery.

The processor calls these hooks whether tracing is on or not; `NO_TRACING`, the default,
makes every one of them a no-op that imports nothing. OpenTelemetry (the `otel` extra,
`[tracing] enabled = true`) plugs in behind the same `Tracer` protocol.

Per delivery (a queue message or an HTTP callback):

    delivery = tracer.delivery(source, message)      # starts the delivery's span
    delivery.event(event)                            # once decoded: vod.* attributes
    with delivery.activate(): ...                    # around each step on a worker thread
    with delivery.handler(name): ...                 # around each handler call, sync or async
    delivery.end(status, error)                      # exactly once, with the outcome

A delivery may move between threads (an async handler's result is picked up by whichever
worker is free), so `activate` makes its span current only for the `with` block, on the
thread running it; `handler` makes the handler's span current inside the block, which works
inside a coroutine too (context is per task).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from vod_events.events import VodEvent
    from vod_events.transports import ReceivedMessage


class Delivery(Protocol):
    """The trace of one delivery, from receipt to its outcome."""

    def event(self, event: VodEvent) -> None:
        """The delivery decoded to `event`."""

    def activate(self) -> contextlib.AbstractContextManager[None]:
        """Make the delivery's span current on this thread for the block (logs, children)."""

    def handler(self, name: str) -> contextlib.AbstractContextManager[None]:
        """A child span for one handler call, current inside the block; an exception that
        leaves the block is recorded on it (and re-raised)."""

    def end(self, status: str, error: str = "") -> None:
        """The delivery's outcome (an `OutcomeStatus` value) and, if it failed, why."""


class Tracer(Protocol):
    """Starts the trace of each delivery."""

    def delivery(self, source: str, message: ReceivedMessage) -> Delivery:
        """source: the queue name, or "http-callback"."""


class _NoDelivery:
    __slots__ = ()

    def event(self, event: VodEvent) -> None:
        pass

    def activate(self) -> contextlib.AbstractContextManager[None]:
        return _NOTHING

    def handler(self, name: str) -> contextlib.AbstractContextManager[None]:
        return _NOTHING

    def end(self, status: str, error: str = "") -> None:
        pass


class _NoTracer:
    __slots__ = ()

    def delivery(self, source: str, message: ReceivedMessage) -> Delivery:
        return _NO_DELIVERY


_NOTHING: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
_NO_DELIVERY = _NoDelivery()
NO_TRACING: Tracer = _NoTracer()
