"""The idempotency store contract (`IdempotencyStore` in vod_events/dedupe.py), one suite for
every backend.

A key moves (absent) -> IN_PROGRESS (claimed) -> COMPLETED, or back to absent when its owner
releases it or its lease (`claim_ttl`) lapses; `renew` extends the leases of the claims the
renewing store holds, and only those. The first tests run against every backend; the
`shared_backend` ones against the backends that several stores - several processes or
replicas - share, where "owner" means the store that claimed.

Stores are built in one place, `MAKERS`: a new backend, or a constructor that changes, is a
one-line edit there. Backends with an injectable clock move it; Redis keeps its leases in
real time, and PostgreSQL by the database server's clock (as in production: one clock for
every replica), so their tests sleep through short leases.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import ManualClock

from vod_events.dedupe import (
    Claim,
    ClaimState,
    IdempotencyStore,
    MemoryStore,
    NullStore,
    RedisStore,
    SQLiteStore,
)
from vod_events.postgres_store import PostgresStore

LONG_TTL = 60.0  # a lease no test outlives
SHORT_TTL = 1.0  # a lease tests let lapse
PAST = SHORT_TTL + 0.3  # long enough for a SHORT_TTL lease to lapse


@dataclass
class Where:
    """What a backend's stores need: the clock tests move, a directory, Redis and a prefix,
    PostgreSQL and a schema."""

    request: pytest.FixtureRequest
    tmp_path: Path
    clock: ManualClock = field(default_factory=ManualClock)

    @property
    def redis_url(self) -> str:
        url: str = self.request.getfixturevalue("redis_url")
        return url

    @property
    def redis_prefix(self) -> str:
        prefix: str = self.request.getfixturevalue("redis_prefix")  # its keys go afterwards
        return prefix

    @property
    def postgres_url(self) -> str:
        url: str = self.request.getfixturevalue("postgres_url")
        return url

    @property
    def postgres_schema(self) -> str:
        schema: str = self.request.getfixturevalue("postgres_schema")  # dropped afterwards
        return schema


# kind -> a new store on that kind's backend (every call shares the backend's data, but
# for memory, whose data is its own store's), given (where, claim_ttl, completed_ttl).
MAKERS: dict[str, Callable[[Where, float, float], IdempotencyStore]] = {
    "memory": lambda w, ttl, done: MemoryStore(ttl, done, clock=w.clock),
    "sqlite": lambda w, ttl, done: SQLiteStore(w.tmp_path / "d.sqlite3", ttl, done, clock=w.clock),
    "redis": lambda w, ttl, done: RedisStore(w.redis_url, ttl, done, prefix=w.redis_prefix),
    "postgres": lambda w, ttl, done: PostgresStore(
        w.postgres_url, claim_ttl=ttl, completed_ttl=done, schema=w.postgres_schema
    ),
}
# leases kept by the server's clock: time passes by sleeping
REAL_TIME = frozenset({"redis", "postgres"})
SHARED = ["sqlite", "redis", "postgres"]  # backends several stores (processes, replicas) share


@dataclass
class Backend:
    """Makes stores on one backend and lets time pass for their leases."""

    kind: str
    where: Where
    made: list[IdempotencyStore] = field(default_factory=list)

    def store(self, claim_ttl: float = LONG_TTL, completed_ttl: float = 3600.0) -> IdempotencyStore:
        made = MAKERS[self.kind](self.where, claim_ttl, completed_ttl)
        self.made.append(made)
        return made

    def advance(self, seconds: float) -> None:
        if self.kind in REAL_TIME:
            time.sleep(seconds)
        else:
            self.where.clock.advance(seconds)


def _backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    backend = Backend(request.param, Where(request, tmp_path))
    yield backend
    for store in backend.made:
        store.close()


@pytest.fixture(params=list(MAKERS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Every backend in turn."""
    yield from _backend(request, tmp_path)


