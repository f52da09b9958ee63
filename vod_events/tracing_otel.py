"""OpenTelemetry behind the `tracing.Tracer` hooks (the `otel` extra, `[tracing] enabled`).

Imported only when tracing is on: `import vod_events.tracing_otel` imports the SDK.

Per delivery, one span of kind CONSUMER named `process <source>` (`process <queue>`, or
`process http-callback`), a root (a message carries no trace context), with the messaging
attributes of the OpenTelemetry semantic conventions and the event's:

    messaging.system             "alibaba_mns" (an HTTP callback: "alibaba_vod_callback")
    messaging.destination.name   the queue, or "http-callback"
    messaging.operation.type     "process"
    messaging.message.id         the MNS MessageId (a callback: the id the server gave it)
    vod.dequeue_count            the message's DequeueCount
    vod.event_type, vod.media_id, vod.job_id   once decoded (an id the event lacks: absent)
    vod.outcome                  handled, unhandled, duplicate, retry, deferred, dead_lettered

A failed delivery (retry, dead_lettered) has status ERROR with the reason. Each handler call
(each try: a retried handler has one span per try) is a child span `handle <name>` with
`vod.handler`, whose exceptions are recorded (status ERROR).

The exporter comes from the standard variables: `OTEL_TRACES_EXPORTER` (`otlp`, the default,
over HTTP/protobuf; `console`; `none`; or several, comma-separated), `OTEL_EXPORTER_OTLP_*`
(endpoint, headers, timeout...), `OTEL_SERVICE_NAME` (default "vod-events"),
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*` and `OTEL_PROPAGATORS`.
Spans are exported in batches by a background thread; `tracing.shutdown()` sends the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
)
from opentelemetry.trace import SpanKind, Status, StatusCode

from vod_events import tracing
from vod_events.errors import ConfigError

if TYPE_CHECKING:
    from vod_events.events import VodEvent
    from vod_events.transports import ReceivedMessage

DEFAULT_SERVICE_NAME = "vod-events"
CALLBACK_SOURCE = "http-callback"  # the processor's source for HTTP callbacks
MESSAGING_SYSTEM = "alibaba_mns"
CALLBACK_SYSTEM = "alibaba_vod_callback"
FAILED = frozenset({"retry", "dead_lettered"})  # outcomes whose span status is ERROR
EXPORTERS = ("otlp", "console", "none")
OTLP_PROTOCOL = "http/protobuf"  # the only one the extra ships an exporter for
SCOPE = "vod_events"

_lock = threading.Lock()
_process: OtelTracer | None = None  # see `process_tracer`


class OtelTracer:
    """Starts one span per delivery on `provider`'s tracer. Thread-safe."""

    def __init__(self, provider: trace.TracerProvider) -> None:
        self.provider = provider
        self._tracer = provider.get_tracer(SCOPE, _version())

    def delivery(self, source: str, message: ReceivedMessage) -> tracing.Delivery:
        span = self._tracer.start_span(
            f"process {source}",
            context=Context(),  # a root: not a child of whatever the receiving thread runs
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": CALLBACK_SYSTEM
                if source == CALLBACK_SOURCE
                else MESSAGING_SYSTEM,
                "messaging.destination.name": source,
                "messaging.operation.type": "process",
                "messaging.message.id": message.message_id,
                "vod.dequeue_count": message.dequeue_count,
            },
        )
        return OtelDelivery(self._tracer, span)


class OtelDelivery:
    """The span of one delivery and its handlers' child spans."""

    __slots__ = ("_ended", "_parent", "_span", "_tracer")

    def __init__(self, tracer: trace.Tracer, span: trace.Span) -> None:
        self._tracer = tracer
        self._span = span
        self._parent = trace.set_span_in_context(span, Context())
        self._ended = False

    @property
    def span(self) -> trace.Span:
        return self._span

    def event(self, event: VodEvent) -> None:
        attributes = {
            "vod.event_type": event.event_type,
            "vod.media_id": event.media_id,
            "vod.job_id": event.job_id,
        }
        self._span.set_attributes({k: v for k, v in attributes.items() if v})

    def activate(self) -> contextlib.AbstractContextManager[None]:
        return _current(self._span, end=False)

    def handler(self, name: str) -> contextlib.AbstractContextManager[None]:
        span = self._tracer.start_span(
            f"handle {name}",
            context=self._parent,  # explicit: the handler may run on another thread or task
            kind=SpanKind.INTERNAL,
            attributes={"vod.handler": name},
        )
        return _current(span, end=True)

    def end(self, status: str, error: str = "") -> None:
        if self._ended:  # the protocol says once; a second call must not end it twice
            return
        self._ended = True
        self._span.set_attribute("vod.outcome", str(status))
        if str(status) in FAILED:
            self._span.set_status(Status(StatusCode.ERROR, error or str(status)))
        self._span.end()


