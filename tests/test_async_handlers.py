"""Async handlers and per-handler limits: detected, awaited on the event loop with the same
retries, claims, dead letters and shutdown as sync handlers; `timeout` and
`max_concurrency` held. Through a real Processor, the real consumer with the real
aliyun-mns-sdk against the local MNS server, and a real daemon process receiving SIGTERM."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helpers
import pytest
from helpers import ConsumerThread, event_body, idempotency_key, received, wait_for
from test_consumer_mns import (
    KEY_ID,
    QUEUE,
    SECRET,
    _calls,
    _daemon_config,
    _start_daemon,
    client,
    config,
)

from vod_events.config import load
from vod_events.config.schema import HandlerSection
from vod_events.consumer import EXIT_ABANDONED, EXIT_OK
from vod_events.dedupe import ClaimState
from vod_events.errors import ConfigError, PermanentError
from vod_events.events import VodEvent
from vod_events.mns_server import LocalMNSServer
from vod_events.processing import OutcomeStatus, Processor
from vod_events.retry import RetryPolicy
from vod_events.router import HandlerContext, Router, TransactionalConflict, is_async_handler
from vod_events.service.assemble import build_consumer, build_router
from vod_events.transports import ReceivedMessage


@pytest.fixture
def server() -> Iterator[LocalMNSServer]:
    with LocalMNSServer(access_key_id=KEY_ID, access_key_secret=SECRET) as srv:
        srv.create_queue(QUEUE, visibility_timeout=30)
        yield srv


class Gauge:
    """How many calls run at once, and the most there ever were."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.peak = self.calls = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.calls += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


def message(job: str = "job-1", dequeue_count: int = 1) -> ReceivedMessage:
    return received(job, dequeue_count=dequeue_count)


def processor(router: Router, **kwargs: Any) -> Processor:
    kwargs.setdefault("retry", RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.02))
    return helpers.processor(router, **kwargs)


# ------------------------------------------------------------------ detection and router


class AsyncCallable:
    async def __call__(self, event: VodEvent, ctx: HandlerContext) -> None:
        pass


class SyncCallable:
    def __call__(self, event: VodEvent, ctx: HandlerContext) -> None:
        pass


async def async_function(event: VodEvent, ctx: HandlerContext, extra: int = 0) -> None:
    pass


def sync_function(event: VodEvent, ctx: HandlerContext) -> None:
    pass


def test_async_handlers_are_detected_in_every_form() -> None:
    assert is_async_handler(async_function)
    assert is_async_handler(functools.partial(async_function, extra=1))
    assert is_async_handler(AsyncCallable())
    assert is_async_handler(AsyncCallable().__call__)
    assert not is_async_handler(sync_function)
    assert not is_async_handler(SyncCallable())
    assert not is_async_handler(functools.partial(sync_function))


def test_router_refuses_async_transactional_and_bad_limits() -> None:
    router = Router()
    with pytest.raises(TransactionalConflict, match="async and transactional"):
        router.add(async_function, transactional=True)
    with pytest.raises(ValueError, match="timeout must be > 0"):
        router.add(sync_function, timeout=0)
    with pytest.raises(ValueError, match="max_concurrency must be >= 1"):
        router.add(sync_function, max_concurrency=0)
    router.add(sync_function, ["AIVideoTagComplete"], timeout=5)
    with pytest.raises(TransactionalConflict, match="same ones"):
        router.add(sync_function, ["AIMediaDNAComplete"], timeout=6)
    assert not router.has_async
    router.add(async_function)
    assert router.has_async


# ------------------------------------------------------------------ through a Processor


def test_async_handler_is_awaited_and_its_completion_recorded() -> None:
    ran: list[str] = []

    async def handler(event: VodEvent, ctx: HandlerContext) -> None:
        await asyncio.sleep(0.01)
        ran.append(str(event.job_id))

    router = Router()
    router.add(handler, name="h")
    p = processor(router)
    try:
        outcome = p.process(message())
        assert outcome.status is OutcomeStatus.HANDLED
        assert ran == ["job-1"]
        # Completed: a second delivery is a duplicate and does not run it again.
        assert p.process(message(dequeue_count=2)).status is OutcomeStatus.DUPLICATE
        assert ran == ["job-1"]
    finally:
        p.close()


