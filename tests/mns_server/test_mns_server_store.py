"""The queue store's semantics on a hand-driven clock: the rules that take minutes or days on
the wall clock (retention, long delays, handle lifetimes) checked in microseconds."""

from __future__ import annotations

import asyncio

import pytest

from vod_events.mns_server.errors import MNSError
from vod_events.mns_server.longpoll import ArrivalSignals
from vod_events.mns_server.model import (
    OutgoingMessage,
    QueueAttributes,
    QueueAttributeUpdate,
)
from vod_events.mns_server.queues import QueueStore, list_page


class Clock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> QueueStore:
    s = QueueStore(clock=clock)
    s.create_queue("q", QueueAttributeUpdate(visibility_timeout=10, message_retention_period=60))
    return s


def counts(store: QueueStore, name: str = "q") -> tuple[int, int, int]:
    info = store.queue_info(name)
    return info.active_messages, info.inactive_messages, info.delay_messages


def test_retention_period_expires_messages(store: QueueStore, clock: Clock) -> None:
    store.send("q", [OutgoingMessage("old")])
    clock.advance(30)
    store.send("q", [OutgoingMessage("young")])
    clock.advance(31)  # "old" is 61 s old: past the 60 s retention
    assert counts(store) == (1, 0, 0)
    assert [m.body for m in store.receive("q", 16)] == ["young"]


def test_expired_message_cannot_be_received_even_in_flight(store: QueueStore, clock: Clock) -> None:
    store.send("q", [OutgoingMessage("short-lived")])
    held = store.receive("q", 1)[0]
    assert held.receipt_handle is not None
    store.change_visibility("q", held.receipt_handle, 60)  # held until it is 60 s old
    clock.advance(59)
    assert counts(store) == (0, 1, 0)
    clock.advance(2)  # visible again, but 61 s old: gone
    assert store.receive("q", 1) == []
    assert counts(store) == (0, 0, 0)


def test_delay_and_counts(store: QueueStore, clock: Clock) -> None:
    store.send("q", [OutgoingMessage("now"), OutgoingMessage("later", delay_seconds=5)])
    assert counts(store) == (1, 0, 1)
    store.receive("q", 1)
    assert counts(store) == (0, 1, 1)
    clock.advance(5)  # the delayed one is due; the received one is invisible for 5 s more
    assert counts(store) == (1, 1, 0)
    assert store.next_due_ms("q") == int((clock.now + 5) * 1000)


def test_queue_default_delay_applies_when_message_has_none(clock: Clock) -> None:
    store = QueueStore(clock=clock)
    store.create_queue("slow", QueueAttributeUpdate(delay_seconds=5))
    store.send("slow", [OutgoingMessage("a"), OutgoingMessage("b", delay_seconds=0)])
    assert [m.body for m in store.receive("slow", 16)] == ["b"]
    clock.advance(5)
    assert [m.body for m in store.receive("slow", 16)] == ["a"]


def test_handle_dies_exactly_at_next_visible_time(store: QueueStore, clock: Clock) -> None:
    store.send("q", [OutgoingMessage("x")])
    held = store.receive("q", 1)[0]
    assert held.receipt_handle is not None
    assert held.next_visible_time == int(clock.now * 1000) + 10_000
    clock.advance(9.999)
    renewed, next_visible = store.change_visibility("q", held.receipt_handle, 10)
    clock.advance(10)
    with pytest.raises(MNSError) as dead:
        store.delete_message("q", renewed)
    assert dead.value.code == "MessageNotExist"
    assert next_visible == int(clock.now * 1000)


def test_redelivery_keeps_id_and_first_dequeue_time(store: QueueStore, clock: Clock) -> None:
    store.send("q", [OutgoingMessage("again")])
    first = store.receive("q", 1)[0]
    clock.advance(10)
    second = store.receive("q", 1)[0]
    assert (second.message_id, second.dequeue_count) == (first.message_id, 2)
    assert second.first_dequeue_time == first.first_dequeue_time
    assert second.receipt_handle != first.receipt_handle


