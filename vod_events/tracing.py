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

Besides the hooks, two helpers for code that runs inside a delivery: `inject_headers` (the
W3C `traceparent` of the current span, for an outgoing HTTP request: the `http` handler) and
`current_ids` (the current trace and span ids, for log lines). Both are no-ops that import
nothing until a tracer is turned on (`enable`, done by `vod_events.tracing_otel`); `shutdown`
flushes and stops what `enable` installed, at the daemon's stop.
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


class Backend(Protocol):
    """What a tracing implementation offers besides the hooks: propagation, the current
    ids and its end. Installed process-wide with `enable` (OpenTelemetry's own context and
    tracer provider are process-wide too)."""

    def inject(self, headers: dict[str, str]) -> None:
        """Add the current context's propagation headers (W3C `traceparent`) to `headers`."""

    def current_ids(self) -> tuple[str, str] | None:
        """The current span's (trace id, span id) in lowercase hex; None if there is none."""

    def shutdown(self, timeout: float) -> None:
        """Export what is buffered (within `timeout` s) and stop exporting."""


_backend: Backend | None = None


def enable(backend: Backend | None) -> None:
    """Install `backend` for `inject_headers`, `current_ids` and `shutdown` (None: off)."""
    global _backend  # noqa: PLW0603 - one per process, like OpenTelemetry's own globals
    _backend = backend


def enabled() -> bool:
    """Whether a tracing backend is installed."""
    return _backend is not None


def inject_headers(headers: dict[str, str]) -> None:
    """Add the W3C `traceparent` (and `tracestate`) of the current span to `headers`, so the
    receiver's spans join the delivery's trace. Nothing when tracing is off."""
    if _backend is not None:
        _backend.inject(headers)


def current_ids() -> tuple[str, str] | None:
    """The current (trace id, span id), 32 and 16 lowercase hex digits; None when tracing is
    off or no span is current."""
    return None if _backend is None else _backend.current_ids()


def shutdown(timeout: float = 5.0) -> None:
    """Export the spans still buffered (waiting at most `timeout` s) and stop tracing. Called
    once at the daemon's stop; nothing when tracing is off."""
    backend = _backend
    enable(None)
    if backend is not None:
        backend.shutdown(timeout)