def test_async_handler_failures_are_retried_then_handed_back_or_dead_lettered(
    tmp_path: Path,
) -> None:
    calls: list[int] = []

    async def flaky(event: VodEvent, ctx: HandlerContext) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("boom")

    async def failing(event: VodEvent, ctx: HandlerContext) -> None:
        raise ConnectionError("always")

    async def permanent(event: VodEvent, ctx: HandlerContext) -> None:
        raise PermanentError("bad media")

    router = Router()
    router.add(flaky, name="flaky")
    p = processor(router)
    assert p.process(message()).status is OutcomeStatus.HANDLED
    assert len(calls) == 3 and p.stats.snapshot().counters["retried"] == 2
    p.close()

    router = Router()
    router.add(failing, name="failing")
    p = processor(router)
    outcome = p.process(message())
    assert outcome.status is OutcomeStatus.RETRY and not outcome.delete
    assert "failing: ConnectionError: always" in outcome.reason
    # its claim was released: the next delivery runs it again
    assert p.store.claim(idempotency_key("job-1", "failing")).state is ClaimState.CLAIMED
    p.close()

    from vod_events.deadletter import DirectorySink

    router = Router()
    router.add(permanent, name="permanent")
    p = processor(router, dead_letters=DirectorySink(tmp_path))
    outcome = p.process(message())
    assert outcome.status is OutcomeStatus.DEAD_LETTERED
    assert "permanent failure: bad media" in outcome.reason
    p.close()


def test_async_timeout_cancels_the_call_counts_it_and_retries() -> None:
    cancelled: list[int] = []

    async def slow(event: VodEvent, ctx: HandlerContext) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(1)
            raise

    router = Router()
    router.add(slow, name="slow", timeout=0.05)
    p = processor(router, retry=RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.01))
    started = time.monotonic()
    outcome = p.process(message())
    assert time.monotonic() - started < 2  # not the 5 s
    assert outcome.status is OutcomeStatus.RETRY
    assert "slow: HandlerTimeout: timed out after 0.05 s and was cancelled" in outcome.reason
    assert len(cancelled) == 2  # both tries cancelled
    counters = p.stats.snapshot().counters
    assert counters["handler_timeouts"] == 2 and counters["retried"] == 1
    p.close()


def test_a_handlers_own_timeout_error_is_its_failure_not_its_limit() -> None:
    async def times_out(event: VodEvent, ctx: HandlerContext) -> None:
        raise TimeoutError("the API timed out")

    router = Router()
    router.add(times_out, name="api", timeout=30)
    p = processor(router, retry=RetryPolicy(attempts=1))
    outcome = p.process(message())
    assert outcome.status is OutcomeStatus.RETRY
    assert outcome.reason == "api: TimeoutError: the API timed out"
    assert p.stats.snapshot().counters["handler_timeouts"] == 0
    p.close()


def test_sync_handler_past_its_timeout_is_counted_as_an_overrun_and_its_result_stands() -> None:
    def slow(event: VodEvent, ctx: HandlerContext) -> None:
        time.sleep(1.2)

    router = Router()
    router.add(slow, name="slow", timeout=0.2)
    p = processor(router)
    assert p.process(message()).status is OutcomeStatus.HANDLED
    assert p.stats.snapshot().counters["handler_overruns"] == 1


def test_sync_handler_returning_a_coroutine_is_awaited_not_counted_as_done() -> None:
    ran: list[str] = []

    async def inner(event: VodEvent) -> None:
        await asyncio.sleep(0)
        ran.append("awaited")

    def hidden(event: VodEvent, ctx: HandlerContext) -> Any:
        return inner(event)  # a decorator that hid `async def`

    router = Router()
    router.add(hidden, name="hidden")
    p = processor(router)
    assert p.process(message()).status is OutcomeStatus.HANDLED
    assert ran == ["awaited"]
    p.close()


def test_one_event_runs_sync_and_async_handlers_each_once_in_order() -> None:
    order: list[str] = []

    def first(event: VodEvent, ctx: HandlerContext) -> None:
        order.append("sync-1")

    async def second(event: VodEvent, ctx: HandlerContext) -> None:
        await asyncio.sleep(0.01)
        order.append("async")

    def third(event: VodEvent, ctx: HandlerContext) -> None:
        order.append("sync-2")

    router = Router()
    router.add(first, name="first")
    router.add(second, name="second")
    router.add(third, name="third")
    p = processor(router)
    assert p.process(message()).status is OutcomeStatus.HANDLED
    assert order == ["sync-1", "async", "sync-2"]
    p.close()


# ------------------------------------------------------------------ the consumer, real SDK


@pytest.fixture
def running() -> Iterator[Callable[..., ConsumerThread]]:
    started: list[ConsumerThread] = []

    def start(cfg: Any, router: Router) -> ConsumerThread:
        r = ConsumerThread(build_consumer(cfg, router=router))
        started.append(r)
        return r

    yield start
    for r in started:
        if r.thread.is_alive():
            r.stop()


