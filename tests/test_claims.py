"""Claims as leases: a dead owner's claim is taken over at once on its host, a live one is
waited for, completions survive transient store errors, deferrals are counted per message.

Each test runs against every store that keeps claims across processes (sqlite, redis) and,
where it is about one process, the memory store too. The owner that dies is a real process
killed with SIGKILL.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vod_events.dedupe import (
    ClaimState,
    IdempotencyStore,
    MemoryStore,
    RedisStore,
    SQLiteStore,
    StoreError,
    renew_interval,
)
from vod_events.owners import OwnerTokens, ProcessIdentity

StoreFactory = Callable[[], IdempotencyStore]


# A child process that claims `key` in the given store, prints "claimed", then sleeps until
# killed: a worker that dies mid-handler.
CLAIMER = """
import sys, time
from vod_events.dedupe import SQLiteStore, RedisStore
kind, where, key, prefix = sys.argv[1:5]
if kind == "sqlite":
    store = SQLiteStore(where, claim_ttl=600)
else:
    store = RedisStore(where, claim_ttl=600, prefix=prefix)
assert store.claim(key).state.value == "claimed"
print("claimed", flush=True)
time.sleep(600)
"""


@pytest.fixture(params=["sqlite", "redis"])
def shared_backend(
    request: pytest.FixtureRequest, tmp_path: Path, redis_url: str
) -> Iterator[tuple[str, str, str, StoreFactory]]:
    """(kind, where, prefix, factory): a backend that several processes can share."""
    kind: str = request.param
    prefix = f"vod-events-test:{uuid.uuid4().hex}:"
    made: list[IdempotencyStore] = []
    if kind == "sqlite":
        where = str(tmp_path / "dedupe.sqlite3")

        def make() -> IdempotencyStore:
            made.append(SQLiteStore(where, claim_ttl=600))
            return made[-1]
    else:
        where = redis_url

        def make() -> IdempotencyStore:
            made.append(RedisStore(where, claim_ttl=600, prefix=prefix))
            return made[-1]

    yield kind, where, prefix, make
    if kind == "redis":
        import redis

        client = redis.Redis.from_url(redis_url)
        keys = list(client.scan_iter(match=f"{prefix}*"))
        if keys:
            client.delete(*keys)  # only what this test wrote
        client.close()
    for store in made:
        store.close()


def _start_claimer(kind: str, where: str, key: str, prefix: str) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CLAIMER, kind, where, key, prefix],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "claimed"
    return child


def test_a_claim_of_a_killed_process_on_this_host_is_taken_over_at_once(
    shared_backend: tuple[str, str, str, StoreFactory],
) -> None:
    kind, where, prefix, make = shared_backend
    child = _start_claimer(kind, where, "event|handler", prefix)
    store = make()
    try:
        busy = store.claim("event|handler")
        assert busy.state is ClaimState.IN_PROGRESS  # alive: its 600 s lease is respected
        assert not busy.mine
        assert busy.retry_after > 500
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    # Dead now: no need to wait 600 s for the lease.
    assert store.claim("event|handler").state is ClaimState.CLAIMED
    assert make().claim("event|handler").state is ClaimState.IN_PROGRESS  # and it is ours


def test_a_live_owner_elsewhere_is_never_judged_dead() -> None:
    ours = ProcessIdentity.current()
    other_host = ProcessIdentity("another-host", ours.pid_namespace, 1, "1")
    assert not ours.owner_is_dead(OwnerTokens(other_host).new())
    other_namespace = ProcessIdentity(ours.host, "[1]", 1, "1")
    assert not ours.owner_is_dead(OwnerTokens(other_namespace).new())
    assert not ours.owner_is_dead("not a token")
    assert not ours.owner_is_dead(OwnerTokens(ours).new())  # ourselves
    # Our PID, but another start time: a previous process that had our PID.
    previous = ProcessIdentity(ours.host, ours.pid_namespace, ours.pid, "0")
    assert ours.owner_is_dead(OwnerTokens(previous).new())
    parent = ProcessIdentity.current()
    assert parent.started  # /proc is readable here, or the takeover tests prove nothing


def test_another_thread_of_this_process_holding_the_claim_is_waited_for(
    tmp_path: Path,
) -> None:
    for store in (MemoryStore(), SQLiteStore(tmp_path / "d.sqlite3")):
        assert store.claim("k").state is ClaimState.CLAIMED
        busy = store.claim("k")
        assert busy.state is ClaimState.IN_PROGRESS
        assert busy.mine
        assert not store.wait_for("k", timeout=0.05)  # still held
        timer = threading.Timer(0.2, store.complete, args=("k",))
        timer.start()
        started = time.monotonic()
        assert store.wait_for("k", timeout=10)
        assert time.monotonic() - started < 5
        assert store.claim("k").state is ClaimState.COMPLETED
        timer.join()
        store.close()


def test_another_store_of_this_process_is_not_mine(tmp_path: Path) -> None:
    a, b = SQLiteStore(tmp_path / "d.sqlite3"), SQLiteStore(tmp_path / "d.sqlite3")
    assert a.claim("k").state is ClaimState.CLAIMED
    busy = b.claim("k")
    assert busy.state is ClaimState.IN_PROGRESS
    assert not busy.mine


class _FlakyConnection:
    """A SQLite connection whose completion writes fail `failures` times."""

    def __init__(
        self,
        store: SQLiteStore,
        failures: int,
        connection: Callable[[], sqlite3.Connection] | None = None,
    ) -> None:
        self.store = store
        self.failures = failures
        self.held_while_failing: list[bool] = []
        self._real = connection or store._connection

    def __call__(self) -> _FlakyConnection:
        return self

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.startswith("INSERT OR REPLACE") and self.failures:
            self.failures -= 1
            # Still held while the write fails: the heartbeat keeps renewing it.
            self.held_while_failing.append(any(k == "k" for k, _ in self.store._held.items()))
            raise sqlite3.OperationalError("database is locked")
        return self._real().execute(sql, *args)


def test_a_completion_is_retried_and_the_key_stays_renewed_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(tmp_path / "d.sqlite3", claim_ttl=600)
    other = SQLiteStore(tmp_path / "d.sqlite3", claim_ttl=600)
    assert store.claim("k").state is ClaimState.CLAIMED
    flaky = _FlakyConnection(store, failures=2)
    monkeypatch.setattr(store, "_connection", flaky)
    store.complete("k")
    assert flaky.failures == 0
    assert flaky.held_while_failing == [True, True]
    assert other.claim("k").state is ClaimState.COMPLETED


def test_a_batch_of_completions_is_retried_and_its_keys_stay_renewed_meanwhile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SQLiteStore(tmp_path / "d.sqlite3", claim_ttl=600)
    other = SQLiteStore(tmp_path / "d.sqlite3", claim_ttl=600)
    keys = ["k", "b", "c"]
    for key in keys:
        assert store.claim(key).state is ClaimState.CLAIMED
    flaky = _FlakyConnection(store, failures=2, connection=store._batch_connection)
    monkeypatch.setattr(store, "_batch_connection", flaky)
    store.complete_many(keys)
    assert flaky.failures == 0
    assert flaky.held_while_failing == [True, True]
    assert store._held.items() == []
    assert [other.claim(key).state for key in keys] == [ClaimState.COMPLETED] * 3


def test_a_completion_that_keeps_failing_raises_and_leaves_the_key_to_its_lease(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    store = SQLiteStore(tmp_path / "d.sqlite3", claim_ttl=30, clock=lambda: clock[0])
    other = SQLiteStore(tmp_path / "d.sqlite3", claim_ttl=30, clock=lambda: clock[0])
    assert store.claim("k").state is ClaimState.CLAIMED
    monkeypatch.setattr(store, "_connection", _FlakyConnection(store, failures=100))
    with pytest.raises(StoreError, match="database is locked"):
        store.complete("k")
    assert store._held.items() == []  # no longer renewed
    assert other.claim("k").state is ClaimState.IN_PROGRESS
    clock[0] += 31  # the lease lapses: a redelivery may run the handler again
    assert other.claim("k").state is ClaimState.CLAIMED


def test_deferrals_are_counted_per_message(
    shared_backend: tuple[str, str, str, StoreFactory],
) -> None:
    _, _, _, make = shared_backend
    a, b = make(), make()
    message = f"msg-{uuid.uuid4().hex}"
    assert a.deferrals(message) == 0
    assert a.count_deferral(message) == 1
    assert b.count_deferral(message) == 2  # shared by every replica
    assert a.deferrals(message) == 2
    assert b.deferrals("another") == 0


def test_memory_store_drops_expired_rows() -> None:
    clock = [0.0]
    store = MemoryStore(claim_ttl=5, completed_ttl=60, clock=lambda: clock[0])
    for i in range(store.PURGE_EVERY - 1):
        store.claim(f"k{i}")
        store.complete(f"k{i}")
    store.count_deferral("m")
    clock[0] = 61
    store.claim("trigger")  # the PURGE_EVERY-th claim purges
    assert len(store._rows) == 1
    assert store._deferrals == {}


def test_renew_interval_leaves_room_for_two_failed_renewals() -> None:
    assert renew_interval(MemoryStore(claim_ttl=15)) == 5.0


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_renewed_claim_outlives_its_ttl(kind: str, tmp_path: Path, redis_url: str) -> None:
    prefix = f"vod-events-test:{uuid.uuid4().hex}:"
    make: Callable[[], IdempotencyStore] = (
        (lambda: SQLiteStore(tmp_path / "d.sqlite3", claim_ttl=1.0))
        if kind == "sqlite"
        else (lambda: RedisStore(redis_url, claim_ttl=1.0, prefix=prefix))
    )
    owner, other = make(), make()
    try:
        assert owner.claim("k").state is ClaimState.CLAIMED
        for _ in range(4):  # 1.6 s in all, longer than the 1 s lease
            time.sleep(0.4)
            owner.renew()
            assert other.claim("k").state is ClaimState.IN_PROGRESS
        time.sleep(1.2)  # no renewal: the lease lapses
        assert other.claim("k").state is ClaimState.CLAIMED
    finally:
        owner.release("k")
        other.release("k")
        owner.close()
        other.close()


def test_a_batch_of_completions_does_not_queue_behind_the_claims(tmp_path: Path) -> None:
    """Claims and completion batches use two connections: a claimer holding its turn (on a
    busy CPU: waiting for the GIL after its statement) does not hold up the completions,
    whose wait is the window in which a SIGKILL means a handler runs again."""
    store = SQLiteStore(tmp_path / "d.sqlite3")
    other = SQLiteStore(tmp_path / "d.sqlite3")
    assert store.claim("k").state is ClaimState.CLAIMED
    with store._lock:  # the claims' connection is taken
        writing = threading.Thread(target=store.complete_many, args=(["k"],))
        writing.start()
        writing.join(5)
        assert not writing.is_alive()
    assert other.claim("k").state is ClaimState.COMPLETED
    store.close()
    other.close()
