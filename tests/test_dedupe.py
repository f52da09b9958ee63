"""The idempotency stores: the claim → completed / released state machine, checked against a
model with hypothesis, for the in-memory and SQLite stores (two "processes" sharing a file),
and against a real Redis for the fleet backend."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from vod_events.dedupe import (
    Claim,
    ClaimState,
    IdempotencyStore,
    MemoryStore,
    RedisStore,
    SQLiteStore,
)

CLAIM_TTL = 10.0
DONE_TTL = 100.0
KEYS = st.sampled_from(["a", "b", "c"])


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class StoreModel(RuleBasedStateMachine):
    """Two store instances (two processes) on one backend, against a dictionary model."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        # key -> ("progress", owner index, expiry) | ("done", -1, expiry)
        self.model: dict[str, tuple[str, int, float]] = {}
        self.stores: list[IdempotencyStore] = []

    def make_stores(self) -> list[IdempotencyStore]:
        raise NotImplementedError

    @initialize()
    def setup(self) -> None:
        self.stores = self.make_stores()

    def _live(self, key: str) -> tuple[str, int, float] | None:
        row = self.model.get(key)
        return row if row is not None and row[2] > self.clock.now else None

    @rule(who=st.integers(0, 1), key=KEYS)
    def claim(self, who: int, key: str) -> None:
        row = self._live(key)
        if row is not None and row[0] == "progress" and self._same(row[1], who):
            return  # a process never claims a key it already holds (one message, one worker)
        result = self.stores[who].claim(key)
        if row is None:
            assert result == Claim(ClaimState.CLAIMED)
            self.model[key] = ("progress", who, self.clock.now + CLAIM_TTL)
        elif row[0] == "done":
            assert result.state is ClaimState.COMPLETED
        else:
            assert result.state is ClaimState.IN_PROGRESS
            assert 0 < result.retry_after <= CLAIM_TTL

    @rule(key=KEYS)
    def complete(self, key: str) -> None:
        row = self.model.get(key)
        if row is None or row[0] != "progress":
            return
        self.stores[row[1]].complete(key)
        self.model[key] = ("done", -1, self.clock.now + DONE_TTL)

    @rule(key=KEYS)
    def release(self, key: str) -> None:
        row = self.model.get(key)
        if row is None or row[0] != "progress":
            return
        # The model's row is the releaser's own (a takeover would have changed its owner).
        self.stores[row[1]].release(key)
        del self.model[key]

    @rule(who=st.integers(0, 1))
    def renew(self, who: int) -> None:
        self.stores[who].renew()
        # Renewal extends every claim the process still owns, even one past its expiry
        # that nobody took over: its handler is still running.
        for key, row in list(self.model.items()):
            if row[0] == "progress" and self._same(row[1], who):
                self.model[key] = ("progress", row[1], self.clock.now + CLAIM_TTL)

    def _same(self, a: int, b: int) -> bool:
        return self.stores[a] is self.stores[b]

    @rule(seconds=st.sampled_from([1.0, 5.0, 11.0, 150.0]))
    def advance(self, seconds: float) -> None:
        self.clock.now += seconds

    @invariant()
    def at_most_one_live_claimer(self) -> None:
        for key, row in self.model.items():
            if row[0] == "progress" and row[2] > self.clock.now:
                other = self.stores[1 - row[1]].claim(key) if self.stores else None
                if other is not None:
                    assert other.state is ClaimState.IN_PROGRESS

    def teardown(self) -> None:
        for store in self.stores:
            store.close()


class MemoryModel(StoreModel):
    def make_stores(self) -> list[IdempotencyStore]:
        # Memory is per process: both "processes" are the one store, which must still
        # refuse a second claim of a live key.
        store = MemoryStore(CLAIM_TTL, DONE_TTL, clock=self.clock)
        return [store, store]


class SQLiteModel(StoreModel):
    def make_stores(self) -> list[IdempotencyStore]:
        path = Path(self.tmp) / f"{uuid.uuid4().hex}.sqlite3"
        return [SQLiteStore(path, CLAIM_TTL, DONE_TTL, clock=self.clock) for _ in range(2)]

    tmp = ""


