"""Duplicates and crashes at the defaults: a concurrent duplicate is resolved within seconds
of its first copy, a crashed handler's event is recovered within the visibility timeout plus
a few seconds, and neither burns the message's `max_deliveries`.

Everything runs through the real aliyun-mns-sdk against the local MNS server, with the
default settings a user gets (SQLite idempotency, default claim lease and delivery limit).
"""

from __future__ import annotations

import base64
import json
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import event_body, wait_for
from service_process import Daemon

from vod_events.config import Config, from_dict
from vod_events.consumer import EXIT_OK
from vod_events.decoder import decode
from vod_events.dedupe import ClaimState, MemoryStore, SQLiteStore
from vod_events.events import VodEvent
from vod_events.mns_server import LocalMNSServer
from vod_events.processing import OutcomeStatus, Processor
from vod_events.router import HandlerContext, Router
from vod_events.service.assemble import build_consumer, build_router
from vod_events.stats import Stats
from vod_events.transports import ReceivedMessage
from vod_events.transports.mns import MNSTransport

KEY_ID, SECRET = "dup-key-id", "dup-key-secret"
QUEUE = "events"
VISIBILITY = 10  # the queue's own, as in the reproduction


@pytest.fixture
def server() -> Iterator[LocalMNSServer]:
    with LocalMNSServer(access_key_id=KEY_ID, access_key_secret=SECRET) as srv:
        srv.create_queue(QUEUE, visibility_timeout=VISIBILITY)
        yield srv


def sender(server: LocalMNSServer) -> MNSTransport:
    return MNSTransport(server.endpoint, QUEUE, access_key_id=KEY_ID, access_key_secret=SECRET)


def defaults(server: LocalMNSServer, tmp_path: Path, **extra: Any) -> Config:
    """The defaults, plus only what a user must set (endpoint, state dir)."""
    data: dict[str, Any] = {
        "mns": {"endpoint": server.endpoint, "queue": QUEUE},
        "state": {"dir": str(tmp_path / "state")},
        **extra,
    }
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET}
    return from_dict(data, "<test>", env)


def test_a_concurrent_duplicate_is_deleted_within_seconds_of_the_first_copy(
    server: LocalMNSServer, tmp_path: Path
) -> None:
    body = event_body("dup-1")
    sender(server).send(body)
    sender(server).send(base64.b64encode(body.encode()).decode())  # VOD's other encoding
    calls: list[float] = []
    finished: list[float] = []

    def slow(event: VodEvent, ctx: HandlerContext) -> None:
        calls.append(time.monotonic())
        time.sleep(2)
        finished.append(time.monotonic())

    cfg = defaults(server, tmp_path)
    router = build_router(cfg)
    router.add(slow, name="slow")
    consumer = build_consumer(cfg, router=router)
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(consumer.run()))
    thread.start()
    try:
        wait_for(lambda: consumer.stats.get("deleted") == 2, timeout=30, what="both deleted")
        both_deleted = time.monotonic()
    finally:
        consumer.stop()
        thread.join(30)
    assert code == [EXIT_OK]
    assert len(calls) == 1  # the handler ran once
    assert both_deleted - finished[0] < 3.0  # not parked for the claim's lease
    assert consumer.stats.get("duplicates") == 1
    assert consumer.stats.get("dead_lettered") == 0


def test_a_duplicate_running_in_another_replica_comes_back_within_seconds_uncounted(
    server: LocalMNSServer, tmp_path: Path
) -> None:
    # Another replica (a second store on the same SQLite file) is running the handler.
    cfg = defaults(server, tmp_path, consumer={"max_deliveries": 2})
    body = event_body("dup-2")
    key = f"{decode(body).dedupe_key}|slow"
    replica = SQLiteStore(cfg.state_dir / "dedupe.sqlite3")
    assert replica.claim(key).state is ClaimState.CLAIMED
    sender(server).send(body)
    calls: list[str] = []
    router = build_router(cfg)
    router.add(lambda event, ctx: calls.append(ctx.message_id), name="slow")
    consumer = build_consumer(cfg, router=router)
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(consumer.run()))
    thread.start()
    try:
        # Delivered and deferred more often than max_deliveries while the replica works.
        wait_for(lambda: consumer.stats.get("deferred") >= 4, timeout=30, what="4 deferrals")
        replica.complete(key)
        completed = time.monotonic()
        wait_for(lambda: consumer.stats.get("deleted") == 1, timeout=30, what="deleted")
        resolved = time.monotonic() - completed
    finally:
        consumer.stop()
        thread.join(30)
        replica.close()
    assert code == [EXIT_OK]
    assert calls == []  # the replica's run counts: not run again here
    assert resolved <= 10.0
    assert consumer.stats.get("dead_lettered") == 0  # deferrals are not deliveries


