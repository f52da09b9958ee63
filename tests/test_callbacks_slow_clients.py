"""Slow and idle clients against the callback receiver, over real sockets: they must not
keep VOD's real callbacks from being answered (200 within VOD's 5 s), and cost the server
a bounded number of threads for a bounded time."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from callback_client import (
    VOD_TIMEOUT_S,
    Flood,
    Receiver,
    Reply,
    SlowClient,
    callback_config,
    signed_headers,
)
from helpers import event_body, wait_for

from vod_events.events import AIVideoTagComplete, VodEvent
from vod_events.router import HandlerContext, Router
from vod_events.service.http_callbacks import (
    CallbackServer,
    CallbackSettings,
    build_callback_server,
)

Start = Callable[..., tuple[Receiver, Router]]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Start a callback server with a recording handler; `settings` overrides apply to the
    `CallbackSettings` that `[http_callback]` gives."""
    servers: list[CallbackServer] = []

    def make(
        settings: dict[str, Any] | None = None, **http_callback: Any
    ) -> tuple[Receiver, Router]:
        config = callback_config(tmp_path / f"run-{len(servers)}", **http_callback)
        router = Router()
        if settings:
            chosen = dataclasses.replace(CallbackSettings.from_config(config), **settings)
            server = build_callback_server(config, router=router, settings=chosen).start()
        else:
            server = build_callback_server(config, router=router).start()
        servers.append(server)
        receiver = Receiver(server, tmp_path / f"run-{len(servers) - 1}" / "dead-letters")

        @router.on()
        def record(event: VodEvent, context: HandlerContext) -> None:
            receiver.handled.append((event, context))

        return receiver, router

    yield make
    for server in servers:
        server.close()


def post_as_vod_meanwhile(receiver: Receiver, jobs: list[str], gap: float) -> list[Reply | str]:
    """POST one signed callback per job, `gap` s apart, each with VOD's 5 s timeout; the
    replies, or the error for a callback that got none."""
    replies: list[Reply | str] = []
    for job in jobs:
        try:
            replies.append(receiver.post_signed(event_body(job), timeout=VOD_TIMEOUT_S))
        except OSError as exc:
            replies.append(repr(exc))
        time.sleep(gap)
    return replies


def statuses(replies: list[Reply | str]) -> list[int | str]:
    return [r.status if isinstance(r, Reply) else r for r in replies]


DEFAULT_DEADLINE = 5.0  # the whole request within 5 s of connecting, as VOD's own patience
DEFAULT_CONNECTIONS = 64  # for the default 16 slots
UNSIGNED_HEAD = b"POST /vod/callback HTTP/1.1\r\nHost: vod\r\nContent-Length: 1000\r\n\r\n"


@pytest.mark.parametrize(
    ("first", "dribbled"),
    [
        pytest.param(UNSIGNED_HEAD, b"{" * 1000, id="body"),  # unsigned headers, then the body
        pytest.param(b"P", UNSIGNED_HEAD, id="headers"),  # the headers themselves
    ],
)
def test_slow_unsigned_clients_do_not_starve_authentic_callbacks(
    start: Start, first: bytes, dribbled: bytes
) -> None:
    receiver, _ = start(max_concurrency=2)
    slow = [SlowClient(receiver.server.address, first, dribbled, every=0.2) for _ in range(2)]
    try:
        time.sleep(0.5)  # they are well into their requests
        replies = post_as_vod_meanwhile(receiver, [f"job-{i}" for i in range(6)], gap=0.3)
    finally:
        for client in slow:
            client.stop()
    assert statuses(replies) == [200] * 6
    assert all(isinstance(r, Reply) and r.seconds < VOD_TIMEOUT_S for r in replies)
    assert sorted(e.job_id or "" for e, _ in receiver.handled) == [f"job-{i}" for i in range(6)]


def test_a_flood_of_slow_connections_costs_bounded_threads_and_callbacks_get_through(
    start: Start,
) -> None:
    receiver, _ = start()  # the defaults: 16 slots, so 64 connections
    limit = DEFAULT_CONNECTIONS
    before = threading.active_count()
    # Three times as many connections as allowed, each sending headers that never end, and
    # opened again whenever the server drops one.
    never_ending = b"POST /vod/callback HTTP/1.1\r\nHost: vod\r\nX-Pad: " + b"a" * 100_000
    flood = Flood(receiver.server.address, 3 * limit, never_ending, every=0.3)
    try:
        time.sleep(1.0)
        threads = [threading.active_count() - before]
        replies = post_as_vod_meanwhile(receiver, [f"job-{i}" for i in range(6)], gap=0.3)
        threads.append(threading.active_count() - before)
        assert statuses(replies) == [200] * 6
        assert all(isinstance(r, Reply) and r.seconds < VOD_TIMEOUT_S for r in replies)
        # A thread per open connection (at most `limit`), the flood's own, and a few threads
        # of dropped connections on their way out: far fewer than the flood's connections.
        assert max(threads) <= limit + 16, f"{threads} threads for at most {limit} connections"
        assert receiver.server.open_connections <= limit
    finally:
        flood.stop()
    assert flood.closed_by_server >= 2 * limit  # the oldest were dropped for newer ones
    assert receiver.server.settings.max_connections == limit


