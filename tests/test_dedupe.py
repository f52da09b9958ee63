"""The idempotency stores' claim → completed / released state machine, checked against a
model with hypothesis, for the in-memory and SQLite stores (two "processes" sharing a file).

What every backend must do - Redis included, and two stores sharing one backend - is the
contract suite's: tests/contracts/test_store_contract.py."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from helpers import ManualClock
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from pytest_mock import MockerFixture

from vod_events.dedupe import (
    Claim,
    ClaimState,
    HeldClaims,
    IdempotencyStore,
    MemoryStore,
    SQLiteStore,
    sqlite_has_json,
)

CLAIM_TTL = 10.0
DONE_TTL = 100.0
KEYS = st.sampled_from(["a", "b", "c"])


class StoreModel(RuleBasedStateMachine):
    """Two store instances (two processes) on one backend, against a dictionary model."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = ManualClock()
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

    @rule(who=st.integers(0, 1), keys=st.lists(KEYS, max_size=4))
    def claim_many(self, who: int, keys: list[str]) -> None:
        rows = {key: self._live(key) for key in keys}
        if any(
            r is not None and r[0] == "progress" and self._same(r[1], who) for r in rows.values()
        ):
            return  # as in `claim`: never a key this process holds
        result = self.stores[who].claim_many(keys)
        assert set(result) <= set(keys)
        for key, row in rows.items():
            if row is None:  # both stores batch: an absent key is always settled
                assert result[key] == Claim(ClaimState.CLAIMED)
                self.model[key] = ("progress", who, self.clock.now + CLAIM_TTL)
            elif row[0] == "done":
                assert result[key].state is ClaimState.COMPLETED
            else:  # in progress elsewhere: left for `claim`
                assert key not in result

    @rule(keys=st.lists(KEYS, max_size=3, unique=True))
    def complete_many(self, keys: list[str]) -> None:
        owners = {row[1] for key in keys if (row := self.model.get(key)) is not None}
        if len(owners) != 1 or any(self.model.get(k, ("",))[0] != "progress" for k in keys):
            return  # one process completes the keys it holds
        self.stores[owners.pop()].complete_many(keys)
        for key in keys:
            self.model[key] = ("done", -1, self.clock.now + DONE_TTL)

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


def test_without_sqlite_json_keys_are_claimed_and_completed_one_by_one(
    tmp_path: Path, mocker: MockerFixture
) -> None:
    """An SQLite built without its JSON functions cannot run the batch statements: the
    store then leaves every key to `claim` and completes a batch key by key."""
    mocker.patch("vod_events.dedupe.sqlite_has_json", return_value=False)
    store = SQLiteStore(tmp_path / "old.sqlite3", CLAIM_TTL, DONE_TTL)
    assert store.claim_many(["a", "b"]) == {}
    assert store.claim("a") == Claim(ClaimState.CLAIMED)
    assert store.claim("b") == Claim(ClaimState.CLAIMED)
    store.complete_many(["a", "b"])
    assert store.claim("a").state is ClaimState.COMPLETED
    assert store.claim("b").state is ClaimState.COMPLETED
    store.close()


def test_sqlite_here_has_json() -> None:
    """The batch statements run where the suite runs (else the fallback above is all
    the suite would check)."""
    db = sqlite3.connect(":memory:")
    assert sqlite_has_json(db)
    db.close()


def test_a_claim_let_go_after_it_was_read_is_still_this_stores_own() -> None:
    """A key held when the claimer looked, whose completion landed (and let it go) before
    the claimer compared owners, is reported as this store's: the duplicate waits for its
    own and looks again, instead of being deferred as if another process held it."""
    held = HeldClaims()
    held.add("k", "token-1")
    before = held.token("k")
    held.pop("k")  # the completion writer, between the claimer's read and its check
    assert held.in_progress("k", "token-1", 10.0, 0.0, before).mine
    assert not held.in_progress("k", "token-1", 10.0, 0.0).mine  # let go, nothing seen
    assert not held.in_progress("k", "someone-else", 10.0, 0.0, before).mine
