"""What tracing costs per delivery: `Processor.process` of the seed messages with tracing off
(`NO_TRACING`, the default) and on (OpenTelemetry, a batch processor and an exporter that
drops the spans: the SDK's own cost, without a network), in the same run.

Three figures per delivery, each the best of ``--repeat`` alternating rounds of ``--number``
deliveries (the four seed payloads in turn, one sync handler that does nothing, idempotency
off so every delivery runs it):

- off: ``process`` with NO_TRACING;
- on: ``process`` with the OpenTelemetry tracer;
- hooks off: the calls the processor makes to NO_TRACING for one delivery (counted by
  running one delivery through a counting tracer), alone, with nothing else: what the hooks
  cost when tracing is off, as a share of ``off``.

    .venv/bin/python bench/bench_tracing.py [--number 2000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import platform
import threading
import timeit
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from vod_events.decoder import decode
from vod_events.dedupe import NullStore
from vod_events.events import VodEvent
from vod_events.processing import Processor
from vod_events.router import HandlerContext, Router
from vod_events.samples import payloads
from vod_events.service import logs
from vod_events.stats import Stats
from vod_events.tracing import NO_TRACING, Delivery, Tracer
from vod_events.tracing_otel import OtelTracer
from vod_events.transports import ReceivedMessage

SEEDS = (
    "AIVideoTagComplete.json",
    "AIMediaDNAComplete.json",
    "AIVideoTagComplete.seed002.json",
    "AIMediaAuditComplete.json",
)


class DroppingExporter(SpanExporter):
    """Takes every batch and keeps nothing."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class CountingTracer:
    """NO_TRACING, counting the calls of each hook."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()

    def delivery(self, source: str, message: ReceivedMessage) -> Delivery:
        self.calls["delivery"] += 1
        return CountingDelivery(self.calls)


class CountingDelivery:
    def __init__(self, calls: collections.Counter[str]) -> None:
        self.calls = calls

    def event(self, event: VodEvent) -> None:
        self.calls["event"] += 1

    def activate(self) -> contextlib.AbstractContextManager[None]:
        self.calls["activate"] += 1
        return contextlib.nullcontext()

    def handler(self, name: str) -> contextlib.AbstractContextManager[None]:
        self.calls["handler"] += 1
        return contextlib.nullcontext()

    def end(self, status: str, error: str = "") -> None:
        self.calls["end"] += 1


def noop(event: VodEvent, ctx: HandlerContext) -> None:
    pass


def processor(tracer: Tracer) -> Processor:
    router = Router()
    router.add(noop, name="noop")
    return Processor(
        router,
        stats=Stats(),
        stopping=threading.Event(),
        source="vod-events",
        store=NullStore(),
        tracer=tracer,
    )


def messages() -> list[ReceivedMessage]:
    bodies = payloads()
    return [ReceivedMessage(f"m{i}", "h", bodies[name], 1, 0, 0, 0) for i, name in enumerate(SEEDS)]


def deliveries(pipeline: Processor, batch: list[ReceivedMessage]) -> Callable[[], Any]:
    """One call: one delivery, the next seed each time."""
    index = [0]

    def one() -> None:
        pipeline.process(batch[index[0] % len(batch)])
        index[0] += 1

    return one


def hooks_alone(calls: collections.Counter[str], message: ReceivedMessage) -> Callable[[], Any]:
    """One delivery's calls to NO_TRACING, as counted, with nothing else."""
    activations, handlers = calls["activate"], calls["handler"]
    event = decode(message.body)

    def one() -> None:
        delivery = NO_TRACING.delivery("vod-events", message)
        delivery.event(event)
        for _ in range(activations):
            with delivery.activate():
                pass
        for _ in range(handlers):
            with delivery.handler("noop"):
                pass
        delivery.end("handled", "")

    return one


def best_of_alternate_rounds(
    calls: list[Callable[[], Any]], number: int, repeat: int
) -> list[float]:
    """Seconds per call of each: the best of `repeat` rounds, the rounds alternating."""
    best = [float("inf")] * len(calls)
    for _ in range(repeat):
        for index, call in enumerate(calls):
            best[index] = min(best[index], timeit.timeit(call, number=number))
    return [seconds / number for seconds in best]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000, help="deliveries per round")
    parser.add_argument("--repeat", type=int, default=15, help="rounds; the best counts")
    args = parser.parse_args()
    logs.configure("warning", "console")  # as a daemon at the default level: no line each

    batch = messages()
    counting = CountingTracer()
    processor(counting).process(batch[0])
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DroppingExporter()))
    off, on = processor(NO_TRACING), processor(OtelTracer(provider))
    for pipeline in (off, on):
        assert all(pipeline.process(m).status == "handled" for m in batch)
    timings = best_of_alternate_rounds(
        [deliveries(off, batch), deliveries(on, batch), hooks_alone(counting.calls, batch[0])],
        args.number,
        args.repeat,
    )
    provider.shutdown()
    off_s, on_s, hooks_s = timings
    hooks = ", ".join(f"{name} x{count}" for name, count in sorted(counting.calls.items()))
    print(f"Python {platform.python_version()} on {platform.machine()}, ", end="")
    print(f"best of {args.repeat} x {args.number} deliveries (4 seed payloads, 1 handler)")
    print(f"hooks per delivery: {hooks}")
    print(f"tracing off (NO_TRACING)        {off_s * 1e6:8.1f} us/delivery")
    print(
        f"tracing on (OpenTelemetry)      {on_s * 1e6:8.1f} us/delivery  "
        f"({on_s / off_s:.2f}x off, +{(on_s - off_s) * 1e6:.1f} us)"
    )
    print(
        f"the no-op hooks alone           {hooks_s * 1e6:8.2f} us/delivery  "
        f"({hooks_s / off_s:.1%} of off)"
    )


if __name__ == "__main__":
    main()
