"""Idempotency claims on the callback path, over real HTTP: handlers slower than VOD's 5 s,
VOD's retries meeting a claim in progress, one store shared with the queue consumer inside
the daemon (any backend), and `serve-callbacks` renewing its own claims."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from callback_client import (
    CALLBACK_URL,
    KEY,
    VOD_TIMEOUT_S,
    Receiver,
    Reply,
    callback_config,
    signed_headers,
)
from helpers import QUEUE, event_body, free_port, wait_for

from vod_events.events import AIVideoTagComplete
from vod_events.router import HandlerContext, Router
from vod_events.service.assemble import build_consumer
from vod_events.service.http_callbacks import CallbackServer, build_callback_server, serving
from vod_events.stats import Stats
from vod_events.transports.memory import MemoryBroker, MemoryTransport

TESTS = Path(__file__).resolve().parent


class Blocking:
    """A handler that records each call and blocks until `release` is set; then raises
    `error`, if any."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[str] = []  # ctx.source of each call
        self.finished: list[str] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.error = error

    def __call__(self, event: AIVideoTagComplete, context: HandlerContext) -> None:
        self.calls.append(context.source)
        self.entered.set()
        self.release.wait(20)
        self.finished.append(context.source)
        if self.error is not None:
            raise self.error


@pytest.fixture
def blocked(tmp_path: Path) -> Iterator[Callable[[Blocking], Receiver]]:
    """A started callback server (defaults, SQLite store) whose only handler is `handler`."""
    servers: list[tuple[CallbackServer, Blocking]] = []

    def make(handler: Blocking) -> Receiver:
        config = callback_config(tmp_path)
        router = Router()
        router.add(handler, [AIVideoTagComplete], name="blocking")
        server = build_callback_server(config, router=router).start()
        servers.append((server, handler))
        return Receiver(server, tmp_path / "dead-letters")

    yield make
    for server, handler in servers:
        handler.release.set()
        server.close()


def vod_hangs_up(receiver: Receiver, body: str) -> None:
    """VOD's first try, whose answer does not come in time: VOD hangs up (here after 1 s,
    to keep the test short; the server cannot tell the difference)."""
    with pytest.raises(TimeoutError):
        receiver.post_signed(body, timeout=1.0)


def test_a_handler_slower_than_vod_runs_once_and_vods_retries_are_answered_in_time(
    blocked: Callable[[Blocking], Receiver],
) -> None:
    handler = Blocking()
    receiver = blocked(handler)
    body = event_body("job-slow")

    vod_hangs_up(receiver, body)
    # VOD's second try meets the claim in progress: answered before VOD's 5 s are up, with
    # "try again" and nothing kept (the first try's thread owns the event's fate).
    second = receiver.post_signed(body, timeout=VOD_TIMEOUT_S)
    assert (second.status, second.text) == (503, "in progress\n")
    assert second.seconds < VOD_TIMEOUT_S - 0.5
    assert receiver.dead_letters() == []

    handler.release.set()  # the handler ends well after VOD hung up on it: it still counts
    wait_for(lambda: receiver.server.processor.stats.get("handled") == 1, what="the handler")
    third = receiver.post_signed(body, timeout=VOD_TIMEOUT_S)
    assert third.status == 200  # a duplicate now
    assert handler.calls == ["http"]
    assert receiver.dead_letters() == []


def test_a_slow_handler_failing_after_vod_hung_up_is_kept_with_its_own_reason(
    blocked: Callable[[Blocking], Receiver],
) -> None:
    handler = Blocking(ConnectionError("downstream unavailable"))
    receiver = blocked(handler)
    body = event_body("job-slow-fail")

    vod_hangs_up(receiver, body)
    assert receiver.post_signed(body, timeout=VOD_TIMEOUT_S).status == 503
    assert receiver.dead_letters() == []

    handler.release.set()  # now it fails, with no client left to tell
    wait_for(lambda: len(receiver.dead_letters()) == 1, what="the dead letter")
    [letter] = receiver.dead_letters()
    assert letter["body"] == body
    assert letter["reason"].startswith("not done over HTTP (retry: blocking: ConnectionError: ")
    assert "downstream unavailable" in letter["reason"]
    # VOD's last try runs the handler again (the claim was released); it fails again: the
    # event is not kept twice.
    assert receiver.post_signed(body, timeout=VOD_TIMEOUT_S).status == 500
    assert len(receiver.dead_letters()) == 1


# --- the daemon: one idempotency store for the queue and the callbacks ------------------------


@dataclass
class BothWays:
    """What became of one event sent by queue and by callback to a daemon."""

    replies: list[Reply]  # to the callback
    calls: list[str]  # ctx.source of each handler call
    stats: Stats
    dead_letters: list[Path]


