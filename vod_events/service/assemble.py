"""Assemble the daemon's parts from a `Config`: transports, handlers, idempotency store,
dead-letter target, processor and consumer. The only module that knows all of them."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from vod_events.backoff import RedeliveryBackoff
from vod_events.config import Config, HandlerSection
from vod_events.config.credentials import DEFAULT_CHAIN, default_chain, how_to_supply
from vod_events.config.schema import NO_HANDLERS
from vod_events.consumer import DERIVED, Consumer, ConsumerSettings
from vod_events.deadletter import DeadLetterSink, DirectorySink, QueueSink
from vod_events.dedupe import IdempotencyStore, MemoryStore, NullStore, RedisStore, SQLiteStore
from vod_events.errors import ConfigError
from vod_events.handlers import HttpHandler, JsonlHandler, LogHandler
from vod_events.polling import AUTO
from vod_events.processing import Processor, transaction_of
from vod_events.retry import RetryPolicy
from vod_events.router import ContextSource, Handler, Router, import_handler
from vod_events.stats import Stats
from vod_events.tracing import NO_TRACING, Tracer
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
    """A Router with the config's [[handlers]], each under its `route_name`. Raises
    ConfigError naming the table's key when a handler cannot be built (a module that does
    not import or fails as it is imported, a jsonl file that cannot be opened). No handler
    at all is allowed here: the caller may add its own (the daemon refuses an empty router:
    see `build_consumer`)."""
    router = Router()
    for i, handler_config in enumerate(config.handlers):
        label = f"handlers[{i}]"
        try:
            handler, name = build_handler(handler_config)
        except ConfigError as exc:  # from import_handler: say which table
            raise config.error(f"{label}.call", str(exc)) from None
        except OSError as exc:
            raise config.error(
                f"{label}.path", f"cannot open {handler_config.path}: {exc.strerror or exc}"
            ) from None
        try:
            router.add(
                handler,
                handler_config.events,
                name=name,
                allow_unknown=handler_config.allow_unknown_events,
                transactional=handler_config.transactional,
                # The http handler's own request timeout is its limit (see build_handler).
                timeout=(handler_config.timeout or None) if handler_config.type != "http" else None,
                max_concurrency=handler_config.max_concurrency or None,
            )
        except ValueError as exc:  # `from_dict` checked both already: a safety net
            raise config.error(label, str(exc)) from None
    return router


def build_handler(h: HandlerSection) -> tuple[Handler, str]:
    """The handler a [[handlers]] table describes, and its name (`route_name`)."""
    if h.call:
        return import_handler(h.call), h.route_name
    if h.type == "jsonl":
        return JsonlHandler(h.path), h.route_name
    if h.type == "http":
        return HttpHandler(h.url, timeout=h.timeout or 10.0, secret=h.secret), h.route_name
    return LogHandler(), h.route_name


def build_store(config: Config) -> IdempotencyStore:
    """The idempotency store. Raises ConfigError, naming `dedupe.path` or `state.dir`, when
    the SQLite file or its directory cannot be created or opened; naming `dedupe.backend`
    when the postgres backend's driver is not installed, `dedupe.url` when its URL is
    unusable. A PostgreSQL store connects in the background: a database that is down now
    fails its calls later (the messages are handed back), not this."""
    d = config.dedupe
    if d.backend == "sqlite":
        path = config.dedupe_path
        try:
            return SQLiteStore(path, claim_ttl=d.claim_ttl, completed_ttl=d.completed_ttl)
        except (OSError, sqlite3.Error) as exc:
            raise _unusable(config, "dedupe.path" if d.path else "state.dir", path, exc) from None
    if d.backend == "redis":
        if not d.url:
            raise ConfigError("backend 'redis' needs 'url'", path=config.path, key="dedupe.url")
        return RedisStore(d.url, claim_ttl=d.claim_ttl, completed_ttl=d.completed_ttl)
    if d.backend == "postgres":
        return _postgres_store(config)
    if d.backend == "memory":
        return MemoryStore(claim_ttl=d.claim_ttl, completed_ttl=d.completed_ttl)
    return NullStore()


POSTGRES_EXTRA = "pip install 'vod-events[postgres]'"
# Connections the PostgreSQL store may open beyond one per worker (a transactional handler
# holds one while it runs): claims, completions and renewals of the other threads.
POSTGRES_SPARE_CONNECTIONS = 4


def require_postgres_driver(config: Config) -> None:
    """Raise ConfigError, naming `dedupe.backend` and what to install, when the postgres
    backend is chosen and psycopg (the `postgres` extra) is not installed."""
    if config.dedupe.backend != "postgres":
        return
    try:
        import vod_events.postgres_store  # noqa: F401 - imports psycopg and psycopg_pool
    except ImportError as exc:
        missing = exc.name or "psycopg"
        raise config.error(
            "dedupe.backend",
            f"backend 'postgres' needs the PostgreSQL driver, and {missing!r} is not "
            f"installed: {POSTGRES_EXTRA} (psycopg and psycopg-pool) in the environment "
            "that runs vod-events",
        ) from None


def _postgres_store(config: Config) -> IdempotencyStore:
    require_postgres_driver(config)
    from vod_events.postgres_store import PostgresStore, PostgresStoreError

    d = config.dedupe
    if not d.url:  # `from_dict` refuses it already: a safety net
        raise config.error("dedupe.url", "backend 'postgres' needs 'url'")
    # One connection per handler that may run at once, callbacks included, and spares.
    callbacks = config.http_callback.max_concurrency if config.http_callback.listen else 0
    try:
        return PostgresStore(
            d.url,
            schema=d.schema,
            claim_ttl=d.claim_ttl,
            completed_ttl=d.completed_ttl,
            statement_timeout=d.statement_timeout or None,
            max_size=config.consumer.workers + callbacks + POSTGRES_SPARE_CONNECTIONS,
        )
    except PostgresStoreError as exc:  # an unparsable URL: its message shows no password
        raise config.error("dedupe.url", str(exc)) from None
    except ValueError as exc:  # the schema name: `from_dict` refuses it already
        raise config.error("dedupe.schema", str(exc)) from None


def require_transactions(config: Config, router: Router, store: IdempotencyStore) -> None:
    """Raise ConfigError, naming `dedupe.backend`, when `router` has transactional handlers
    and `store` cannot run them (only the PostgreSQL store has transactions)."""
    names = router.transactional
    if not names or transaction_of(store) is not None:
        return
    raise config.error(
        "dedupe.backend",
        f"transactional handler(s) {', '.join(map(repr, names))} need backend 'postgres' "
        f"(their ctx.db is a transaction in the store's PostgreSQL database), but the "
        f"idempotency store is {config.dedupe.backend!r} ({type(store).__name__})",
    )


def build_dead_letters(config: Config, connect: TransportFactory) -> DeadLetterSink:
    target = config.dead_letter
    if target.queue and target.dir:
        raise ConfigError("set 'queue' or 'dir', not both", path=config.path, key="dead_letter")
    if target.queue:
        return QueueSink(lambda: connect(target.queue))
    try:
        # Created now, not at the first dead letter: a directory that cannot be created is
        # a configuration error at start, not a poison message that keeps coming back.
        config.dead_letter_dir.mkdir(parents=True, exist_ok=True)
        return DirectorySink(config.dead_letter_dir)
    except OSError as exc:
        key = "dead_letter.dir" if target.dir else "state.dir"
        raise _unusable(config, key, config.dead_letter_dir, exc) from None


def _unusable(config: Config, key: str, path: Path, exc: OSError | sqlite3.Error) -> ConfigError:
    """ConfigError for a state path that cannot be created or opened (a file where a
    directory should be, no permission), naming the key to change."""
    reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
    where = f" (the state directory {config.state_dir} is {config.state_dir_origin})"
    return config.error(
        key,
        f"cannot create or open {path}: {reason}{where if key == 'state.dir' else ''}",
    )


def require_credentials(config: Config) -> None:
    """Raise ConfigError unless `config` has a way to sign MNS requests: an AccessKey id and
    secret, or the default credential chain. Saying which variables to set."""
    credentials = config.credentials
    if credentials.default_chain or credentials.has_access_key:
        return
    missing = [
        what
        for what, value in (
            ("id", credentials.access_key_id),
            ("secret", credentials.access_key_secret),
        )
        if not value
    ]
    ways = how_to_supply(config=True, chain=f"[mns] credentials = '{DEFAULT_CHAIN}'")
    key = "mns.access_key_id" if "id" in missing else "mns.access_key_secret"
    raise config.error(key, f"no AccessKey {' or '.join(missing)}: {ways}")


OTEL_EXTRA = "pip install 'vod-events[otel]'"


def require_tracing_sdk(config: Config) -> None:
    """Raise ConfigError, naming `tracing.enabled` and what to install, when tracing is on
    and OpenTelemetry (the `otel` extra) is not installed."""
    if not config.tracing.enabled:
        return
    try:
        import vod_events.tracing_otel  # noqa: F401 - imports the OpenTelemetry SDK
    except ImportError as exc:
        raise _no_otel(config, exc) from None


def _no_otel(config: Config, exc: ImportError) -> ConfigError:
    missing = exc.name or "opentelemetry"
    return config.error(
        "tracing.enabled",
        f"tracing needs OpenTelemetry, and {missing!r} is not installed: {OTEL_EXTRA} "
        "(the OpenTelemetry SDK and OTLP exporter) in the environment that runs vod-events, "
        "or set enabled = false",
    )


def build_tracer(config: Config) -> Tracer:
    """The tracer of `[tracing]`: NO_TRACING when off (OpenTelemetry is not imported); else
    the process's OpenTelemetry tracer, exporting as the `OTEL_*` variables say (one per
    process, shared by the queue's and the callbacks' processors; `tracing.shutdown()` ends
    it). Raises ConfigError when the `otel` extra is missing or an `OTEL_*` value is not
    supported."""
    if not config.tracing.enabled:
        return NO_TRACING
    require_tracing_sdk(config)
    from vod_events.tracing_otel import process_tracer

    try:
        return process_tracer()
    except ImportError as exc:  # the OTLP exporter, imported only when it is chosen
        raise _no_otel(config, exc) from None


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
    tracer: Tracer | None = None,
) -> Processor:
    """The pipeline for one path (the queue, or HTTP callbacks).

    store: an idempotency store to share with another path's processor (so both meet the
        same claims, with any backend, and whoever renews that store's claims renews both
        paths'); None builds a new one from `[dedupe]`.
    own_claim_wait: `Processor.own_claim_wait`; None keeps the Processor's default.
    tracer: None builds it from `[tracing]` (`build_tracer`).

    Raises ConfigError when a handler is transactional and the store is not PostgreSQL, and
    when tracing is on but cannot be (`build_tracer`).
    """
    r = config.retry
    router = router or build_router(config)
    tracer = build_tracer(config) if tracer is None else tracer
    own_store = store is None
    store = build_store(config) if store is None else store
    try:
        require_transactions(config, router, store)
        processor = Processor(
            router,
            stats=stats or Stats(),
            stopping=stopping or threading.Event(),
            source=source or config.mns.queue,
            store=store,
            dead_letters=build_dead_letters(config, connect),
            retry=RetryPolicy(r.attempts, r.max_seconds, r.initial_wait, r.max_wait),
            redelivery=RedeliveryBackoff(r.redelivery_initial, r.redelivery_max),
            max_deliveries=config.consumer.max_deliveries,
            context_source=context_source,
            async_concurrency=config.consumer.async_concurrency,
            tracer=tracer,
        )
    except BaseException:
        if own_store:
            store.close()  # its connections, its cleanup thread
        raise
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
    """The consumer of `config`'s queue, with `router` or the config's handlers.

    Raises ConfigError when it would have no handler at all (it would delete every event
    unhandled), when there are no credentials for MNS (unless `connect` is given), when a
    handler, the idempotency store or the dead-letter directory cannot be built, and when
    a handler is transactional (`Router.add(..., transactional=True)`) but the store is not
    the PostgreSQL one."""
    if router is None:
        router = build_router(config)
    if not router.routes:
        raise ConfigError(NO_HANDLERS, path=config.path, key="handlers")
    if connect is None:
        require_credentials(config)
        connect = transport_factory(config)
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
    for name in ("prefetch", "deleters"):  # "auto": derived from the pollers
        if values[name] == AUTO:
            values[name] = DERIVED
    return ConsumerSettings(**values)
