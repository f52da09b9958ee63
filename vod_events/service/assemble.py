"""Assemble the daemon's parts from a `Config`: transports, handlers, idempotency store,
dead-letter target, processor and consumer. The only module that knows all of them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from vod_events.backoff import RedeliveryBackoff
from vod_events.config import Config, HandlerSection
from vod_events.consumer import Consumer, ConsumerSettings
from vod_events.deadletter import DeadLetterSink, DirectorySink, QueueSink
from vod_events.dedupe import IdempotencyStore, MemoryStore, NullStore, RedisStore, SQLiteStore
from vod_events.errors import ConfigError
from vod_events.handlers import HttpHandler, JsonlHandler, LogHandler
from vod_events.processing import Processor
from vod_events.retry import RetryPolicy
from vod_events.router import Handler, Router, import_handler
from vod_events.stats import Stats
from vod_events.transports import Transport, TransportFactory


def transport_factory(config: Config) -> TransportFactory:
    """Makes one MNS transport per calling thread, for any queue of the account."""
    from vod_events.transports.mns import MNSTransport  # the SDK loads only when needed

    mns = config.mns
    provider = credentials_provider(config) if mns.credentials == "default" else None

    def connect(queue_name: str) -> Transport:
        return MNSTransport(
            mns.endpoint,
            queue_name,
            access_key_id=mns.access_key_id,
            access_key_secret=mns.access_key_secret,
            security_token=mns.security_token,
            credentials_provider=provider,
        )

    return connect


def credentials_provider(config: Config) -> Any:
    """The Alibaba Cloud default credential chain, adapted to the MNS SDK's provider API."""
    try:
        from alibabacloud_credentials.client import Client as CredentialClient
    except ImportError:
        raise ConfigError(
            "credentials = 'default' needs the alibabacloud-credentials package "
            "(pip install alibabacloud-credentials)",
            path=config.path,
            key="mns.credentials",
        ) from None
    from mns.auth import Credentials
    from mns.mns_exception import MNSClientException

    client = CredentialClient()

    class DefaultChainProvider:
        # The credential client caches and refreshes before expiry; ask it on every request.
        def get_credentials(self) -> Any:
            try:
                current = client.get_credential()
            except Exception as exc:  # no provider in the chain could supply credentials
                raise MNSClientException(
                    "CredentialsUnavailable", f"default credential chain: {exc}"
                ) from None
            return Credentials(
                current.access_key_id, current.access_key_secret, current.security_token or ""
            )

    return DefaultChainProvider()


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
        path = d.path or config.state_dir / "dedupe.sqlite3"
        return SQLiteStore(path, claim_ttl=d.claim_ttl, completed_ttl=d.completed_ttl)
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
    return DirectorySink(target.dir or config.state_dir / "dead-letters")


def build_processor(
    config: Config,
    connect: TransportFactory,
    *,
    router: Router | None = None,
    stats: Stats | None = None,
    stopping: threading.Event | None = None,
    source: str | None = None,
    context_source: str = "mns",
) -> Processor:
    r = config.retry
    return Processor(
        router or build_router(config),
        stats=stats or Stats(),
        stopping=stopping or threading.Event(),
        source=source or config.mns.queue,
        store=build_store(config),
        dead_letters=build_dead_letters(config, connect),
        retry=RetryPolicy(r.attempts, r.max_seconds, r.initial_wait, r.max_wait),
        redelivery=RedeliveryBackoff(r.redelivery_initial, r.redelivery_max),
        max_deliveries=config.consumer.max_deliveries,
        context_source=context_source,
    )


def build_consumer(
    config: Config,
    *,
    connect: TransportFactory | None = None,
    router: Router | None = None,
    on_ready: Callable[[], None] | None = None,
) -> Consumer:
    connect = connect or transport_factory(config)
    c = config.consumer
    settings = ConsumerSettings(
        pollers=c.pollers,
        workers=c.workers,
        prefetch=c.prefetch,
        wait_seconds=c.wait_seconds,
        shutdown_timeout=c.shutdown_timeout,
        deleters=c.deleters,
        visibility_timeout=c.visibility_timeout or None,
    )
    processor = build_processor(config, connect, router=router)
    return Consumer(connect, config.mns.queue, processor, settings, on_ready=on_ready)
