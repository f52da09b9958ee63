"""The built-in `http` handler against a real local HTTP server: success, permanent 4xx,
retried 5xx / 408 / 429 / timeouts / refused connections, and a verifiable signature. It is
async: called here with `asyncio.run`, and through the consumer on its event loop."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from helpers import Harness, event_body, wait_for
from http_app import App, serve

from vod_events.consumer import ConsumerSettings
from vod_events.decoder import decode
from vod_events.errors import PermanentError
from vod_events.events import VodEvent
from vod_events.handlers import SIGNATURE_HEADER, HttpHandler, delivery_record
from vod_events.router import HandlerContext, is_async_handler

Make = Callable[..., Harness]
SECRET = "app-shared-secret"
CONTEXT = HandlerContext("MSG-1", 2, datetime(2024, 5, 1, 12, 0, tzinfo=UTC))


def post(handler: HttpHandler, event: VodEvent, context: HandlerContext = CONTEXT) -> None:
    """One call of the handler on an event loop of its own, its client closed after."""

    async def call() -> None:
        try:
            await handler(event, context)
        finally:
            await handler.aclose()

    asyncio.run(call())


def verify(secret: str, body: bytes, header: str) -> bool:
    """What the receiving application does to check a request came from vod-events."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


def test_2xx_is_success_and_the_body_is_the_delivery_record() -> None:
    event = decode(event_body("job-1"))
    with serve(App(statuses=(202,))) as app:
        post(HttpHandler(app.url, timeout=5), event)
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
        post(HttpHandler(app.url, timeout=5, secret=SECRET), event)
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
        post(HttpHandler(app.url, timeout=5), decode(event_body("job-1")))
    assert str(raised.value).startswith(f"{app.url} answered {status} ")
    assert len(app.requests) == 1


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
def test_5xx_408_and_429_are_retryable(status: int) -> None:
    with serve(App(statuses=(status,))) as app, pytest.raises(Exception) as raised:
        post(HttpHandler(app.url, timeout=5), decode(event_body("job-1")))
    assert not isinstance(raised.value, PermanentError)
    assert str(raised.value).startswith(f"{app.url} answered {status} ")


def test_a_timeout_is_retryable() -> None:
    with serve(App(delay=2.0)) as app, pytest.raises(Exception) as raised:
        post(HttpHandler(app.url, timeout=0.2), decode(event_body("job-1")))
    assert not isinstance(raised.value, PermanentError)
    assert "timed out" in str(raised.value)


def test_a_refused_connection_is_retryable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(Exception) as raised:
        post(HttpHandler(f"http://127.0.0.1:{port}/x", timeout=2), decode(event_body("j")))
    assert not isinstance(raised.value, PermanentError)
    assert "refused" in str(raised.value).lower()


def test_a_redirect_is_not_followed_and_is_retryable() -> None:
    with serve(App(statuses=(307,))) as app, pytest.raises(Exception) as raised:
        post(HttpHandler(app.url, timeout=5), decode(event_body("job-1")))
    assert not isinstance(raised.value, PermanentError)
    assert str(raised.value).startswith(f"{app.url} answered 307 ")
    assert len(app.requests) == 1


def test_it_is_async_with_one_pooled_client_per_loop() -> None:
    handler = HttpHandler("http://127.0.0.1:9/x", timeout=5)
    assert is_async_handler(handler)  # the engine runs it on its event loop

    async def two_calls(app: App) -> tuple[object, object]:
        handler.url = app.url
        await handler(decode(event_body("job-1")), CONTEXT)
        first = handler._client
        await handler(decode(event_body("job-2")), CONTEXT)
        return first, handler._client

    with serve(App()) as app:
        first, second = asyncio.run(two_calls(app))
        assert first is not None and first is second  # made once, at the first call
        # Another loop (the first is closed): a client of its own, closed from elsewhere.
        post(handler, decode(event_body("job-3")))
    assert [json.loads(r.body)["job_id"] for r in app.requests] == ["job-1", "job-2", "job-3"]
    assert handler._client is None


def test_close_from_another_thread_closes_the_client_on_its_loop() -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    handler = HttpHandler("", timeout=5)
    try:
        with serve(App()) as app:
            handler.url = app.url
            call = handler(decode(event_body("job-1")), CONTEXT)
            asyncio.run_coroutine_threadsafe(call, loop).result(10)
            client = handler._client
            assert client is not None and not client.is_closed
            handler.close()
            assert client.is_closed and handler._client is None
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


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


def test_slow_posts_wait_on_the_event_loop_not_on_workers(harness: Make) -> None:
    """Eight events, one worker, an application that takes 0.5 s per request: the posts
    wait together on the loop (about 0.5 s in all), not one after another (4 s)."""
    h = harness(settings=ConsumerSettings(pollers=1, workers=1, wait_seconds=1, deleters=1))
    with serve(App(delay=0.5)) as app:
        h.router.add(HttpHandler(app.url, timeout=5))
        for i in range(8):
            h.put(event_body(f"job-{i}"))
        started = time.monotonic()
        h.start()
        wait_for(lambda: h.stats.get("deleted") == 8, what="the deletes")
        elapsed = time.monotonic() - started
        h.stop()
    assert sorted(json.loads(r.body)["job_id"] for r in app.requests) == [
        f"job-{i}" for i in range(8)
    ]
    assert elapsed < 2.5, f"the posts ran one after another: {elapsed:.1f} s"