def test_async_calls_run_far_beyond_the_worker_threads_and_all_are_deleted(
    server: LocalMNSServer, tmp_path: Path, running: Callable[..., ConsumerThread]
) -> None:
    gauge = Gauge()

    async def handler(event: VodEvent, ctx: HandlerContext) -> None:
        gauge.enter()
        try:
            await asyncio.sleep(0.2)
        finally:
            gauge.leave()

    sender = client(server)
    for start in range(0, 200, 16):
        sender.send_batch([event_body(f"job-{i}") for i in range(start, min(200, start + 16))])
    cfg = config(server, tmp_path, consumer={"workers": 4, "async_concurrency": 100})
    router = build_router(cfg)
    router.add(handler, name="async")
    consumer = running(cfg, router)
    wait_for(lambda: consumer.consumer.stats.snapshot().counters["handled"] == 200, timeout=60)
    assert consumer.stop() == EXIT_OK
    assert gauge.calls == 200
    assert 4 < gauge.peak <= 100  # many more at once than the 4 worker threads; bounded
    wait_for(lambda: client(server).queue_info().active_messages == 0, timeout=5)
    assert client(server).queue_info().inactive_messages == 0  # every one deleted


def test_duplicates_of_running_async_calls_do_not_hold_the_workers(
    server: LocalMNSServer, tmp_path: Path, running: Callable[..., ConsumerThread]
) -> None:
    """More duplicates of this process's own running async calls than there are workers:
    each must wait for its first copy without a worker, since finishing that copy (recording
    its completion) needs a free worker. Blocking the workers stalled everything for
    own_claim_wait (20 s)."""
    gauge = Gauge()

    async def handler(event: VodEvent, ctx: HandlerContext) -> None:
        gauge.enter()
        try:
            await asyncio.sleep(1.0)
        finally:
            gauge.leave()

    pairs = 6
    sender = client(server)
    sender.send_batch([event_body(f"job-{i}") for i in range(pairs)])
    cfg = config(server, tmp_path, consumer={"workers": 2})
    router = build_router(cfg)
    router.add(handler, name="async")
    consumer = running(cfg, router)
    wait_for(lambda: gauge.now == pairs, timeout=10, what="every first copy running")
    sender.send_batch([event_body(f"job-{i}") for i in range(pairs)])  # their duplicates
    counters = consumer.consumer.stats.snapshot
    # Seconds, not the 20 s of own_claim_wait: the first copies end after 1 s, and the
    # duplicates are recognised as soon as their completions are recorded.
    wait_for(
        lambda: (
            counters().counters["handled"] == pairs and counters().counters["duplicates"] == pairs
        ),
        timeout=10,
        what="first copies handled, duplicates recognised",
    )
    assert consumer.stop() == EXIT_OK
    assert gauge.calls == pairs


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_max_concurrency_holds_a_handler_to_its_limit(
    kind: str, server: LocalMNSServer, tmp_path: Path, running: Callable[..., ConsumerThread]
) -> None:
    gauge = Gauge()

    def sync_handler(event: VodEvent, ctx: HandlerContext) -> None:
        gauge.enter()
        time.sleep(0.05)
        gauge.leave()

    async def async_handler(event: VodEvent, ctx: HandlerContext) -> None:
        gauge.enter()
        await asyncio.sleep(0.05)
        gauge.leave()

    sender = client(server)
    sender.send_batch([event_body(f"job-{i}") for i in range(16)])
    sender.send_batch([event_body(f"job-{i}") for i in range(16, 32)])
    cfg = config(server, tmp_path, consumer={"workers": 8})
    router = build_router(cfg)
    router.add(sync_handler if kind == "sync" else async_handler, name=kind, max_concurrency=3)
    consumer = running(cfg, router)
    wait_for(lambda: consumer.consumer.stats.snapshot().counters["handled"] == 32, timeout=60)
    assert consumer.stop() == EXIT_OK
    assert gauge.calls == 32
    assert gauge.peak == 3