def test_priority_then_arrival_order(store: QueueStore) -> None:
    store.send(
        "q",
        [
            OutgoingMessage("p8-a"),
            OutgoingMessage("p2", priority=2),
            OutgoingMessage("p8-b"),
            OutgoingMessage("p1", priority=1),
        ],
    )
    assert [m.body for m in store.peek("q", 16)] == ["p1", "p2", "p8-a", "p8-b"]
    assert [m.body for m in store.receive("q", 16)] == ["p1", "p2", "p8-a", "p8-b"]


def test_returning_message_goes_before_newer_ones(store: QueueStore, clock: Clock) -> None:
    store.send("q", [OutgoingMessage("first")])
    store.receive("q", 1)
    store.send("q", [OutgoingMessage("second")])
    clock.advance(10)
    assert [m.body for m in store.receive("q", 16)] == ["first", "second"]


def test_dead_letter_keeps_retention_clock(clock: Clock) -> None:
    store = QueueStore(clock=clock)
    store.create_queue(
        "src", QueueAttributeUpdate(visibility_timeout=5, message_retention_period=60)
    )
    store.create_queue("dlq", QueueAttributeUpdate(message_retention_period=600))
    store.set_dead_letter("src", "dlq", 1)
    store.send("src", [OutgoingMessage("doomed")])
    store.receive("src", 1)
    clock.advance(5)
    store.advance()  # the sweep moves it
    assert counts(store, "src") == (0, 0, 0)
    assert counts(store, "dlq") == (1, 0, 0)
    clock.advance(56)  # 61 s since it was first sent: the source queue's retention
    assert counts(store, "dlq") == (0, 0, 0)


def test_wake_reports_newly_visible_messages(store: QueueStore, clock: Clock) -> None:
    woken: list[tuple[str, int]] = []
    store.wake = lambda queue, count: woken.append((queue, count))
    store.send(
        "q", [OutgoingMessage("a"), OutgoingMessage("b"), OutgoingMessage("c", delay_seconds=3)]
    )
    clock.advance(3)
    store.advance()
    assert woken == [("q", 2), ("q", 1)]


def test_create_queue_uses_server_defaults(clock: Clock) -> None:
    store = QueueStore(clock=clock, default_attributes=QueueAttributes(visibility_timeout=7))
    assert store.create_queue("a", QueueAttributeUpdate()) is True
    assert store.queue_info("a").attributes.visibility_timeout == 7
    assert store.create_queue("a", QueueAttributeUpdate(visibility_timeout=7)) is False
    with pytest.raises(MNSError) as conflict:
        store.create_queue("a", QueueAttributeUpdate(visibility_timeout=30))
    assert conflict.value.code == "QueueAlreadyExist"


def test_list_page_markers() -> None:
    names = ["b", "a", "c", "d", "x-1"]
    assert list_page(names, "", "", 2) == (["a", "b"], "c")
    assert list_page(names, "", "c", 2) == (["c", "d"], "x-1")
    assert list_page(names, "", "x-1", 2) == (["x-1"], "")
    assert list_page(names, "x-", "", 1000) == (["x-1"], "")
    with pytest.raises(MNSError):
        list_page(names, "", "", 1001)


def test_signals_wake_oldest_waiters_first() -> None:
    signals = ArrivalSignals()
    order: list[str] = []

    async def wait(name: str, timeout: float) -> None:
        order.append(f"{name} {'woken' if await signals.wait('q', timeout) else 'timed out'}")

    async def scenario() -> None:
        first = asyncio.ensure_future(wait("first", 5))
        await asyncio.sleep(0)
        second = asyncio.ensure_future(wait("second", 5))
        third = asyncio.ensure_future(wait("third", 0.01))
        await asyncio.sleep(0)
        assert signals.waiting("q") == 3
        signals.wake("q", 1)
        await first
        await third
        signals.wake("q", 5)
        await second

    asyncio.run(scenario())
    assert order == ["first woken", "third timed out", "second woken"]
    assert signals.waiting("q") == 0


def test_cancelled_waiter_passes_its_wake_up_on() -> None:
    signals = ArrivalSignals()

    async def scenario() -> bool:
        doomed = asyncio.ensure_future(signals.wait("q", 5))
        await asyncio.sleep(0)
        patient = asyncio.ensure_future(signals.wait("q", 5))
        await asyncio.sleep(0)
        signals.wake("q", 1)  # wakes "doomed", which is cancelled before it can look
        doomed.cancel()
        return await patient

    assert asyncio.run(scenario()) is True