TestMemoryStoreModel = MemoryModel.TestCase
TestMemoryStoreModel.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestSQLiteStoreModel = SQLiteModel.TestCase
TestSQLiteStoreModel.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)


@pytest.fixture(autouse=True)
def _sqlite_tmp(tmp_path: Path) -> None:
    SQLiteModel.tmp = str(tmp_path)


def claim_winners(stores: list[IdempotencyStore]) -> int:
    """Every store claims one key at the same instant, each from its own thread; then closes."""
    wins: list[int] = []
    barrier = threading.Barrier(len(stores))

    def contend(store: IdempotencyStore) -> None:
        barrier.wait()
        if store.claim("same-key").state is ClaimState.CLAIMED:
            wins.append(1)

    threads = [threading.Thread(target=contend, args=(store,)) for store in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for store in stores:
        store.close()
    return len(wins)


def test_sqlite_claims_are_exclusive_across_threads(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite3"
    stores = [SQLiteStore(path) for _ in range(4)]
    assert claim_winners([stores[i % 4] for i in range(8)]) == 1


def test_sqlite_state_survives_a_new_process(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite3"
    first = SQLiteStore(path)
    assert first.claim("k").state is ClaimState.CLAIMED
    first.complete("k")
    first.close()
    again = SQLiteStore(path)
    assert again.claim("k").state is ClaimState.COMPLETED
    again.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    url = "redis://127.0.0.1:6379/15"
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail("Redis is not running on 127.0.0.1:6379 (see the README's test setup)")
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


def test_redis_claim_complete_release_and_expiry(redis_url: str) -> None:
    prefix = f"t-{uuid.uuid4().hex}:"
    a = RedisStore(redis_url, claim_ttl=0.3, completed_ttl=60, prefix=prefix)
    b = RedisStore(redis_url, claim_ttl=0.3, completed_ttl=60, prefix=prefix)
    assert a.claim("k1").state is ClaimState.CLAIMED
    busy = b.claim("k1")
    assert busy.state is ClaimState.IN_PROGRESS
    assert 0 < busy.retry_after <= 0.3
    a.complete("k1")
    assert b.claim("k1").state is ClaimState.COMPLETED

    assert a.claim("k2").state is ClaimState.CLAIMED
    a.release("k2")
    assert b.claim("k2").state is ClaimState.CLAIMED  # released: free for b

    # a crashed claimer's key frees itself after claim_ttl; a late release by the old
    # owner must not delete the new owner's claim
    assert a.claim("k3").state is ClaimState.CLAIMED
    threading.Event().wait(0.4)
    assert b.claim("k3").state is ClaimState.CLAIMED
    a.release("k3")
    assert a.claim("k3").state is ClaimState.IN_PROGRESS
    a.close()
    b.close()


def test_redis_renew_keeps_a_long_claim(redis_url: str) -> None:
    prefix = f"t-{uuid.uuid4().hex}:"
    a = RedisStore(redis_url, claim_ttl=0.3, prefix=prefix)
    b = RedisStore(redis_url, claim_ttl=0.3, prefix=prefix)
    assert a.claim("k").state is ClaimState.CLAIMED
    for _ in range(4):
        threading.Event().wait(0.15)
        a.renew()
    assert b.claim("k").state is ClaimState.IN_PROGRESS  # 0.6 s later, still held
    a.close()
    b.close()


def test_redis_claims_are_exclusive_across_clients(redis_url: str) -> None:
    prefix = f"t-{uuid.uuid4().hex}:"
    assert claim_winners([RedisStore(redis_url, prefix=prefix) for _ in range(8)]) == 1


def test_sqlite_late_release_does_not_free_a_claim_taken_over(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "d.sqlite3"
    crashed, other = (SQLiteStore(path, CLAIM_TTL, DONE_TTL, clock=clock) for _ in range(2))
    assert crashed.claim("k").state is ClaimState.CLAIMED
    clock.now += CLAIM_TTL + 1  # the first claimer stalled past its claim
    assert other.claim("k").state is ClaimState.CLAIMED
    crashed.release("k")  # it wakes up and gives up: must not touch the new claim
    assert crashed.claim("k").state is ClaimState.IN_PROGRESS
    other.complete("k")
    assert crashed.claim("k").state is ClaimState.COMPLETED
    crashed.close()
    other.close()