def send_both_ways(
    tmp_path: Path, dedupe: dict[str, Any], first: str, *, overlap: float = 0.0
) -> BothWays:
    """Run a consumer (over an in-memory queue) serving callbacks, as the daemon does, with
    one blocking handler; send the same event by `first` ("queue" or "http"), then, once its
    handler has run for `overlap` s, by the other way; then let the handler finish."""
    config = callback_config(
        tmp_path, dedupe=dedupe, consumer={"pollers": 1, "workers": 2, "wait_seconds": 1}
    )
    broker = MemoryBroker()
    broker.create_queue(QUEUE)
    handler = Blocking()
    router = Router()
    router.add(handler, [AIVideoTagComplete], name="blocking")
    consumer = build_consumer(
        config, connect=lambda name: MemoryTransport(broker, name), router=router
    )
    body = event_body(f"job-both-{first}")
    replies: list[Reply] = []
    running = threading.Thread(target=consumer.run)
    running.start()
    try:
        with serving(config, consumer) as server:
            assert server is not None
            receiver = Receiver(server, tmp_path / "dead-letters")
            post = threading.Thread(
                target=lambda: replies.append(receiver.post_signed(body, timeout=20))
            )
            # The first copy's handler is running when the second copy arrives.
            if first == "queue":
                broker.put(QUEUE, body)
                assert handler.entered.wait(10)
                time.sleep(overlap)
                post.start()
            else:
                post.start()
                assert handler.entered.wait(10)
                time.sleep(overlap)
                broker.put(QUEUE, body)
                wait_for(lambda: broker.visible_count(QUEUE) == 0, what="the queue copy taken")
            time.sleep(0.5)  # the second copy meets the claim
            handler.release.set()
            post.join(20)
            wait_for(lambda: len(broker.deleted(QUEUE)) == 1, what="the queue copy deleted")
    finally:
        handler.release.set()
        consumer.stop()
        running.join(30)
    return BothWays(
        replies,
        handler.calls,
        consumer.stats,
        list((tmp_path / "dead-letters").glob("*.json")),
    )


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
@pytest.mark.parametrize("first", ["queue", "http"])
def test_an_event_arriving_by_queue_and_by_callback_runs_each_handler_once(
    tmp_path: Path, backend: str, first: str
) -> None:
    dedupe = {"backend": backend}
    if backend == "sqlite":
        dedupe["path"] = str(tmp_path / "dedupe.sqlite3")
    both = send_both_ways(tmp_path, dedupe, first)
    assert [r.status for r in both.replies] == [200]
    assert all(r.seconds < VOD_TIMEOUT_S for r in both.replies)
    assert both.calls == ["mns" if first == "queue" else "http"]
    assert (both.stats.get("handled"), both.stats.get("duplicates")) == (1, 1)
    assert both.dead_letters == []


def test_inside_the_daemon_the_consumer_renews_the_callbacks_claims(tmp_path: Path) -> None:
    claim_ttl = 3  # the shortest lease allowed
    # The callback's handler runs well past the lease: renewed by the consumer, its claim
    # still stands when the queue copy comes.
    both = send_both_ways(
        tmp_path, {"backend": "memory", "claim_ttl": claim_ttl}, "http", overlap=claim_ttl + 1.5
    )
    assert both.calls == ["http"]
    assert [r.status for r in both.replies] == [200]
    assert (both.stats.get("handled"), both.stats.get("duplicates")) == (1, 1)


# --- serve-callbacks renews its own claims ----------------------------------------------------


def post(port: int, body: str, timeout: float) -> Reply:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        started = time.monotonic()
        connection.request("POST", "/vod/callback", body=body, headers=signed_headers())
        response = connection.getresponse()
        return Reply(response.status, response.read().decode(), time.monotonic() - started)
    finally:
        connection.close()


def test_serve_callbacks_renews_its_claims_while_a_slow_handler_runs(tmp_path: Path) -> None:
    claim_ttl, handler_seconds = 3, 6  # the shortest lease allowed; renewed every 1 s
    port = free_port()
    calls = tmp_path / "calls.jsonl"
    config_file = tmp_path / "vod-events.toml"
    config_file.write_text(
        f"""
[mns]
endpoint = "http://127.0.0.1:9"
[http_callback]
listen = "127.0.0.1:{port}"
callback_url = "{CALLBACK_URL}"
auth_keys = ["{KEY}"]
[dedupe]
claim_ttl = {claim_ttl}
[state]
dir = "{tmp_path / "state"}"
[[handlers]]
call = "sample_handlers:record"
"""
    )
    environment = {
        **os.environ,
        "PYTHONPATH": f"{TESTS}{os.pathsep}{TESTS.parent}",
        "VOD_TEST_CALLS": str(calls),
        "VOD_TEST_SLEEP": str(handler_seconds),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "vod_events", "serve-callbacks", "--config", str(config_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
    )
    body = event_body("job-renewed")
    replies: list[Reply] = []
    try:

        def accepting() -> bool:
            assert process.poll() is None, process.communicate()[1].decode()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return False
            return True

        wait_for(accepting, timeout=20, what="the callback server to listen")
        first = threading.Thread(target=lambda: replies.append(post(port, body, timeout=20)))
        first.start()
        wait_for(calls.exists, timeout=10, what="the handler to start")
        started = time.monotonic()
        # Well past claim_ttl: without renewal the claim would have lapsed, and this try
        # would run the handler a second time.
        time.sleep(claim_ttl + 1.5)
        second = post(port, body, timeout=VOD_TIMEOUT_S)
        assert time.monotonic() - started < handler_seconds + 3
        first.join(20)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr.decode()
    records = [json.loads(line) for line in calls.read_text().splitlines()]
    assert [r["phase"] for r in records] == ["start", "end"]  # one run, not two
    assert second.status == 200  # it waited for the running handler, then found it done
    assert [r.status for r in replies] == [200]