@pytest.fixture(params=SHARED)
def shared_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Every backend that several stores (processes, replicas) share, in turn."""
    yield from _backend(request, tmp_path)


def in_progress(claim: Claim, ttl: float = LONG_TTL) -> bool:
    return claim.state is ClaimState.IN_PROGRESS and 0 < claim.retry_after <= ttl


def claimed_in_thread(store: IdempotencyStore, key: str) -> Claim:
    """`store.claim(key)` from another thread: another worker of the same process."""
    result: list[Claim] = []
    thread = threading.Thread(target=lambda: result.append(store.claim(key)))
    thread.start()
    thread.join(10)
    [claim] = result
    return claim


# ------------------------------------------------------------------- every backend


def test_a_claimed_key_is_in_progress_to_every_other_claim(backend: Backend) -> None:
    store = backend.store()
    assert store.claim("k").state is ClaimState.CLAIMED
    busy = claimed_in_thread(store, "k")  # a duplicate delivery on another worker
    assert in_progress(busy)
    assert busy.mine  # this store holds it: the worker can wait for it
    assert in_progress(store.claim("k"))


def test_a_completed_key_stays_completed(backend: Backend) -> None:
    store = backend.store()
    assert store.claim("k").state is ClaimState.CLAIMED
    store.complete("k")
    assert store.claim("k").state is ClaimState.COMPLETED
    assert claimed_in_thread(store, "k").state is ClaimState.COMPLETED
    store.renew()  # nothing held any more
    assert store.claim("k").state is ClaimState.COMPLETED


def test_complete_many_completes_every_key_and_lets_each_go(backend: Backend) -> None:
    store = backend.store()
    keys = [f"k{i}" for i in range(40)]
    for key in keys:
        assert store.claim(key).state is ClaimState.CLAIMED
    assert not store.wait_for("k0", timeout=0)  # held until written
    store.complete_many(keys)
    assert all(store.wait_for(key, timeout=0) for key in keys)
    assert all(store.claim(key).state is ClaimState.COMPLETED for key in keys)
    store.complete_many([])  # nothing to write: no error


def test_claim_many_answers_only_for_keys_it_settled(backend: Backend) -> None:
    store = backend.store()
    assert store.claim("busy").state is ClaimState.CLAIMED
    assert store.claim("done").state is ClaimState.CLAIMED
    store.complete("done")
    got = store.claim_many(["new-a", "new-b", "new-a", "busy", "done"])
    # "busy" is in progress: left to `claim`, which knows whose it is
    assert got == {
        "new-a": Claim(ClaimState.CLAIMED),
        "new-b": Claim(ClaimState.CLAIMED),
        "done": Claim(ClaimState.COMPLETED),
    }
    for key in ("new-a", "new-b"):  # taken: held by this store like any claim
        assert not store.wait_for(key, timeout=0)
        assert in_progress(claimed_in_thread(store, key))
    assert store.claim_many([]) == {}


def test_a_released_key_can_be_claimed_again(backend: Backend) -> None:
    store = backend.store()
    assert store.claim("k").state is ClaimState.CLAIMED
    store.release("k")
    assert store.claim("k").state is ClaimState.CLAIMED
    assert in_progress(store.claim("k"))


def test_keys_are_independent(backend: Backend) -> None:
    store = backend.store()
    assert store.claim("a").state is ClaimState.CLAIMED
    assert store.claim("b").state is ClaimState.CLAIMED
    store.complete("a")
    assert in_progress(store.claim("b"))
    store.release("b")
    store.release("never claimed")  # not held: nothing to do
    assert store.claim("a").state is ClaimState.COMPLETED
    assert store.claim("b").state is ClaimState.CLAIMED


def test_a_lapsed_claim_can_be_claimed_again(backend: Backend) -> None:
    store = backend.store(claim_ttl=SHORT_TTL)
    assert store.claim("k").state is ClaimState.CLAIMED
    backend.advance(PAST)  # its worker died without a word: no renewal, no release
    assert store.claim("k").state is ClaimState.CLAIMED


def test_a_batch_claim_takes_a_lapsed_key_and_leaves_a_live_one(backend: Backend) -> None:
    store = backend.store(claim_ttl=SHORT_TTL)
    assert store.claim("lapsed").state is ClaimState.CLAIMED
    backend.advance(PAST)  # its worker died without a word
    assert store.claim("live").state is ClaimState.CLAIMED
    assert store.claim_many(["lapsed", "live"]) == {"lapsed": Claim(ClaimState.CLAIMED)}
    assert in_progress(claimed_in_thread(store, "lapsed"))


def test_retry_after_is_the_time_left_on_the_lease(backend: Backend) -> None:
    store = backend.store(claim_ttl=SHORT_TTL)
    assert store.claim("k").state is ClaimState.CLAIMED
    first = store.claim("k")
    assert in_progress(first, SHORT_TTL)
    backend.advance(0.4)
    later = store.claim("k")
    assert in_progress(later, SHORT_TTL)
    assert later.retry_after <= first.retry_after - 0.3


def test_renew_keeps_a_claim_past_its_ttl(backend: Backend) -> None:
    store = backend.store(claim_ttl=SHORT_TTL)
    assert store.claim("k").state is ClaimState.CLAIMED
    for _ in range(3):  # 1.8 s in all, each step within the 1 s lease
        backend.advance(0.6)
        store.renew()
    assert in_progress(store.claim("k"), SHORT_TTL)
    backend.advance(PAST)  # renewals stop: the lease lapses
    assert store.claim("k").state is ClaimState.CLAIMED


def test_a_completion_is_kept_for_completed_ttl(backend: Backend) -> None:
    store = backend.store(completed_ttl=SHORT_TTL)
    assert store.claim("k").state is ClaimState.CLAIMED
    store.complete("k")
    backend.advance(0.5)
    assert store.claim("k").state is ClaimState.COMPLETED
    backend.advance(PAST)
    assert store.claim("k").state is ClaimState.CLAIMED


def test_wait_for_returns_when_the_holder_lets_the_key_go(backend: Backend) -> None:
    store = backend.store()
    assert store.wait_for("not held", timeout=0)
    assert store.claim("k").state is ClaimState.CLAIMED
    assert not store.wait_for("k", timeout=0.05)
    timer = threading.Timer(0.2, store.complete, args=("k",))
    timer.start()
    started = time.monotonic()
    assert store.wait_for("k", timeout=10)
    assert time.monotonic() - started < 5
    timer.join()
    assert store.claim("k").state is ClaimState.COMPLETED


def test_deferrals_are_counted_per_message(backend: Backend) -> None:
    store = backend.store()
    assert store.deferrals("m1") == 0
    assert store.count_deferral("m1") == 1
    assert store.count_deferral("m1") == 2
    assert store.deferrals("m1") == 2
    assert store.deferrals("m2") == 0


def test_the_null_store_runs_every_delivery() -> None:
    """Idempotency off: the one contract left is that nothing is ever skipped or waited for."""
    store = NullStore()
    assert store.claim("k").state is ClaimState.CLAIMED
    assert store.claim("k").state is ClaimState.CLAIMED  # not even a duplicate in flight
    store.complete("k")
    store.complete_many(["k", "j"])
    assert store.claim("k").state is ClaimState.CLAIMED  # not even a completed one
    store.release("k")
    store.renew()
    assert store.wait_for("k", timeout=0)
    assert store.count_deferral("m") == 0
    assert store.deferrals("m") == 0
    store.close()


# ------------------------------------------------- several stores sharing one backend


def test_only_one_store_claims_a_key(shared_backend: Backend) -> None:
    a, b = shared_backend.store(), shared_backend.store()
    assert a.claim("k").state is ClaimState.CLAIMED
    busy = b.claim("k")
    assert in_progress(busy)
    assert not busy.mine  # another process's: come back after retry_after
    a.complete("k")
    assert b.claim("k").state is ClaimState.COMPLETED
    assert a.claim("k").state is ClaimState.COMPLETED


def test_keys_completed_together_are_completed_for_every_store(shared_backend: Backend) -> None:
    a, b = shared_backend.store(), shared_backend.store()
    for key in ("x", "y"):
        assert a.claim(key).state is ClaimState.CLAIMED
    a.complete_many(["x", "y"])
    assert b.claim("x").state is ClaimState.COMPLETED
    assert b.claim("y").state is ClaimState.COMPLETED


def test_the_owners_release_frees_the_key_for_another_store(shared_backend: Backend) -> None:
    a, b = shared_backend.store(), shared_backend.store()
    assert a.claim("k").state is ClaimState.CLAIMED
    a.release("k")
    assert b.claim("k").state is ClaimState.CLAIMED
    assert in_progress(a.claim("k"))


def test_another_store_cannot_release_the_claim(shared_backend: Backend) -> None:
    a, b = shared_backend.store(), shared_backend.store()
    assert a.claim("k").state is ClaimState.CLAIMED
    b.release("k")
    assert in_progress(b.claim("k"))
    a.complete("k")
    assert b.claim("k").state is ClaimState.COMPLETED


def test_a_lapsed_claim_is_taken_by_another_store(shared_backend: Backend) -> None:
    a, b = shared_backend.store(SHORT_TTL), shared_backend.store(SHORT_TTL)
    assert a.claim("k").state is ClaimState.CLAIMED
    assert in_progress(b.claim("k"), SHORT_TTL)
    shared_backend.advance(PAST)  # a stalled (or its host died) past its lease
    assert b.claim("k").state is ClaimState.CLAIMED
    assert in_progress(a.claim("k"), SHORT_TTL)


def test_a_late_release_does_not_free_a_claim_taken_over(shared_backend: Backend) -> None:
    a, b = shared_backend.store(SHORT_TTL), shared_backend.store(SHORT_TTL)
    assert a.claim("k").state is ClaimState.CLAIMED
    shared_backend.advance(PAST)
    assert b.claim("k").state is ClaimState.CLAIMED
    a.release("k")  # a wakes up and gives up: the key is b's now
    assert in_progress(a.claim("k"), SHORT_TTL)
    b.complete("k")
    assert a.claim("k").state is ClaimState.COMPLETED


def test_a_late_renew_does_not_extend_a_claim_taken_over(shared_backend: Backend) -> None:
    a, b, c = (shared_backend.store(SHORT_TTL) for _ in range(3))
    assert a.claim("k").state is ClaimState.CLAIMED
    shared_backend.advance(PAST)
    assert b.claim("k").state is ClaimState.CLAIMED
    shared_backend.advance(0.6)
    a.renew()  # a still thinks it holds k: its renewal must not extend b's claim
    shared_backend.advance(0.6)  # b renews nothing: its lease lapsed 0.2 s ago
    assert c.claim("k").state is ClaimState.CLAIMED


def test_renew_extends_only_the_renewing_stores_claims(shared_backend: Backend) -> None:
    a, b, c = (shared_backend.store(SHORT_TTL) for _ in range(3))
    assert a.claim("a's").state is ClaimState.CLAIMED
    assert b.claim("b's").state is ClaimState.CLAIMED
    for _ in range(2):  # 1.2 s, past the 1 s lease
        shared_backend.advance(0.6)
        a.renew()
    assert in_progress(c.claim("a's"), SHORT_TTL)
    assert c.claim("b's").state is ClaimState.CLAIMED


def test_concurrent_claims_have_one_winner(shared_backend: Backend) -> None:
    stores = [shared_backend.store() for _ in range(4)]
    contenders = [stores[i % len(stores)] for i in range(8)]  # two threads per store
    barrier = threading.Barrier(len(contenders))
    results: list[Claim] = []
    lock = threading.Lock()

    def contend(store: IdempotencyStore) -> None:
        barrier.wait()
        claim = store.claim("same key")
        with lock:
            results.append(claim)

    threads = [threading.Thread(target=contend, args=(store,)) for store in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == len(contenders)
    assert sum(r.state is ClaimState.CLAIMED for r in results) == 1
    assert sum(in_progress(r) for r in results) == len(contenders) - 1


def test_concurrent_batch_claims_give_each_key_one_winner(shared_backend: Backend) -> None:
    """Replicas claiming overlapping batches, in opposite orders: every key is taken once,
    and none of them fails (batches meeting in opposite orders must not deadlock)."""
    stores = [shared_backend.store() for _ in range(4)]
    keys = [f"k{i:02d}" for i in range(40)]
    barrier = threading.Barrier(len(stores))
    taken: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def contend(n: int) -> None:
        batch = keys[n * 5 :] + keys[: n * 5]  # each store starts somewhere else
        barrier.wait()
        try:
            for start in range(0, len(batch), 16):
                chunk = batch[start : start + 16]
                got = stores[n].claim_many(chunk if n % 2 else chunk[::-1])
                with lock:
                    taken.extend(k for k, c in got.items() if c.state is ClaimState.CLAIMED)
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(taken) == keys  # each key claimed, and by one store only


def test_the_state_outlives_the_store_that_wrote_it(shared_backend: Backend) -> None:
    first = shared_backend.store()
    assert first.claim("done").state is ClaimState.CLAIMED
    first.complete("done")
    assert first.claim("held").state is ClaimState.CLAIMED
    assert first.count_deferral("m") == 1
    first.close()  # a process restarted, or a replica replaced
    later = shared_backend.store()
    assert later.claim("done").state is ClaimState.COMPLETED
    assert in_progress(later.claim("held"))  # a live process's lease is still respected
    assert later.count_deferral("m") == 2  # counted across every replica
