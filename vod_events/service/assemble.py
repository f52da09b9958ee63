"""Assemble the daemon's parts from a `Config`: transports, handlers, idempotency store,
dead-letter target, processor and consumer. The only module that knows all of them."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

from vod_events.backoff import RedeliveryBackoff
from vod_events.config import Config, HandlerSection
from vod_events.config.credentials import default_chain
from vod_events.consumer import Consumer, ConsumerSettings
from vod_events.deadletter import DeadLetterSink, DirectorySink, QueueSink
from vod_events.dedupe import IdempotencyStore, MemoryStore, NullStore, RedisStore, SQLiteStore
from vod_events.errors import ConfigError
from vod_events.handlers import HttpHandler, JsonlHandler, LogHandler
from vod_events.processing import Processor
from vod_events.retry import RetryPolicy
from vod_events.router import ContextSource, Handler, Router, import_handler
from vod_events.stats import Stats
from vod_events.transports import Transport, TransportFactory


def transport_factory(config: Config) -> TransportFactory:
    """Makes one MNS transport per calling thread, for any queue of the account, all with
    `config.credentials` (one default-chain client shared by all: it caches and refreshes)."""
    from vod_events.transports.mns import MNSTransport  # the SDK loads only when needed

    endpoint, credentials = config.mns.endpoint, config.credentials
    chain = default_chain(config.path) if credentials.default_chain else None

    def connect(queue_name: str) -> Transport:
        return MNSTransport(
            endpoint,
            queue_name,
            access_key_id=credentials.access_key_id,
            access_key_secret=credentials.access_key_secret,
            security_token=credentials.security_token,
            credential_client=chain,
        )

    return connect


def build_router(config: Config) -> Router:
    router = Router()
    for handler_config in config.handlers:
        handler, name = build_handler(handler_config)
        router.add(handler, handler_config.events, name=handler_config.name or name)
    return router


def build_handler(h: HandlerSection) -> tuple[Handler, str]:
    if h.call:
        return import_handler(h.call), h.call
    if h.type == "jsonl":
        jsonl = JsonlHandler(h.path)
        return jsonl, jsonl.name
    if h.type == "http":
        http = HttpHandler(h.url, timeout=h.timeout, secret=h.secret)
        return http, http.name
    return LogHandler(), LogHandler.name


def build_store(config: Config) -> IdempotencyStore:
    d = config.dedupe
    if d.backend == "sqlite":
        return SQLiteStore(config.dedupe_path, claim_ttl=d.claim_ttl, completed_ttl=d.completed_ttl)
    if d.backend == "redis":
        if not d.url:
            raise ConfigError("backend 'redis' needs 'url'", path=config.path, key="dedupe.url")
        return RedisStore(d.url, claim_ttl=d.claim_ttl, completed_ttl=d.completed_ttl)
    if d.backend == "memory":
        return MemoryStore(claim_ttl=d.claim_ttl, completed_ttl=d.completed_ttl)
    return NullStore()


def build_dead_letters(config: Config, connect: TransportFactory) -> DeadLetterSink:
    target = config.dead_letter
    if target.queue and target.dir:
        raise ConfigError("set 'queue' or 'dir', not both", path=config.path, key="dead_letter")
    if target.queue:
        return QueueSink(lambda: connect(target.queue))
    return DirectorySink(config.dead_letter_dir)


def build_processor(
    config: Config,
    connect: TransportFactory,
    *,
    router: Router | None = None,
    stats: Stats | None = None,
    stopping: threading.Event | None = None,
    source: str | None = None,
    context_source: ContextSource = "mns",
    store: IdempotencyStore | None = None,
    own_claim_wait: float | None = None,
) -> Processor:
    """The pipeline for one path (the queue, or HTTP callbacks).

    store: an idempotency store to share with another path's processor (so both meet the
        same claims, with any backend, and whoever renews that store's claims renews both
        paths'); None builds a new one from `[dedupe]`.
    own_claim_wait: `Processor.own_claim_wait`; None keeps the Processor's default.
    """
    r = config.retry
    processor = Processor(
        router or build_router(config),
        stats=stats or Stats(),
        stopping=stopping or threading.Event(),
        source=source or config.mns.queue,
        store=build_store(config) if store is None else store,
        dead_letters=build_dead_letters(config, connect),
        retry=RetryPolicy(r.attempts, r.max_seconds, r.initial_wait, r.max_wait),
        redelivery=RedeliveryBackoff(r.redelivery_initial, r.redelivery_max),
        max_deliveries=config.consumer.max_deliveries,
        context_source=context_source,
    )
    if own_claim_wait is not None:
        processor.own_claim_wait = own_claim_wait
    return processor


def build_consumer(
    config: Config,
    *,
    connect: TransportFactory | None = None,
    router: Router | None = None,
    on_ready: Callable[[], None] | None = None,
) -> Consumer:
    connect = connect or transport_factory(config)
    processor = build_processor(config, connect, router=router)
    return Consumer(
        connect, config.mns.queue, processor, consumer_settings(config), on_ready=on_ready
    )


def consumer_settings(config: Config) -> ConsumerSettings:
    """`ConsumerSettings` from `[consumer]`: every key the two share, by name (the section's
    other keys, e.g. max_deliveries, go to the processor; the settings' other fields keep
    their defaults). A visibility_timeout of 0 means the queue's: None in the settings."""
    shared = {f.name for f in dataclasses.fields(ConsumerSettings)}
    values = {k: v for k, v in dataclasses.asdict(config.consumer).items() if k in shared}
    values["visibility_timeout"] = values["visibility_timeout"] or None
    return ConsumerSettings(**values)