def test_deliveries_over_the_limit_that_run_a_handler_are_still_dead_lettered(
    server: LocalMNSServer, tmp_path: Path
) -> None:
    # A poison event: every delivery runs the handler and fails. The limit still holds.
    cfg = defaults(
        server,
        tmp_path,
        consumer={"max_deliveries": 2},
        retry={"attempts": 1, "redelivery_initial": 1, "redelivery_max": 1},
    )
    sender(server).send(event_body("poison"))
    router = build_router(cfg)

    def fails(event: VodEvent, ctx: HandlerContext) -> None:
        raise RuntimeError("always")

    router.add(fails, name="fails")
    consumer = build_consumer(cfg, router=router)
    code: list[int] = []
    thread = threading.Thread(target=lambda: code.append(consumer.run()))
    thread.start()
    try:
        wait_for(lambda: consumer.stats.get("dead_lettered") == 1, timeout=30, what="dead letter")
    finally:
        consumer.stop()
        thread.join(30)
    assert consumer.stats.get("failed") == 2
    [letter] = [json.loads(p.read_text()) for p in cfg.dead_letter_dir.glob("*.json")]
    assert letter["reason"] == "delivered 3 times (0 deferred), more than max_deliveries=2"


def test_a_killed_daemon_s_event_is_recovered_within_the_visibility_timeout(
    server: LocalMNSServer, tmp_path: Path
) -> None:
    calls = tmp_path / "calls.jsonl"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[mns]\nendpoint = "{server.endpoint}"\nqueue = "{QUEUE}"\n'
        f'[state]\ndir = "{tmp_path / "state"}"\n'
        '[log]\nformat = "json"\n'
        '[[handlers]]\nevents = ["*"]\ncall = "sample_handlers:record"\n'
    )
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
        "VOD_TEST_CALLS": str(calls),
    }

    def records() -> list[dict[str, Any]]:
        if not calls.exists():
            return []
        return [json.loads(line) for line in calls.read_text().splitlines()]

    sender(server).send(event_body("crash-1"))
    with Daemon(config, {**env, "VOD_TEST_SLEEP": "600"}) as first:
        wait_for(lambda: len(records()) == 1, timeout=30, what="the handler started")
        first.process.send_signal(signal.SIGKILL)
        first.wait()
    killed = time.monotonic()
    with Daemon(config, {**env, "VOD_TEST_SLEEP": "0"}) as second:
        wait_for(
            lambda: any(r["phase"] == "end" for r in records()),
            timeout=60,
            what="the event handled again",
        )
        recovered = time.monotonic() - killed
        second.process.send_signal(signal.SIGTERM)
        assert second.wait() == 0
    assert recovered <= VISIBILITY + 10, f"recovered after {recovered:.1f} s"
    starts = [r for r in records() if r["phase"] == "start"]
    assert len(starts) == 2  # the killed run and the recovery, nothing more
    assert sender(server).receive(16, 0) == []  # deleted


def test_a_deferred_http_callback_records_no_deferral() -> None:
    # A callback's retry is a new request with a new id: counting it would only leave a
    # row behind for completed_ttl (7 days).
    store = MemoryStore()
    body = event_body("http-1")
    assert store.claim(f"{decode(body).dedupe_key}|h").state is ClaimState.CLAIMED
    other = MemoryStore()
    other._rows = store._rows  # another replica's view of the same records
    router = Router()
    router.add(lambda event, ctx: None, name="h")
    for source, recorded in (("http", 0), ("mns", 1)):
        processor = Processor(
            router,
            stats=Stats(),
            stopping=threading.Event(),
            source="s",
            store=other,
            context_source=source,  # type: ignore[arg-type]
        )
        message = ReceivedMessage(f"{source}-id", "", body, 1, 0, 0, 0)
        assert processor.process(message).status is OutcomeStatus.DEFERRED
        assert other.deferrals(f"{source}-id") == recorded
