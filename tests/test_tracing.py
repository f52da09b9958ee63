"""Tracing: OpenTelemetry spans per delivery and handler, captured with the SDK's in-memory
exporter through a real Processor, the real consumer and the callback server; the `http`
handler's traceparent; trace ids in JSON logs; the console exporter in a real daemon; and,
with tracing off, OpenTelemetry never imported."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helpers
import pytest
import structlog
from callback_client import Receiver, callback_config
from helpers import QUEUE, event_body, received, wait_for
from http_app import App, serve
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from service_process import Daemon

from vod_events import tracing
from vod_events.cli.doctor import Status, check_tracing
from vod_events.config import Config, from_dict
from vod_events.config.schema import TracingSection
from vod_events.deadletter import DirectorySink
from vod_events.errors import ConfigError, PermanentError
from vod_events.events import VodEvent
from vod_events.handlers import HttpHandler
from vod_events.mns_server import LocalMNSServer
from vod_events.processing import Processor
from vod_events.retry import RetryPolicy
from vod_events.router import HandlerContext, Router
from vod_events.service import logs
from vod_events.service.assemble import build_consumer, build_tracer
from vod_events.service.http_callbacks import build_callback_server
from vod_events.tracing_otel import (
    OtelBackend,
    OtelTracer,
    exporter_names,
    otlp_endpoint,
    process_tracer,
    resource,
)
from vod_events.transports import ReceivedMessage
from vod_events.transports.memory import MemoryBroker, MemoryTransport
from vod_events.transports.mns import MNSTransport

ROOT = Path(__file__).resolve().parent.parent
FAST = RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.02)


@dataclass
class Traced:
    """A tracer whose spans end up in memory, as soon as they end."""

    tracer: OtelTracer
    exporter: InMemorySpanExporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.name == name]


@pytest.fixture
def traced() -> Iterator[Traced]:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(OtelBackend(None))  # inject_headers and current_ids, as the daemon's
    yield Traced(OtelTracer(provider), exporter)
    tracing.enable(None)
    provider.shutdown()


@pytest.fixture
def process_spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """The process's tracer (what `[tracing] enabled` builds) exporting to memory too."""
    tracing.shutdown()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    exporter = InMemorySpanExporter()
    provider = process_tracer().provider
    assert isinstance(provider, TracerProvider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    tracing.shutdown()


def message(job: str = "job-1", body: str | None = None, dequeue_count: int = 2) -> ReceivedMessage:
    return received(job, body, dequeue_count)


def processor(router: Router, tracer: tracing.Tracer, tmp_path: Path, **kwargs: Any) -> Processor:
    return helpers.processor(
        router,
        dead_letters=DirectorySink(tmp_path / "dead-letters"),
        retry=FAST,
        tracer=tracer,
        **kwargs,
    )


def children(spans: list[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]


def config_with_tracing(tmp_path: Path, **sections: Any) -> Config:
    return from_dict(
        {
            "mns": {"endpoint": "http://127.0.0.1:9"},
            "tracing": {"enabled": True},
            "dedupe": {"backend": "memory"},
            "dead_letter": {"dir": str(tmp_path / "dead-letters")},
            "retry": {"attempts": 2, "initial_wait": 0.01, "max_wait": 0.01},
            **sections,
        },
        "test.toml",
        {},
    )


# ------------------------------------------------------------------ off: nothing


OFF_SCRIPT = """
import sys, threading
from vod_events import tracing
from vod_events.config import from_dict
from vod_events.service import logs
from vod_events.service.assemble import build_processor
from vod_events.transports import ReceivedMessage
from vod_events.transports.memory import MemoryBroker, MemoryTransport
import vod_events.cli.consume, vod_events.handlers  # what the daemon loads

logs.configure("info", "json", tracing=False)
config = from_dict({"mns": {"endpoint": "http://127.0.0.1:9"},
                    "dedupe": {"backend": "memory"},
                    "dead_letter": {"dir": sys.argv[1]},
                    "handlers": [{"type": "log"}]}, "t.toml", {})
broker = MemoryBroker()
processor = build_processor(config, lambda name: MemoryTransport(broker, name))
assert processor.tracer is tracing.NO_TRACING
body = '{"EventType": "FileUploadComplete", "VideoId": "v", "Status": "success"}'
outcome = processor.process(ReceivedMessage("m", "h", body, 1, 0, 0, 0))
headers = {}
tracing.inject_headers(headers)
tracing.shutdown()
print(outcome.status, headers, tracing.current_ids(),
      sorted(m for m in sys.modules if m.split(".")[0] == "opentelemetry"
             or m == "vod_events.tracing_otel"))
"""


def test_with_tracing_off_opentelemetry_is_never_imported(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", OFF_SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "handled {} None []"


def test_the_no_op_helpers_do_nothing() -> None:
    headers = {"a": "b"}
    tracing.inject_headers(headers)
    assert headers == {"a": "b"}
    assert tracing.current_ids() is None
    assert not tracing.enabled()
    tracing.shutdown()  # nothing to end


# ------------------------------------------------------------------ spans through a Processor


def test_a_delivery_is_one_consumer_span_with_a_child_per_handler(
    traced: Traced, tmp_path: Path
) -> None:
    router = Router()
    router.add(lambda event, ctx: None, name="first")
    router.add(lambda event, ctx: None, name="second")

    outcome = processor(router, traced.tracer, tmp_path).process(message("job-1"))

    assert outcome.status == "handled"
    [delivery] = traced.named(f"process {QUEUE}")
    assert delivery.kind is SpanKind.CONSUMER
    assert delivery.parent is None  # a root
    assert dict(delivery.attributes or {}) == {
        "messaging.system": "alibaba_mns",
        "messaging.destination.name": QUEUE,
        "messaging.operation.type": "process",
        "messaging.message.id": "id-job-1",
        "vod.dequeue_count": 2,
        "vod.event_type": "AIVideoTagComplete",
        "vod.media_id": "media-job-1",
        "vod.job_id": "job-1",
        "vod.outcome": "handled",
    }
    assert delivery.status.status_code is StatusCode.UNSET
    handlers = children(traced.spans(), delivery)
    assert [s.name for s in handlers] == ["handle first", "handle second"]
    assert all(s.kind is SpanKind.INTERNAL for s in handlers)
    assert [dict(s.attributes or {}) for s in handlers] == [
        {"vod.handler": "first"},
        {"vod.handler": "second"},
    ]
    assert {s.context.trace_id for s in handlers} == {delivery.context.trace_id}
    assert len(traced.spans()) == 3


def test_a_failing_handler_has_its_exception_on_each_try_and_the_delivery_is_retry(
    traced: Traced, tmp_path: Path
) -> None:
    router = Router()

    @router.on(name="flaky")
    def flaky(event: VodEvent, ctx: HandlerContext) -> None:
        raise RuntimeError("the database is down")

    outcome = processor(router, traced.tracer, tmp_path).process(message())

    assert outcome.status == "retry"
    [delivery] = traced.named(f"process {QUEUE}")
    assert (delivery.attributes or {})["vod.outcome"] == "retry"
    assert delivery.status.status_code is StatusCode.ERROR
    assert "the database is down" in (delivery.status.description or "")
    tries = children(traced.spans(), delivery)
    assert [s.name for s in tries] == ["handle flaky", "handle flaky"]  # attempts = 2
    for span in tries:
        assert span.status.status_code is StatusCode.ERROR
        [exception] = [e for e in span.events if e.name == "exception"]
        attributes = exception.attributes or {}
        assert attributes["exception.type"] == "RuntimeError"
        assert attributes["exception.message"] == "the database is down"


def test_a_permanent_failure_is_dead_lettered(traced: Traced, tmp_path: Path) -> None:
    router = Router()

    @router.on(name="picky")
    def picky(event: VodEvent, ctx: HandlerContext) -> None:
        raise PermanentError("no such media")

    outcome = processor(router, traced.tracer, tmp_path).process(message())

    assert outcome.status == "dead_lettered"
    [delivery] = traced.named(f"process {QUEUE}")
    assert (delivery.attributes or {})["vod.outcome"] == "dead_lettered"
    assert delivery.status.status_code is StatusCode.ERROR
    [attempt] = children(traced.spans(), delivery)
    assert attempt.events[0].attributes is not None
    assert attempt.events[0].attributes["exception.type"] == "vod_events.errors.PermanentError"


def test_an_undecodable_body_is_dead_lettered_without_event_attributes(
    traced: Traced, tmp_path: Path
) -> None:
    router = Router()
    router.add(lambda event, ctx: None, name="any")

    outcome = processor(router, traced.tracer, tmp_path).process(message(body="<html>"))

    assert outcome.status == "dead_lettered"
    [delivery] = traced.spans()
    attributes = dict(delivery.attributes or {})
    assert attributes["vod.outcome"] == "dead_lettered"
    assert not any(k in attributes for k in ("vod.event_type", "vod.media_id", "vod.job_id"))
    assert delivery.status.status_code is StatusCode.ERROR


def test_a_duplicate_delivery_runs_no_handler_span(traced: Traced, tmp_path: Path) -> None:
    router = Router()
    router.add(lambda event, ctx: None, name="once")
    pipeline = processor(router, traced.tracer, tmp_path)

    first = pipeline.process(message("job-1"))
    again = pipeline.process(message("job-1"))

    assert (first.status, again.status) == ("handled", "duplicate")
    first_span, again_span = traced.named(f"process {QUEUE}")
    assert (again_span.attributes or {})["vod.outcome"] == "duplicate"
    assert again_span.status.status_code is StatusCode.UNSET
    assert len(children(traced.spans(), first_span)) == 1
    assert children(traced.spans(), again_span) == []
    assert first_span.context.trace_id != again_span.context.trace_id  # one trace each


def test_an_async_handler_span_is_a_child_of_its_delivery_and_current_inside(
    traced: Traced, tmp_path: Path
) -> None:
    router = Router()
    seen: list[tuple[int, int, str]] = []

    @router.on(name="awaits")
    async def awaits(event: VodEvent, ctx: HandlerContext) -> None:
        await asyncio.sleep(0.01)
        context = trace.get_current_span().get_span_context()
        seen.append((context.trace_id, context.span_id, threading.current_thread().name))

    pipeline = processor(router, traced.tracer, tmp_path)
    try:
        outcome = pipeline.process(message())
    finally:
        pipeline.close()

    assert outcome.status == "handled"
    [delivery] = traced.named(f"process {QUEUE}")
    [handler] = children(traced.spans(), delivery)
    assert handler.name == "handle awaits"
    [(trace_id, span_id, thread)] = seen
    assert (trace_id, span_id) == (handler.context.trace_id, handler.context.span_id)
    assert thread != threading.current_thread().name  # it ran on the loop's thread


def test_an_async_handler_that_fails_or_times_out_has_it_on_its_span(
    traced: Traced, tmp_path: Path
) -> None:
    router = Router()

    @router.on("AIVideoTagComplete", name="fails")
    async def fails(event: VodEvent, ctx: HandlerContext) -> None:
        raise ValueError("bad tag")

    @router.on("AIMediaDNAComplete", name="slow", timeout=0.05)
    async def slow(event: VodEvent, ctx: HandlerContext) -> None:
        await asyncio.sleep(5)

    pipeline = processor(router, traced.tracer, tmp_path)
    try:
        failed = pipeline.process(message("job-1"))
        dna = ReceivedMessage("id-dna", "h", event_body("job-2", "AIMediaDNAComplete"), 1, 0, 0, 0)
        timed_out = pipeline.process(dna)
    finally:
        pipeline.close()

    assert (failed.status, timed_out.status) == ("retry", "retry")
    for span in traced.named("handle fails"):
        assert span.status.status_code is StatusCode.ERROR
        assert [e.attributes["exception.type"] for e in span.events if e.attributes] == [
            "ValueError"
        ]
    cancelled = traced.named("handle slow")
    assert len(cancelled) == 2  # attempts = 2: each try cancelled at its timeout
    assert all(s.status.status_code is StatusCode.ERROR for s in cancelled)
    for span in cancelled:
        assert (span.status.description or "").startswith("HandlerTimeout: timed out after 0.05 s")
        assert [e.attributes["exception.type"] for e in span.events if e.attributes] == [
            "vod_events.processing.HandlerTimeout"
        ]


def test_the_http_handler_sends_the_traceparent_of_its_span(traced: Traced, tmp_path: Path) -> None:
    router = Router()
    with serve(App()) as app:
        handler = HttpHandler(app.url, timeout=5)
        router.add(handler, name="post")
        pipeline = processor(router, traced.tracer, tmp_path)
        try:
            assert pipeline.process(message()).status == "handled"
        finally:
            pipeline.close()
    [request] = app.requests
    [delivery] = traced.named(f"process {QUEUE}")
    [span] = traced.named("handle post")
    version, trace_id, parent_id, flags = (request.header("traceparent") or "").split("-")
    assert version == "00"
    assert int(flags, 16) & 1  # sampled (the SDK may set the random-trace-id bit too)
    assert trace_id == trace.format_trace_id(delivery.context.trace_id)
    assert parent_id == trace.format_span_id(span.context.span_id)


def test_json_log_lines_in_a_delivery_carry_its_trace_and_span_ids(
    traced: Traced, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    logs.configure("info", "json", tracing=True)
    log = structlog.get_logger("test.tracing")  # made after configure: not cached before
    router = Router()

    @router.on(name="talks")
    def talks(event: VodEvent, ctx: HandlerContext) -> None:
        log.info("in the handler")
        logging.getLogger("some.library").warning("a library line")

    capfd.readouterr()
    log.info("before any delivery")
    processor(router, traced.tracer, tmp_path).process(message())
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines()]

    [delivery] = traced.named(f"process {QUEUE}")
    [span] = traced.named("handle talks")
    by_event = {line["event"]: line for line in lines}
    assert "trace_id" not in by_event["before any delivery"]
    for event in ("in the handler", "a library line"):
        assert by_event[event]["trace_id"] == trace.format_trace_id(delivery.context.trace_id)
        assert by_event[event]["span_id"] == trace.format_span_id(span.context.span_id)


# ------------------------------------------------------------------ wired from the config


def test_the_consumer_built_from_the_config_traces_each_delivery(
    process_spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    broker = MemoryBroker()
    broker.create_queue("events", visibility_timeout=30)
    config = config_with_tracing(
        tmp_path,
        mns={"endpoint": "http://127.0.0.1:9", "queue": "events"},
        consumer={"pollers": 1, "workers": 2, "wait_seconds": 1},
    )
    router = Router()
    router.add(lambda event, ctx: None, name="noop")
    consumer = build_consumer(
        config, connect=lambda name: MemoryTransport(broker, name), router=router
    )
    message_id = broker.put("events", event_body("job-7"))
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(consumer.run()))
    thread.start()
    try:
        wait_for(lambda: consumer.stats.get("deleted") == 1, what="the delete")
    finally:
        consumer.stop()
        thread.join(30)
    assert codes == [0]
    spans = list(process_spans.get_finished_spans())
    [delivery] = [s for s in spans if s.name == "process events"]
    assert (delivery.attributes or {})["messaging.message.id"] == message_id
    assert (delivery.attributes or {})["vod.job_id"] == "job-7"
    assert (delivery.attributes or {})["vod.outcome"] == "handled"
    assert [s.name for s in children(spans, delivery)] == ["handle noop"]


def test_http_callbacks_are_process_http_callback(
    process_spans: InMemorySpanExporter, tmp_path: Path
) -> None:
    config = dataclasses.replace(callback_config(tmp_path), tracing=TracingSection(enabled=True))
    router = Router()
    router.add(lambda event, ctx: None, name="noop")
    server = build_callback_server(config, router=router).start()
    try:
        reply = Receiver(server, tmp_path).post_signed(event_body("job-9"))
    finally:
        server.close()
    assert reply.status == 200
    spans = list(process_spans.get_finished_spans())
    [delivery] = [s for s in spans if s.name == "process http-callback"]
    attributes = dict(delivery.attributes or {})
    assert attributes["messaging.destination.name"] == "http-callback"
    assert attributes["messaging.system"] == "alibaba_vod_callback"
    assert attributes["vod.job_id"] == "job-9"
    assert attributes["vod.outcome"] == "handled"
    assert [s.name for s in children(spans, delivery)] == ["handle noop"]


def test_tracing_off_in_the_config_is_no_tracing(tmp_path: Path) -> None:
    config = from_dict({"mns": {"endpoint": "http://127.0.0.1:9"}}, "t.toml", {})
    assert config.tracing.enabled is False
    assert build_tracer(config) is tracing.NO_TRACING
    on = from_dict(
        {"mns": {"endpoint": "http://127.0.0.1:9"}}, "t.toml", {"VOD_EVENTS_TRACING_ENABLED": "1"}
    )
    assert on.tracing.enabled is True


# ------------------------------------------------------------------ the OTEL_* variables


def test_the_exporters_come_from_otel_traces_exporter() -> None:
    assert exporter_names({}) == ["otlp"]
    assert exporter_names({"OTEL_TRACES_EXPORTER": "console"}) == ["console"]
    assert exporter_names({"OTEL_TRACES_EXPORTER": "Console, otlp"}) == ["console", "otlp"]
    assert exporter_names({"OTEL_TRACES_EXPORTER": "none"}) == []
    with pytest.raises(ConfigError) as raised:
        exporter_names({"OTEL_TRACES_EXPORTER": "jaeger"})
    assert str(raised.value) == (
        "environment variable OTEL_TRACES_EXPORTER: must be one of otlp, console, none "
        "(or several, comma-separated), got 'jaeger'"
    )
    with pytest.raises(ConfigError, match=r"OTEL_EXPORTER_OTLP_PROTOCOL: .* 'grpc'"):
        exporter_names({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert exporter_names({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}) == ["otlp"]


def test_the_otlp_endpoint_and_the_service_name(monkeypatch: pytest.MonkeyPatch) -> None:
    assert otlp_endpoint({}) == "http://localhost:4318/v1/traces"
    assert otlp_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/"}) == (
        "http://c:4318/v1/traces"
    )
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    assert resource().attributes["service.name"] == "vod-events"
    monkeypatch.setenv("OTEL_SERVICE_NAME", "vod-events-eu")
    assert resource().attributes["service.name"] == "vod-events-eu"


def test_doctor_reports_the_tracing_setup(tmp_path: Path) -> None:
    config = config_with_tracing(tmp_path)
    console = check_tracing(config, {"OTEL_TRACES_EXPORTER": "console"})
    assert (console.status, console.detail) == (Status.OK, "OpenTelemetry, exporter: console")
    bad = check_tracing(config, {"OTEL_TRACES_EXPORTER": "zipkin"})
    assert bad.status is Status.ERROR and "OTEL_TRACES_EXPORTER" in bad.detail
    nobody = check_tracing(config, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"})
    assert nobody.status is Status.WARNING
    assert "http://127.0.0.1:9/v1/traces is not reachable" in nobody.detail


MISSING_SCRIPT = """
import sys
sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
from vod_events.cli import main
sys.argv = ["vod-events", *sys.argv[1:]]
sys.exit(main())
"""


def test_tracing_without_the_extra_is_a_config_error_saying_what_to_install(
    tmp_path: Path,
) -> None:
    config = tmp_path / "vod-events.toml"
    config.write_text(
        '[mns]\nendpoint = "http://127.0.0.1:9"\n[tracing]\nenabled = true\n'
        '[[handlers]]\ntype = "log"\n'
    )
    done = subprocess.run(
        [sys.executable, "-c", MISSING_SCRIPT, "check-config", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert f"{config}, key 'tracing.enabled': tracing needs OpenTelemetry" in done.stderr
    assert "'opentelemetry' is not installed: pip install 'vod-events[otel]'" in done.stderr


# ------------------------------------------------------------------ a real daemon


def test_a_daemon_with_the_console_exporter_prints_the_delivery_span(tmp_path: Path) -> None:
    with LocalMNSServer() as server, serve(App()) as app:
        server.create_queue("events")
        message_id = MNSTransport(
            server.endpoint, "events", access_key_id="id", access_key_secret="secret"
        ).send(event_body("job-42"))
        config = tmp_path / "vod-events.toml"
        config.write_text(
            f'[mns]\nendpoint = "{server.endpoint}"\nqueue = "events"\n'
            'access_key_id = "id"\naccess_key_secret = "secret"\n'
            "[consumer]\npollers = 1\nworkers = 2\nwait_seconds = 1\n"
            f'[state]\ndir = "{tmp_path / "state"}"\n'
            '[log]\nformat = "json"\n'
            "[tracing]\nenabled = true\n"
            f'[[handlers]]\ntype = "http"\nurl = "{app.url}"\n'
            '[[handlers]]\ntype = "log"\n'
        )
        config.chmod(0o600)
        env = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "vod-events-test"}
        with Daemon(config, env) as daemon:
            wait_for(
                lambda: any(e["event"] == "event" for e in daemon.log_events()),
                timeout=20,
                what="the log handler's line",
            )
            daemon.process.send_signal(signal.SIGTERM)
            assert daemon.wait() == 0, daemon.output
    spans = console_spans("".join(daemon.stdout_lines))
    [delivery] = [s for s in spans if s["name"] == "process events"]
    assert delivery["kind"] == "SpanKind.CONSUMER"
    assert delivery["parent_id"] is None
    assert delivery["resource"]["attributes"]["service.name"] == "vod-events-test"
    assert delivery["attributes"]["messaging.message.id"] == message_id
    assert delivery["attributes"]["vod.job_id"] == "job-42"
    assert delivery["attributes"]["vod.outcome"] == "handled"
    trace_id = delivery["context"]["trace_id"].removeprefix("0x")
    handlers = [s for s in spans if s["parent_id"] == delivery["context"]["span_id"]]
    assert sorted(s["name"] for s in handlers) == ["handle http:" + app.url, "handle log"]
    # The http handler's request carried the trace; the log handler's line carries its ids.
    [request] = app.requests
    assert (request.header("traceparent") or "").split("-")[1] == trace_id
    [line] = [e for e in daemon.log_events() if e["event"] == "event"]
    [log_span] = [s for s in handlers if s["name"] == "handle log"]
    assert line["trace_id"] == trace_id
    assert line["span_id"] == log_span["context"]["span_id"].removeprefix("0x")


def console_spans(text: str) -> list[dict[str, Any]]:
    """The JSON objects the console exporter printed (one per span, over several lines)."""
    decoder = json.JSONDecoder()
    spans: list[dict[str, Any]] = []
    index = text.find("{")
    while index != -1:
        span, end = decoder.raw_decode(text, index)
        spans.append(span)
        index = text.find("{", end)
    return spans