def test_a_body_dribbled_past_the_deadline_is_cut_off_without_a_slot(start: Start) -> None:
    receiver, router = start(max_concurrency=1)
    deadline = DEFAULT_DEADLINE
    ran: list[str] = []

    @router.on(AIVideoTagComplete)
    def note(event: AIVideoTagComplete, context: HandlerContext) -> None:
        ran.append(event.job_id or "")

    body = event_body("job-dribbled").encode()
    head = "".join(f"{k}: {v}\r\n" for k, v in signed_headers().items())
    request = (
        f"POST /vod/callback HTTP/1.1\r\nHost: vod\r\n{head}Content-Length: {len(body)}\r\n\r\n"
    )
    dribbler = SlowClient(receiver.server.address, request.encode(), body, every=0.25)
    try:
        time.sleep(0.5)
        # The one slot is free: the dribbler, authentic as it is, has not sent its body.
        assert (
            receiver.post_signed(event_body("job-meanwhile"), timeout=VOD_TIMEOUT_S).status == 200
        )
        closed_after = dribbler.wait_closed(timeout=deadline + 5)
    finally:
        dribbler.stop()
    assert closed_after is not None, "the dribbler was never cut off"
    assert deadline - 0.5 <= closed_after <= deadline + 2.5
    assert dribbler.answer.startswith(b"HTTP/1.0 408 ")
    assert ran == ["job-meanwhile"]  # the dribbled event was never processed
    assert receiver.server.processor.stats.get("callbacks_rejected") == 1
    assert receiver.server.settings.read_deadline == deadline


def test_headers_dribbled_past_the_deadline_are_cut_off(start: Start) -> None:
    receiver, _ = start()
    deadline = DEFAULT_DEADLINE
    dribbler = SlowClient(receiver.server.address, b"P", UNSIGNED_HEAD * 10, every=0.25)
    try:
        closed_after = dribbler.wait_closed(timeout=deadline + 5)
    finally:
        dribbler.stop()
    assert closed_after is not None, "the dribbler was never cut off"
    assert deadline - 0.5 <= closed_after <= deadline + 2.5
    assert receiver.handled == []
    assert receiver.server.settings.read_deadline == deadline


def test_at_the_connection_limit_the_oldest_idle_connection_is_dropped(start: Start) -> None:
    receiver, _ = start(settings={"max_connections": 3})
    address = receiver.server.address
    idle = [SlowClient(address, b"", b"", every=0.05) for _ in range(3)]
    try:
        wait_for(lambda: receiver.server.open_connections == 3, what="3 connections open")
        assert receiver.post_signed(event_body("job-a"), timeout=VOD_TIMEOUT_S).status == 200
        # The oldest made room, at once (not at its read deadline).
        assert (idle[0].wait_closed(timeout=3) or 99) < 3
        wait_for(lambda: receiver.server.open_connections == 2, what="job-a's connection closed")
        idle.append(SlowClient(address, b"", b"", every=0.05))
        wait_for(lambda: receiver.server.open_connections == 3, what="3 connections open")
        assert receiver.post_signed(event_body("job-b"), timeout=VOD_TIMEOUT_S).status == 200
        assert (idle[1].wait_closed(timeout=3) or 99) < 3  # then the next oldest
        assert (idle[2].closed_after, idle[3].closed_after) == (None, None)
    finally:
        for client in idle:
            client.stop()
    assert [e.job_id for e, _ in receiver.handled] == ["job-a", "job-b"]


def test_connections_being_processed_are_never_dropped(start: Start) -> None:
    receiver, router = start(max_concurrency=2, settings={"max_connections": 2})
    entered, release = threading.Semaphore(0), threading.Event()

    @router.on(AIVideoTagComplete)
    def slow(event: AIVideoTagComplete, context: HandlerContext) -> None:
        entered.release()
        release.wait(10)

    replies: list[Reply] = []
    running = [
        threading.Thread(target=lambda j=job: replies.append(receiver.post_signed(event_body(j))))
        for job in ("job-1", "job-2")
    ]
    for thread in running:
        thread.start()
    try:
        assert entered.acquire(timeout=10) and entered.acquire(timeout=10)
        # Both connections are busy: a third is closed unanswered instead.
        with pytest.raises((ConnectionError, OSError)):
            receiver.post_signed(event_body("job-3"), timeout=VOD_TIMEOUT_S)
    finally:
        release.set()
        for thread in running:
            thread.join(10)
    assert sorted(r.status for r in replies) == [200, 200]
