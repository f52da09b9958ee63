"""The ops endpoint: `/metrics`, `/healthz` and `/readyz` over HTTP, on a background thread.

`[ops] listen = "127.0.0.1:9400"` turns it on. Metrics are read from `Stats.snapshot()` at
scrape time by a custom collector on a private registry, so the endpoint shows exactly the
consumer's counters (no process-global default registry, no second set of counts).

Metric names follow the Prometheus rules: a `vod_events_` prefix, base units, counters end in
`_total`, durations in `_seconds`; each counter's name and help text come from
`stats.COUNTERS`, the one table of counters. Nothing exported carries a label value taken
from a message or the config, so no secret or payload can leak into a scrape.
"""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler

import structlog
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector, CollectorRegistry

from vod_events.config import parse_listen
from vod_events.service.health import Health, Verdict
from vod_events.service.http_server import BackgroundServer
from vod_events.stats import BUCKETS, COUNTERS, Histogram, Stats

log = structlog.get_logger("vod_events.service.ops")

PREFIX = "vod_events"


class ConsumerCollector(Collector):
    """Turns one `Stats.snapshot()` and the health verdicts into metric families."""

    def __init__(self, stats: Stats, health: Health) -> None:
        self.stats = stats
        self.health = health

    def collect(self) -> Iterator[Metric]:
        snapshot = self.stats.snapshot()
        for counter in COUNTERS:
            # The client library appends `_total` to a counter's name.
            yield CounterMetricFamily(
                f"{PREFIX}_{counter.metric}", counter.help, value=snapshot.counters[counter.name]
            )
        yield GaugeMetricFamily(
            f"{PREFIX}_messages_in_flight",
            "Messages received and not yet deleted or handed back.",
            value=snapshot.in_flight,
        )
        yield _histogram(
            "handler_duration_seconds",
            "Time to run all handlers of one delivery, retries included.",
            snapshot.handler_seconds,
        )
        yield _histogram(
            "event_lag_seconds",
            "Time from the message's EnqueueTime to its handlers starting.",
            snapshot.lag_seconds,
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_up",
            "1 when the consumer is ready: started, connected, receives succeeding, "
            "not shutting down.",
            value=int(self.health.readiness().ok),
        )
        yield GaugeMetricFamily(
            f"{PREFIX}_healthy",
            "1 when every thread runs, none is stuck in a queue or store call, "
            "and the pollers completed a receive recently.",
            value=int(self.health.liveness().ok),
        )


def _histogram(name: str, help_text: str, histogram: Histogram) -> HistogramMetricFamily:
    """A Stats histogram (one count per bucket) as Prometheus cumulative buckets."""
    buckets: list[tuple[str, float]] = []
    cumulative = 0
    # counts has one more entry than BUCKETS: values above every bound, only in +Inf.
    for bound, count in zip(BUCKETS, histogram.counts, strict=False):
        cumulative += count
        buckets.append((_bound_text(bound), cumulative))
    buckets.append(("+Inf", histogram.count))
    return HistogramMetricFamily(
        f"{PREFIX}_{name}", help_text, buckets=buckets, sum_value=histogram.total
    )


def _bound_text(bound: float) -> str:
    return repr(float(bound))  # "0.005", "1.0": the form client libraries use for `le`


def registry_for(stats: Stats, health: Health) -> CollectorRegistry:
    """A private registry holding only the consumer's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ConsumerCollector(stats, health))
    return registry


class OpsServer:
    """Serves the ops endpoint on `listen` until `close()`. Port 0 picks a free port."""

    def __init__(self, listen: str, stats: Stats, health: Health) -> None:
        host, port = parse_listen(listen)
        self.health = health
        self.registry = registry_for(stats, health)
        handler = type("BoundOpsHandler", (_OpsHandler,), {"ops": self})
        self._http = BackgroundServer(host, port, handler, name="vod-events-ops")

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound."""
        return self._http.address

    @property
    def url(self) -> str:
        return self._http.base_url

    def start(self) -> OpsServer:
        self._http.start()
        log.info("ops endpoint listening", url=self.url)
        return self

    def close(self) -> None:
        self._http.stop()


class _OpsHandler(BaseHTTPRequestHandler):
    """One request to the ops endpoint. `ops` is bound per server by `OpsServer`."""

    ops: OpsServer
    server_version = "vod-events"
    sys_version = ""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._metrics()
        elif path == "/healthz":
            self._verdict(self.ops.health.liveness())
        elif path == "/readyz":
            self._verdict(self.ops.health.readiness())
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found: try /metrics, /healthz, /readyz\n")

    def _metrics(self) -> None:
        encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
        self._send(HTTPStatus.OK, encoder(self.ops.registry), content_type)

    def _verdict(self, verdict: Verdict) -> None:
        status = HTTPStatus.OK if verdict.ok else HTTPStatus.SERVICE_UNAVAILABLE
        self._send(status, f"{verdict.reason}\n".encode())

    def _send(
        self, status: HTTPStatus, body: bytes, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # probes every few seconds would drown the log
