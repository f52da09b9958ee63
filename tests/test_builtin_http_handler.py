"""The built-in `http` handler against a real local HTTP server: success, permanent 4xx,
retried 5xx / 408 / 429 / timeouts / refused connections, and a verifiable signature."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from helpers import Harness, event_body, wait_for
from http_app import App, serve

from vod_events.decoder import decode
from vod_events.errors import PermanentError
from vod_events.handlers import SIGNATURE_HEADER, HttpHandler, delivery_record
from vod_events.router import HandlerContext

Make = Callable[..., Harness]
SECRET = "app-shared-secret"
CONTEXT = HandlerContext("MSG-1", 2, datetime(2024, 5, 1, 12, 0, tzinfo=UTC))


def verify(secret: str, body: bytes, header: str) -> bool:
    """What the receiving application does to check a request came from vod-events."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def test_2xx_is_success_and_the_body_is_the_delivery_record() -> None:
    event = decode(event_body("job-1"))
    with serve(App(statuses=(202,))) as app:
        HttpHandler(app.url, timeout=5)(event, CONTEXT)
    [request] = app.requests
    assert request.path == "/vod/events"
    assert request.header("Content-Type") == "application/json"
    assert json.loads(request.body) == json.loads(json.dumps(delivery_record(event, CONTEXT)))
    record = json.loads(request.body)
    assert record["job_id"] == "job-1"
    assert record["message"] == {
        "id": "MSG-1",
        "dequeue_count": 2,
        "enqueue_time": "2024-05-01T12:00:00+00:00",
    }
    assert request.header(SIGNATURE_HEADER) is None  # no secret, no signature


def test_signature_header_verifies_with_hmac_sha256() -> None:
    event = decode(event_body("job-1"))
    with serve(App()) as app:
        HttpHandler(app.url, timeout=5, secret=SECRET)(event, CONTEXT)
    [request] = app.requests
    header = request.header(SIGNATURE_HEADER) or ""
    assert header.startswith("sha256=")
    assert verify(SECRET, request.body, header)
    assert not verify("another-secret", request.body, header)
    assert not verify(SECRET, request.body.replace(b"job-1", b"job-2"), header)
    assert SECRET not in header


@pytest.mark.parametrize("status", [400, 401, 404, 410, 422])
def test_4xx_is_a_permanent_failure(status: int) -> None:
    with serve(App(statuses=(status,))) as app, pytest.raises(PermanentError) as raised:
        HttpHandler(app.url, timeout=5)(decode(event_body("job-1")), CONTEXT)
    assert str(raised.value).startswith(f"{app.url} answered {status} ")
    assert len(app.requests) == 1


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_5xx_408_and_429_are_retryable(status: int) -> None:
    with serve(App(statuses=(status,))) as app, pytest.raises(Exception) as raised:
        HttpHandler(app.url, timeout=5)(decode(event_body("job-1")), CONTEXT)
    assert not isinstance(raised.value, PermanentError)
    assert str(raised.value).startswith(f"{app.url} answered {status} ")


def test_a_timeout_is_retryable() -> None:
    with serve(App(delay=2.0)) as app, pytest.raises(Exception) as raised:
        HttpHandler(app.url, timeout=0.2)(decode(event_body("job-1")), CONTEXT)
    assert not isinstance(raised.value, PermanentError)
    assert "timed out" in str(raised.value)


def test_a_refused_connection_is_retryable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(Exception) as raised:
        HttpHandler(f"http://127.0.0.1:{port}/x", timeout=2)(decode(event_body("j")), CONTEXT)
    assert not isinstance(raised.value, PermanentError)
    assert "refused" in str(raised.value).lower()


# ------------------------------------------------------------ through the consumer


def test_5xx_then_success_is_retried_and_deleted_once(harness: Make) -> None:
    h = harness()
    with serve(App(statuses=(503,))) as app:
        h.router.add(HttpHandler(app.url, timeout=5, secret=SECRET))
        message_id = h.put(event_body("job-1"))
        h.start()
        wait_for(lambda: h.stats.get("deleted") == 1, what="the delete")
        h.stop()
    assert [json.loads(r.body)["job_id"] for r in app.requests] == ["job-1", "job-1"]
    assert app.requests[0].body == app.requests[1].body  # the same event, posted again
    assert all(verify(SECRET, r.body, r.header(SIGNATURE_HEADER) or "") for r in app.requests)
    assert h.broker.deleted("vod-events") == [message_id]
    counters = h.stats.snapshot().counters
    assert (counters["handled"], counters["retried"], counters["failed"]) == (1, 1, 0)


def test_4xx_through_the_consumer_is_dead_lettered_not_retried(harness: Make) -> None:
    h = harness()
    with serve(App(statuses=(422,))) as app:
        h.router.add(HttpHandler(app.url, timeout=5))
        h.put(event_body("job-1"))
        h.start()
        wait_for(lambda: h.stats.get("dead_lettered") == 1, what="the dead letter")
        h.stop()
    assert len(app.requests) == 1
    [letter] = h.dead_letters()
    assert f"{app.url} answered 422" in letter["reason"]
    assert h.broker.bodies("vod-events") == []
