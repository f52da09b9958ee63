"""The consumer engine over the in-memory queue: delete only after success, retry, hand back,
dead-letter, keep visibility alive, shut down cleanly, and fail loudly."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import helpers
import pytest
from helpers import QUEUE, Harness, event_body, wait_for

from vod_events.backoff import RedeliveryBackoff
from vod_events.consumer import EXIT_CRASH, EXIT_FATAL, EXIT_OK, Consumer, ConsumerSettings
from vod_events.dedupe import ClaimState, NullStore, SQLiteStore
from vod_events.errors import PermanentError
from vod_events.events import AIVideoTagComplete, VodEvent
from vod_events.router import HandlerContext, Router
from vod_events.transports import DeleteFailure, TransportError
from vod_events.transports.memory import MemoryBroker, MemoryTransport

Make = Callable[..., Harness]


def test_handles_each_message_once_and_deletes_it(harness: Make) -> None:
    h = harness()
    seen: list[tuple[str, str, int]] = []
    lock = threading.Lock()

    @h.router.on(AIVideoTagComplete)
    def on_tag(event: AIVideoTagComplete, ctx: HandlerContext) -> None:
        with lock:
            seen.append((event.job_id or "", ctx.message_id, ctx.dequeue_count))

    ids = [h.put(event_body(f"job-{i}")) for i in range(40)]
    h.start()
    wait_for(lambda: h.stats.get("deleted") == 40, what="40 deletions")
    assert h.stop() == EXIT_OK
    assert sorted(job for job, _, _ in seen) == sorted(f"job-{i}" for i in range(40))
    assert sorted(mid for _, mid, _ in seen) == sorted(ids)
    assert {count for _, _, count in seen} == {1}
    assert h.broker.bodies(QUEUE) == []
    assert sorted(h.broker.deleted(QUEUE)) == sorted(ids)
    snapshot = h.stats.snapshot()
    assert snapshot.counters["received"] == 40
    assert snapshot.counters["handled"] == 40
    assert snapshot.handler_seconds.count == 40


def test_transient_failures_are_retried_in_process_then_deleted_once(harness: Make) -> None:
    h = harness()
    calls: list[int] = []

    @h.router.on()
    def flaky(event: VodEvent, ctx: HandlerContext) -> None:
        calls.append(ctx.dequeue_count)
        if len(calls) <= 2:
            raise ConnectionError("downstream hiccup")

    h.put(event_body("job-1"))
    h.start()
    wait_for(lambda: h.stats.get("deleted") == 1)
    h.stop()
    assert calls == [1, 1, 1]  # three calls within one delivery
    assert h.stats.get("retried") == 2
    assert h.stats.get("failed") == 0
    assert h.broker.bodies(QUEUE) == []


def test_exhausted_retries_hand_the_message_back_not_delete_it(harness: Make) -> None:
    h = harness()
    deliveries: list[int] = []

    @h.router.on()
    def broken(event: VodEvent, ctx: HandlerContext) -> None:
        deliveries.append(ctx.dequeue_count)
        raise RuntimeError("still down")

    h.put(event_body("job-1"))
    h.start()
    # Redelivery backoff is 1..2 s: the message comes back with a higher DequeueCount.
    wait_for(lambda: 2 in deliveries, timeout=10, what="a second delivery")
    h.stop()
    assert deliveries[:3] == [1, 1, 1]  # 3 in-process attempts on the first delivery
    assert h.stats.get("failed") >= 1
    assert h.stats.get("deleted") == 0
    assert len(h.broker.bodies(QUEUE)) == 1


def test_permanent_error_is_dead_lettered_with_reason_then_deleted(harness: Make) -> None:
    h = harness()
    calls = []

    @h.router.on("AIVideoTagComplete")
    def refuses(event: VodEvent, ctx: HandlerContext) -> None:
        calls.append(1)
        raise PermanentError("media was deleted")

    body = event_body("job-9")
    message_id = h.put(body)
    h.start()
    wait_for(lambda: h.stats.get("deleted") == 1)
    h.stop()
    assert calls == [1]  # no retry for a permanent failure
    [letter] = h.dead_letters()
    assert letter["body"] == body
    assert letter["message_id"] == message_id
    assert letter["source_queue"] == QUEUE
    assert letter["dequeue_count"] == 1
    assert "permanent failure: media was deleted" in letter["reason"]
    assert letter["last_failure"].endswith("+00:00")


def test_undecodable_body_is_dead_lettered_not_looped(harness: Make) -> None:
    h = harness()
    h.router.add(lambda event, ctx: None)
    h.put("this is not an event")
    h.put(event_body("fine"))
    h.start()
    wait_for(lambda: h.stats.get("deleted") == 2)
    h.stop()
    [letter] = h.dead_letters()
    assert letter["body"] == "this is not an event"
    assert letter["reason"].startswith("undecodable: ")
    assert h.stats.get("dead_lettered") == 1
    assert h.stats.get("handled") == 1


def test_too_many_deliveries_are_dead_lettered(harness: Make) -> None:
    h = harness(max_deliveries=2)

    @h.router.on()
    def broken(event: VodEvent, ctx: HandlerContext) -> None:
        raise RuntimeError("never works")

    h.put(event_body("job-1"))
    h.start()
    wait_for(lambda: h.stats.get("dead_lettered") == 1, timeout=15)
    wait_for(lambda: h.stats.get("deleted") == 1)
    h.stop()
    [letter] = h.dead_letters()
    assert letter["dequeue_count"] == 3
    assert "more than max_deliveries=2" in letter["reason"]


def test_unhandled_events_are_deleted_and_counted(harness: Make) -> None:
    h = harness()
    h.router.add(lambda event, ctx: None, ["AIMediaAuditComplete"])
    h.put(event_body("job-1", event_type="FileUploadComplete"))
    h.start()
    wait_for(lambda: h.stats.get("deleted") == 1)
    h.stop()
    assert h.stats.get("unhandled") == 1
    assert h.stats.get("handled") == 0


def test_all_handlers_must_succeed_and_completed_ones_do_not_rerun(harness: Make) -> None:
    h = harness()
    first_calls: list[int] = []
    second_calls: list[int] = []

    @h.router.on()
    def first(event: VodEvent, ctx: HandlerContext) -> None:
        first_calls.append(ctx.dequeue_count)

    @h.router.on(AIVideoTagComplete)
    def second(event: VodEvent, ctx: HandlerContext) -> None:
        second_calls.append(ctx.dequeue_count)
        if ctx.dequeue_count == 1:
            raise RuntimeError("fails on the first delivery only")

    h.put(event_body("job-1"))
    h.start()
    wait_for(lambda: h.stats.get("deleted") == 1, timeout=10)
    h.stop()
    assert first_calls == [1]  # completed on delivery 1, skipped on delivery 2
    assert second_calls == [1, 1, 1, 2]


def test_duplicate_event_is_deleted_without_calling_handlers(harness: Make) -> None:
    h = harness()
    calls: list[str] = []
    h.router.add(lambda event, ctx: calls.append(ctx.message_id))
    h.put(event_body("job-1"))
    h.start()
    wait_for(lambda: h.stats.get("deleted") == 1)
    h.put(event_body("job-1"))  # VOD delivered the same event twice
    wait_for(lambda: h.stats.get("deleted") == 2)
    h.stop()
    assert len(calls) == 1
    assert h.stats.get("duplicates") == 1


def test_workers_go_on_while_completions_are_written_and_all_are_written_by_the_stop(
    harness: Make, tmp_path: Path
) -> None:
    store = helpers.GatedStore(tmp_path / "d.sqlite3")
    h = harness(store=store, settings=ConsumerSettings(pollers=1, workers=1, wait_seconds=1))
    calls: list[str] = []
    h.router.add(lambda event, ctx: calls.append(str(event.job_id)), name="record")
    jobs = [f"job-{i}" for i in range(10)]
    for job in jobs:
        h.put(event_body(job))
    h.start()
    # One worker runs all ten while the first completion's write is stalled.
    wait_for(lambda: len(calls) == 10, what="the worker to go on without waiting for writes")
    other = SQLiteStore(tmp_path / "d.sqlite3")  # another process's view
    keys = [helpers.idempotency_key(job, "record") for job in jobs]
    assert other.claim(keys[0]).state is ClaimState.IN_PROGRESS  # held until written
    store.gate.set()
    assert h.stop() == EXIT_OK
    assert [other.claim(key).state for key in keys] == [ClaimState.COMPLETED] * 10
    assert sorted(calls) == sorted(jobs)
    other.close()


def test_a_duplicate_arriving_while_the_completion_is_written_waits_for_it_here(
    harness: Make, tmp_path: Path
) -> None:
    store = helpers.GatedStore(tmp_path / "d.sqlite3")
    h = harness(store=store, settings=ConsumerSettings(pollers=1, workers=2, wait_seconds=1))
    calls: list[str] = []
    h.router.add(lambda event, ctx: calls.append(ctx.message_id), name="record")
    h.put(event_body("job-1"))
    h.start()
    wait_for(lambda: len(calls) == 1)
    h.put(event_body("job-1"))  # the same event again, its completion not yet written
    wait_for(lambda: h.stats.get("received") == 2)
    store.gate.set()
    wait_for(lambda: h.stats.get("deleted") == 2)
    assert h.stop() == EXIT_OK
    assert len(calls) == 1
    assert h.stats.get("duplicates") == 1
    assert h.stats.get("deferred") == 0  # waited in this process, not handed back


def test_messages_handed_back_unstarted_at_shutdown_have_their_claims_released(
    harness: Make, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "d.sqlite3")
    h = harness(store=store, settings=ConsumerSettings(pollers=1, workers=1, wait_seconds=1))
    gate, calls = threading.Event(), []

    def record(event: VodEvent, ctx: HandlerContext) -> None:
        calls.append(str(event.job_id))
        gate.wait(10)

    h.router.add(record, name="record")
    jobs = [f"job-{i}" for i in range(5)]
    for job in jobs:
        h.put(event_body(job))
    h.start()
    wait_for(lambda: len(calls) == 1 and h.stats.get("received") == 5)
    stopping = threading.Thread(target=h.stop)
    stopping.start()
    wait_for(lambda: h.stats.get("released") == 4, what="the unstarted messages handed back")
    gate.set()
    stopping.join(10)
    other = SQLiteStore(tmp_path / "d.sqlite3")  # the next process, at once
    states = {job: other.claim(helpers.idempotency_key(job, "record")).state for job in jobs}
    assert states == {
        job: ClaimState.COMPLETED if job in calls else ClaimState.CLAIMED for job in jobs
    }
    other.close()


def test_long_handler_outliving_visibility_is_not_redelivered(harness: Make) -> None:
    h = harness(
        visibility_timeout=1,
        settings=ConsumerSettings(pollers=2, workers=2, wait_seconds=1, deleters=1),
        store=NullStore(),  # so a redelivery would show up as a second call
    )
    calls: list[int] = []

    @h.router.on()
    def slow(event: VodEvent, ctx: HandlerContext) -> None:
        calls.append(ctx.dequeue_count)
        time.sleep(3.5)  # 3.5x the visibility timeout

    h.put(event_body("job-1"))
    h.start()
    wait_for(lambda: h.stats.get("deleted") == 1, timeout=15)
    h.stop()
    assert calls == [1]
    assert h.stats.get("extended") >= 3


def test_waiting_messages_are_kept_invisible_too(harness: Make) -> None:
    # One worker, a slow first message: the second waits in the prefetch buffer for longer
    # than the visibility timeout and must not be redelivered meanwhile.
    h = harness(
        visibility_timeout=1,
        settings=ConsumerSettings(pollers=1, workers=1, prefetch=4, wait_seconds=1, deleters=1),
        store=NullStore(),
    )
    calls: list[tuple[str, int]] = []

    @h.router.on()
    def slow(event: VodEvent, ctx: HandlerContext) -> None:
        calls.append((event.job_id or "", ctx.dequeue_count))
        if event.job_id == "a":
            time.sleep(3)

    h.put(event_body("a"))
    h.put(event_body("b"))
    h.start()
    wait_for(lambda: h.stats.get("deleted") == 2, timeout=15)
    h.stop()
    assert calls == [("a", 1), ("b", 1)]


def test_shutdown_finishes_running_handler_and_releases_unstarted(harness: Make) -> None:
    h = harness(settings=ConsumerSettings(pollers=1, workers=1, prefetch=8, wait_seconds=5))
    started = threading.Event()
    finished: list[str] = []

    @h.router.on()
    def slow(event: VodEvent, ctx: HandlerContext) -> None:
        started.set()
        time.sleep(1)
        finished.append(event.job_id or "")

    for i in range(5):
        h.put(event_body(f"job-{i}"))
    h.start()
    assert started.wait(5)
    begun = time.monotonic()
    assert h.stop() == EXIT_OK
    assert time.monotonic() - begun < 10
    assert len(finished) == 1  # the running one completed...
    assert h.stats.get("deleted") == 1  # ...and was deleted
    assert h.stats.get("released") == 4  # the others went back at once
    wait_for(lambda: h.broker.visible_count(QUEUE) == 4, timeout=3, what="released visible")


def test_stop_does_not_wait_for_a_long_poll(harness: Make) -> None:
    h = harness(settings=ConsumerSettings(pollers=2, workers=1, wait_seconds=30))
    h.start()
    time.sleep(0.3)  # both pollers are now blocked in a 30 s long poll
    begun = time.monotonic()
    assert h.stop() == EXIT_OK
    assert time.monotonic() - begun < 5


def test_missing_queue_is_fatal(harness: Make) -> None:
    h = harness()
    del h.broker.queues[QUEUE]
    assert h.consumer.run() == EXIT_FATAL
    assert "does not exist" in (h.consumer.fatal_error or "")


@pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt])
def test_a_handler_calling_sys_exit_is_a_handler_failure(
    harness: Make, raised: type[BaseException]
) -> None:
    h = harness(redelivery=RedeliveryBackoff(initial=1, maximum=1))
    calls: list[int] = []

    @h.router.on()
    def exits(event: VodEvent, ctx: HandlerContext) -> None:
        calls.append(ctx.dequeue_count)
        if len(calls) == 1:
            raise raised("a library gave up")

    h.put(event_body("job-1"))
    h.start()
    wait_for(lambda: h.stats.get("deleted") == 1, timeout=15)
    assert h.stop() == EXIT_OK  # the worker survived
    assert not h.consumer.crashed
    assert calls == [1, 2]  # not retried in process; the claim was released for delivery 2
    assert h.stats.get("failed") == 1


class _OurBug(BaseException):
    """Stands for a bug in our own code that escapes every handler."""


def test_a_thread_that_dies_makes_a_non_zero_exit(harness: Make) -> None:
    h = harness()

    @h.router.on()
    def escapes(event: VodEvent, ctx: HandlerContext) -> None:
        raise _OurBug

    h.put(event_body("job-1"))
    h.start()
    assert h.running is not None
    h.running.thread.join(15)
    assert h.running.code == [EXIT_CRASH]
    assert h.consumer.crashed
    assert len(h.broker.bodies(QUEUE)) == 1  # not deleted


def test_receive_errors_back_off_and_recover(harness: Make) -> None:
    h = harness()
    h.router.add(lambda event, ctx: None)
    h.broker.fail_next("receive", TransportError("connection reset"), times=3)
    h.put(event_body("job-1"))
    h.start()
    wait_for(lambda: h.stats.get("deleted") == 1, timeout=15)
    h.stop()
    assert h.stats.get("poll_errors") == 3


class _ImmediateEmpty(MemoryTransport):
    """A queue that answers every long poll at once with nothing (the long-poll limit)."""

    calls = 0

    def receive(self, max_messages: int, wait_seconds: int) -> list[Any]:
        type(self).calls += 1
        return []


def test_immediate_empty_answers_back_off_instead_of_spinning(harness: Make) -> None:
    h = harness(settings=ConsumerSettings(pollers=1, workers=1, wait_seconds=20))
    h.consumer.connect = lambda name: _ImmediateEmpty(h.broker, name)
    h.start()
    time.sleep(2)
    h.stop()
    # Without a backoff this would be thousands of calls; with it, a handful.
    assert 2 <= _ImmediateEmpty.calls <= 15


class _OneStaleHandle(MemoryTransport):
    """Batch delete that reports the first handle of every batch as stale."""

    def delete(self, receipt_handles: Sequence[str]) -> list[DeleteFailure]:
        stale, rest = receipt_handles[0], receipt_handles[1:]
        return [DeleteFailure(stale, "MessageNotExist", "stale"), *super().delete(rest)]


def test_partial_batch_delete_failure_is_handled_per_handle(harness: Make) -> None:
    h = harness(settings=ConsumerSettings(pollers=1, workers=4, wait_seconds=1, deleters=1))
    h.consumer.connect = lambda name: _OneStaleHandle(h.broker, name)
    h.router.add(lambda event, ctx: None)
    for i in range(8):
        h.put(event_body(f"job-{i}"))
    h.start()
    wait_for(lambda: h.stats.get("deleted") + h.stats.get("delete_failures") == 8)
    assert h.stop() == EXIT_OK
    assert h.stats.get("delete_failures") >= 1
    assert h.stats.get("deleted") == 8 - h.stats.get("delete_failures")
    assert len(h.broker.deleted(QUEUE)) == h.stats.get("deleted")


def test_in_flight_is_bounded_by_workers_plus_prefetch(harness: Make) -> None:
    h = harness(settings=ConsumerSettings(pollers=2, workers=2, prefetch=3, wait_seconds=1))
    release = threading.Event()
    peak: list[int] = []

    @h.router.on()
    def blocked(event: VodEvent, ctx: HandlerContext) -> None:
        peak.append(h.consumer.active)
        release.wait(10)

    for i in range(30):
        h.put(event_body(f"job-{i}"))
    h.start()
    time.sleep(1)
    assert h.stats.get("received") == 5  # 2 running + 3 waiting, no more
    release.set()
    wait_for(lambda: h.stats.get("deleted") == 30)
    h.stop()
    assert max(peak) <= 5


def test_router_cache_stays_bounded_under_junk_event_types() -> None:
    from vod_events.decoder import decode
    from vod_events.router import Router

    router = Router()
    router.add(lambda event, ctx: None, ["AIVideoTagComplete"])
    for i in range(3 * Router.MAX_CACHED):
        router.routes_for(decode(event_body(f"j{i}", event_type=f"Junk{i}")))
    assert len(router._cache) <= Router.MAX_CACHED
    assert router.routes_for(decode(event_body("ok")))[0].event_types == frozenset(
        {"AIVideoTagComplete"}
    )


def test_queue_attributes_unreadable_at_start_are_read_after_the_first_receive(
    harness: Make,
) -> None:
    h = harness(visibility_timeout=7)
    h.router.add(lambda event, ctx: None)
    h.broker.fail_next("queue_info", TransportError("connection reset"))
    h.put(event_body("job-1"))
    h.start()
    wait_for(lambda: h.stats.get("deleted") == 1, timeout=15)
    assert h.consumer.queue_info is not None  # not the 30 s guess for the daemon's life
    assert h.consumer.queue_info.visibility_timeout == 7
    assert h.stop() == EXIT_OK


def test_a_refused_hand_back_is_tried_again_at_once(harness: Make) -> None:
    h = harness(redelivery=RedeliveryBackoff(initial=1, maximum=1))
    calls: list[int] = []

    @h.router.on()
    def fails_once(event: VodEvent, ctx: HandlerContext) -> None:
        calls.append(ctx.dequeue_count)
        if ctx.dequeue_count == 1:
            raise RuntimeError("try later")

    h.broker.fail_next("change_visibility", TransportError("connection reset"))
    h.put(event_body("job-1"))
    h.start()
    started = time.monotonic()
    wait_for(lambda: h.stats.get("deleted") == 1, timeout=25)
    # Handed back for 1 s on the second try; left alone it would come back only when the
    # queue's 30 s visibility lapsed.
    assert time.monotonic() - started < 15
    assert calls == [1, 1, 1, 2]  # three tries in process, then the redelivery
    assert h.stop() == EXIT_OK


def test_derived_extenders_count_the_messages_async_handlers_hold() -> None:
    from vod_events.consumer import Consumer
    from vod_events.router import Router

    def consumer(router: Router, settings: ConsumerSettings) -> Consumer:
        processor = helpers.processor(router, store=NullStore())
        return Consumer(
            lambda name: MemoryTransport(MemoryBroker(), name), QUEUE, processor, settings
        )

    async def awaiting(event: VodEvent, context: HandlerContext) -> None:
        pass

    sync_only, with_async = Router(), Router()
    sync_only.add(lambda event, context: None, ["*"], name="sync")
    with_async.add(awaiting, ["*"], name="async")
    settings = ConsumerSettings(pollers=1, workers=16)  # 16 + 16 prefetch
    assert consumer(sync_only, settings).extenders == 2
    # + async_concurrency (256) calls in flight: 288 messages, one extender per 128
    assert consumer(with_async, settings).extenders == 3
    assert consumer(with_async, ConsumerSettings(pollers=1, extenders=1)).extenders == 1