@contextlib.contextmanager
def _current(span: trace.Span, *, end: bool) -> Iterator[None]:
    """`span` current for the block; with `end`, an exception leaving the block is recorded
    on it (status ERROR; a cancelled coroutine too) and the span ends with the block."""
    with trace.use_span(span, end_on_exit=end, record_exception=end, set_status_on_exception=end):
        try:
            yield
        except asyncio.CancelledError:  # not an Exception: use_span would not say
            if end:
                span.set_status(Status(StatusCode.ERROR, "cancelled"))
            raise


class OtelBackend:
    """`tracing.Backend` for OpenTelemetry: propagation through the global propagator (W3C
    trace context and baggage unless OTEL_PROPAGATORS says otherwise), ids from the current
    context, and the end of `provider` (None: a provider this process does not own)."""

    def __init__(self, provider: TracerProvider | None) -> None:
        self.provider = provider

    def inject(self, headers: dict[str, str]) -> None:
        propagate.inject(headers)

    def current_ids(self) -> tuple[str, str] | None:
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return trace.format_trace_id(context.trace_id), trace.format_span_id(context.span_id)

    def shutdown(self, timeout: float) -> None:
        if self.provider is None:
            return
        self.provider.force_flush(int(timeout * 1000))
        self.provider.shutdown()


def process_tracer() -> OtelTracer:
    """The process's tracer, made at the first call from the `OTEL_*` variables: a
    TracerProvider with the exporters of `OTEL_TRACES_EXPORTER` behind a batch processor,
    made the global provider (so spans a handler starts with the OpenTelemetry API join the
    delivery's trace) unless one was set already, and installed for `tracing.inject_headers`,
    `tracing.current_ids` and `tracing.shutdown`. Every later call returns the same tracer,
    until `tracing.shutdown()`.

    Raises ConfigError naming the variable when an `OTEL_*` value is not supported.
    """
    global _process  # noqa: PLW0603 - one provider per process, as OpenTelemetry's global
    with _lock:
        if _process is not None and tracing.enabled():
            return _process
        provider = make_provider(os.environ)
        if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            trace.set_tracer_provider(provider)  # nobody set one: ours is everyone's
        _process = OtelTracer(provider)
        tracing.enable(OtelBackend(provider))
        return _process


def make_provider(environ: Mapping[str, str]) -> TracerProvider:
    """A TracerProvider named by `OTEL_SERVICE_NAME` (default "vod-events"), exporting to
    `OTEL_TRACES_EXPORTER`'s exporters through batch processors. Raises ConfigError."""
    provider = TracerProvider(resource=resource())
    for exporter in exporters(environ):
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def resource() -> Resource:
    """service.name "vod-events" and our version, under what `OTEL_SERVICE_NAME` and
    `OTEL_RESOURCE_ATTRIBUTES` say (they win)."""
    ours = Resource.create({"service.name": DEFAULT_SERVICE_NAME, "service.version": _version()})
    return ours.merge(OTELResourceDetector().detect())


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The exporters `OTEL_TRACES_EXPORTER` names (default otlp), checked: "none" alone
    means none; OTLP must be over HTTP/protobuf. Raises ConfigError naming the variable."""
    text = environ.get("OTEL_TRACES_EXPORTER", "").strip() or "otlp"
    names = list(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in EXPORTERS]
    if unknown or not names:
        raise ConfigError(
            f"must be one of {', '.join(EXPORTERS)} (or several, comma-separated), got {text!r}",
            path="environment variable OTEL_TRACES_EXPORTER",
        )
    if "none" in names:
        return []
    if "otlp" in names:
        for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = environ.get(variable, "").strip()
            if protocol:
                if protocol.lower() != OTLP_PROTOCOL:
                    raise ConfigError(
                        f"vod-events[otel] exports OTLP over {OTLP_PROTOCOL} only, got "
                        f"{protocol!r}: unset it, or set {OTLP_PROTOCOL} and a collector's "
                        "HTTP port (4318)",
                        path=f"environment variable {variable}",
                    )
                break
    return names


def exporters(environ: Mapping[str, str]) -> list[SpanExporter]:
    """The exporters of `exporter_names`. Raises ConfigError; ImportError when the OTLP
    exporter is chosen and not installed."""
    made: list[SpanExporter] = []
    for name in exporter_names(environ):
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            # Endpoint, headers, timeout, compression, certificates: OTEL_EXPORTER_OTLP_*.
            made.append(OTLPSpanExporter())
        else:
            made.append(ConsoleSpanExporter())
    return made


def otlp_endpoint(environ: Mapping[str, str]) -> str:
    """Where the OTLP exporter sends spans, as it works it out from the variables."""
    traces = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or "http://localhost:4318"
    return base.rstrip("/") + "/v1/traces"


def _version() -> str:
    try:
        return importlib.metadata.version("vod-events")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
