"""The consumer's two batching buffers: in-flight slots for pollers, the delete queue."""

from __future__ import annotations

import threading

from vod_events.consumer import MAX_BATCH, DeleteQueue, InFlight, Slots
from vod_events.transports import ReceivedMessage


def entry(n: int) -> InFlight:
    message = ReceivedMessage(f"id-{n}", f"handle-{n}", "{}", 1, 0, 0, 0)
    return InFlight(message, message.receipt_handle, deadline=0.0)


def test_delete_queue_hands_out_full_batches_then_the_rest_after_close() -> None:
    deletes = DeleteQueue(capacity=64, flush_seconds=3600.0)  # no flush by time in this test
    for n in range(20):
        deletes.put(entry(n))
    first = deletes.take()
    assert first is not None
    assert [e.handle for e in first] == [f"handle-{n}" for n in range(MAX_BATCH)]
    deletes.close()
    rest = deletes.take()
    assert rest is not None
    assert [e.handle for e in rest] == [f"handle-{n}" for n in range(MAX_BATCH, 20)]
    assert deletes.take() is None


def test_delete_queue_flushes_a_partial_batch_once_its_oldest_is_due() -> None:
    deletes = DeleteQueue(capacity=64, flush_seconds=0.0)
    deletes.put(entry(1))
    deletes.put(entry(2))
    batch = deletes.take()
    assert batch is not None
    assert [e.handle for e in batch] == ["handle-1", "handle-2"]


def test_delete_queue_close_wakes_an_idle_deleter() -> None:
    deletes = DeleteQueue(capacity=64, flush_seconds=3600.0)
    taken: list[list[InFlight] | None] = []
    deleter = threading.Thread(target=lambda: taken.append(deletes.take()))
    deleter.start()
    deletes.close()
    deleter.join(timeout=10)
    assert taken == [None]


def test_slots_hand_out_a_batch_or_what_is_free_once_patience_runs_out() -> None:
    stopping = threading.Event()
    slots = Slots(64, batch=16, patience=0.0)
    assert [slots.take_up_to(16, stopping) for _ in range(4)] == [16, 16, 16, 16]
    slots.give_back(3)
    assert slots.take_up_to(16, stopping) == 3  # fewer than a batch, patience 0: take them
    slots.give_back(20)
    assert slots.take_up_to(16, stopping) == 16
    assert slots.free == 4


def test_slots_batch_never_exceeds_the_capacity() -> None:
    slots = Slots(5, batch=16, patience=3600.0)
    assert slots.batch == 5
    assert slots.take_up_to(16, threading.Event()) == 5  # the whole capacity is a batch