def test_async_handler_longer_than_the_visibility_timeout_is_kept_by_the_heartbeat(
    tmp_path: Path, running: Callable[..., ConsumerThread]
) -> None:
    with LocalMNSServer(
        access_key_id="test-key-id", access_key_secret="test-key-secret-DO-NOT-LOG"
    ) as srv:
        srv.create_queue(QUEUE, visibility_timeout=2)
        calls: list[int] = []

        async def handler(event: VodEvent, ctx: HandlerContext) -> None:
            calls.append(ctx.dequeue_count)
            await asyncio.sleep(5)

        client(srv).send(event_body("job-long"))
        cfg = config(srv, tmp_path)
        router = build_router(cfg)
        router.add(handler, name="long")
        consumer = running(cfg, router)
        wait_for(lambda: consumer.consumer.stats.snapshot().counters["handled"] == 1, timeout=20)
        assert consumer.stop() == EXIT_OK
        assert calls == [1]  # never redelivered while it ran


# ------------------------------------------------------------------ shutdown, real daemon


def _async_daemon_config(server: LocalMNSServer, tmp_path: Path, **consumer: Any) -> Path:
    path = _daemon_config(server, tmp_path, **consumer)
    path.write_text(
        path.read_text().replace("sample_handlers:record", "sample_handlers:record_async")
    )
    return path


def test_sigterm_lets_running_async_handlers_finish(server: LocalMNSServer, tmp_path: Path) -> None:
    sender = client(server)
    sender.send_batch([event_body(f"job-{i}") for i in range(5)])
    cfg = _async_daemon_config(server, tmp_path, prefetch=8)
    daemon = _start_daemon(cfg, tmp_path, VOD_TEST_SLEEP="2")
    try:
        wait_for(lambda: sum(c["phase"] == "start" for c in _calls(tmp_path)) == 5, timeout=20)
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=30)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, stderr
    phases = [c["phase"] for c in _calls(tmp_path)]
    assert phases.count("start") == 5 and phases.count("end") == 5  # none cancelled
    info = client(server).queue_info()
    assert (info.active_messages, info.inactive_messages) == (0, 0)  # all deleted


def test_sigterm_cancels_async_handlers_only_after_shutdown_timeout_and_hands_them_back(
    server: LocalMNSServer, tmp_path: Path
) -> None:
    sender = client(server)
    sender.send_batch([event_body(f"job-{i}") for i in range(3)])
    cfg = _async_daemon_config(server, tmp_path, shutdown_timeout=1)
    daemon = _start_daemon(cfg, tmp_path, VOD_TEST_SLEEP="30")
    try:
        wait_for(lambda: len(_calls(tmp_path)) == 3, timeout=20)
        signalled = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=20)
        took = time.monotonic() - signalled
    finally:
        daemon.kill()
    assert daemon.returncode == EXIT_ABANDONED, stderr
    assert 1 <= took < 10
    assert "cancelling running async handlers" in stderr
    assert [c["phase"] for c in _calls(tmp_path)] == ["start"] * 3  # cut short, not deleted
    # handed back at once (a failure's redelivery backoff), not after the visibility timeout
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    handed_back = [
        line
        for line in lines
        if line.get("event") == "handler failed; message handed back to the queue"
    ]
    assert len(handed_back) == 3, stderr


# ------------------------------------------------------------------ the config


def test_handler_limits_and_async_concurrency_come_from_the_config(
    server: LocalMNSServer, tmp_path: Path
) -> None:
    cfg = config(
        server,
        tmp_path,
        consumer={"async_concurrency": 40},
    )
    cfg = dataclasses.replace(
        cfg,
        handlers=[
            HandlerSection(call="sample_handlers:record_async", timeout=2.5, max_concurrency=4),
            HandlerSection(type="http", url="http://127.0.0.1:9/", timeout=3),
        ],
    )
    router = build_router(cfg)
    by_name = {r.name: r for r in router.routes}
    tagged = by_name["sample_handlers:record_async"]
    assert (tagged.is_async, tagged.timeout, tagged.max_concurrency) == (True, 2.5, 4)
    http = by_name["http:http://127.0.0.1:9/"]
    assert http.is_async and http.timeout is None  # its request timeout is its limit
    consumer = build_consumer(cfg, router=router)
    try:
        assert consumer.processor.async_slots == 40
    finally:
        consumer.processor.store.close()


def test_one_handler_listed_twice_with_other_limits_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        '[mns]\nendpoint = "http://127.0.0.1:1"\nqueue = "q"\n'
        '[[handlers]]\nevents = ["AIVideoTagComplete"]\ncall = "m:f"\ntimeout = 5\n'
        '[[handlers]]\nevents = ["AIMediaDNAComplete"]\ncall = "m:f"\ntimeout = 6\n'
    )
    with pytest.raises(ConfigError) as raised:
        load(path, {})
    assert "handlers[1].timeout" in str(raised.value) and str(path) in str(raised.value)
