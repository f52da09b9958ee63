"""The completion writer (vod_events/completions.py): handlers' completions written behind
the workers, in batches, on a real SQLite store; the key stays held until it is written."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import GatedStore

from vod_events.completions import CompletionWriter
from vod_events.dedupe import ClaimState, SQLiteStore
from vod_events.stats import Stats


@pytest.fixture
def store(tmp_path: Path) -> Iterator[GatedStore]:
    store = GatedStore(tmp_path / "d.sqlite3")
    yield store
    store.gate.set()
    store.close()


def running(writer: CompletionWriter) -> threading.Thread:
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    return thread


def claimed(store: SQLiteStore, *keys: str) -> None:
    for key in keys:
        assert store.claim(key).state is ClaimState.CLAIMED


def test_a_key_stays_held_until_written_then_is_completed_for_everyone(
    store: GatedStore, tmp_path: Path
) -> None:
    other = SQLiteStore(tmp_path / "d.sqlite3")  # another process's
    claimed(store, "k")
    writer = CompletionWriter(store, Stats(), max_wait=60)
    thread = running(writer)
    writer.submit("k")  # returns at once: the write waits for the gate
    assert store.entered.wait(5)
    assert not store.wait_for("k", timeout=0)  # a duplicate here would wait for it
    assert store.claim("k").mine
    assert other.claim("k").state is ClaimState.IN_PROGRESS  # one elsewhere is deferred
    store.gate.set()
    assert writer.flush(timeout=5)
    assert store.wait_for("k", timeout=0)
    assert other.claim("k").state is ClaimState.COMPLETED
    writer.close()
    thread.join(5)
    assert not thread.is_alive()
    other.close()


def test_keys_that_arrive_during_a_write_go_in_the_next_one_together(store: GatedStore) -> None:
    keys = [f"k{i}" for i in range(50)]
    claimed(store, *keys)
    writer = CompletionWriter(store, Stats(), max_wait=60)
    thread = running(writer)
    writer.submit(keys[0])
    assert store.entered.wait(5)  # the writer is busy with the first key
    for key in keys[1:]:
        writer.submit(key)
    assert writer.pending() == 50
    store.gate.set()
    assert writer.flush(timeout=5)
    assert store.batches == [keys[:1], keys[1:]]
    assert all(store.claim(key).state is ClaimState.COMPLETED for key in keys)
    writer.close()
    thread.join(5)


def test_close_writes_what_is_pending_and_later_keys_are_written_at_once(
    store: GatedStore,
) -> None:
    claimed(store, "a", "b", "late")
    writer = CompletionWriter(store, Stats(), max_wait=60)
    thread = running(writer)
    writer.submit("a")
    assert store.entered.wait(5)
    writer.submit("b")
    writer.close()
    store.gate.set()
    thread.join(5)
    assert not thread.is_alive()
    assert store.batches == [["a"], ["b"]]
    writer.submit("late")  # a handler abandoned at shutdown finishing: nobody else writes
    assert store.batches[-1] == ["late"]
    assert store.claim("late").state is ClaimState.COMPLETED


def test_submit_waits_for_room_when_max_pending_keys_wait(store: GatedStore) -> None:
    claimed(store, "a", "b", "c", "d")
    writer = CompletionWriter(store, Stats(), max_pending=2, max_wait=60)
    thread = running(writer)
    writer.submit("a")
    assert store.entered.wait(5)  # "a" is being written; two more fill the room
    writer.submit("b")
    writer.submit("c")
    blocked = threading.Thread(target=writer.submit, args=("d",), daemon=True)
    blocked.start()
    blocked.join(0.3)
    assert blocked.is_alive()  # the workers slow down with the store, keys do not pile up
    store.gate.set()
    blocked.join(5)
    assert not blocked.is_alive()
    assert writer.flush(timeout=5)
    assert all(store.claim(key).state is ClaimState.COMPLETED for key in "abcd")
    writer.close()
    thread.join(5)


def test_a_failed_write_is_counted_and_its_keys_left_to_their_lease(
    store: GatedStore, caplog: pytest.LogCaptureFixture
) -> None:
    claimed(store, "a", "b")
    store.fail = True
    store.gate.set()
    stats = Stats()
    watched: list[str] = []

    @contextlib.contextmanager
    def watch(what: str) -> Iterator[None]:
        watched.append(what)
        yield

    writer = CompletionWriter(store, stats, watch=watch, max_wait=60)
    thread = running(writer)
    writer.submit("a")
    writer.submit("b")
    assert writer.flush(timeout=5)
    assert stats.snapshot().counters["completion_failures"] == 2
    logged = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    assert any(
        "recording handler completions failed" in str(m["event"]) and m["keys"] == 2 for m in logged
    )
    assert store.wait_for("a", timeout=0)  # let go: no longer renewed
    assert store.claim("a").state is ClaimState.IN_PROGRESS  # its row waits for its lease
    assert watched and set(watched) == {"record completions"}
    assert thread.is_alive()  # the writer goes on
    store.fail = False
    claimed(store, "c")
    writer.submit("c")
    assert writer.flush(timeout=5)
    assert store.claim("c").state is ClaimState.COMPLETED
    writer.close()
    thread.join(5)


def test_a_key_that_waited_max_wait_has_the_next_submitter_write_the_batch(
    store: GatedStore,
) -> None:
    """On a saturated CPU the writer thread may wait long for the GIL: a worker then writes."""
    claimed(store, "a", "b", "c")
    store.gate.set()
    writer = CompletionWriter(store, Stats(), max_wait=0.01)  # no writer thread at all
    writer.submit("a")
    assert store.batches == []  # left for the writer thread
    time.sleep(0.02)
    writer.submit("b")  # "a" has waited longer than max_wait: this caller writes both
    assert store.batches == [["a", "b"]]
    assert writer.pending() == 0
    writer.submit("c")  # the clock starts again
    assert store.batches == [["a", "b"]]
    assert writer.pending() == 1
