"""The daemon's configuration: a TOML file, overridden by environment variables.

Precedence, highest first:
1. `VOD_EVENTS_<SECTION>_<KEY>` environment variables (e.g. `VOD_EVENTS_CONSUMER_WORKERS=32`;
   for the i-th `[[handlers]]` table, from 0: `VOD_EVENTS_HANDLERS_<i>_<KEY>`);
2. the TOML file given with `--config`;
3. for the AccessKey only: `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`,
   `ALIBABA_CLOUD_SECURITY_TOKEN` (resolved by `credentials.resolve`, as for every command);
4. the defaults below (also documented in config.example.toml).
Any of these variables may also be a systemd credential of the same name (see
`secrets.with_credentials`); the environment wins over a credential.

Every key is declared once, in the section dataclasses below, with its type, allowed range
and meaning. Validation happens before anything starts: an unknown key, a wrong type, an
out-of-range or non-finite value, an EventType that does not exist, or two handlers with one
name raise `ConfigError` naming the file, the key and what is allowed. A value that came from
the environment is reported as such, with the variable's name and its value (masked for a
secret key). Choices are matched without regard to case ("INFO", "SQLite").

A `VOD_EVENTS_*` variable that names no key is an error too, as an unknown key in the file
is, except the names Kubernetes defines for a Service called `vod-events`
(`VOD_EVENTS_SERVICE_HOST`, `VOD_EVENTS_SERVICE_PORT*`, `VOD_EVENTS_PORT*`) and
`VOD_EVENTS_TEST_*`, which the test suite uses for itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import math
import os
import re
import urllib.parse
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vod_events.config.credentials import MODES, STATIC, Credentials, resolve
from vod_events.dedupe import DEFAULT_CLAIM_TTL, RENEWALS_PER_TTL
from vod_events.errors import ConfigError
from vod_events.polling import AUTO, AUTO_MAX_POLLERS, MAX_BATCH
from vod_events.router import unknown_event_type

ENV_PREFIX = "VOD_EVENTS_"
SECRET_MASK = "********"  # noqa: S105 - the mask shown instead of a secret

# Variables with our prefix that are not keys: Kubernetes' service links for a Service named
# `vod-events` (VOD_EVENTS_SERVICE_HOST, VOD_EVENTS_PORT_9400_TCP_ADDR, ...), and the tests'.
NOT_KEYS = re.compile(
    rf"{ENV_PREFIX}(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)(_\w+)?)?|TEST_\w*)"
)
DEFAULT_POSTGRES_SCHEMA = "vod_events"  # as vod_events.postgres_store.DEFAULT_SCHEMA
# A schema name the PostgreSQL store accepts: a plain, unquoted SQL identifier.
PLAIN_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
POSTGRES_URL_EXAMPLE = "postgresql://user:password@host:5432/dbname"
NO_HANDLERS = (
    "no [[handlers]] table: the daemon would delete every event as unhandled; add one "
    "(call = 'package.module:function', or type = 'log', 'jsonl' or 'http')"
)


def key(
    default: Any,
    doc: str,
    *,
    low: float | None = None,
    high: float | None = None,
    choices: tuple[str, ...] = (),
    secret: bool = False,
) -> Any:
    """Declare a config key: its default, meaning, and what values are allowed.

    A secret key is left out of its section's repr (`masked` shows the config safely).
    """
    meta = {"doc": doc, "low": low, "high": high, "choices": choices, "secret": secret}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta, repr=not secret)
    return field(default=default, metadata=meta, repr=not secret)


@dataclass(frozen=True, slots=True)
class MNSSection:
    endpoint: str = key("", "MNS endpoint, e.g. https://<account-id>.mns.<region>.aliyuncs.com")
    queue: str = key("vod-events", "the queue VOD writes events to")
    credentials: str = key(
        STATIC,
        "'static': the AccessKey below or the ALIBABA_CLOUD_* variables; "
        "'default': the Alibaba Cloud default credential chain (RAM role, OIDC, profile)",
        choices=MODES,
    )
    access_key_id: str = key("", "AccessKey id (else ALIBABA_CLOUD_ACCESS_KEY_ID)", secret=True)
    access_key_secret: str = key(
        "", "AccessKey secret (else ALIBABA_CLOUD_ACCESS_KEY_SECRET)", secret=True
    )
    security_token: str = key("", "STS token (else ALIBABA_CLOUD_SECURITY_TOKEN)", secret=True)


@dataclass(frozen=True, slots=True)
class ConsumerSection:
    pollers: int | str = key(
        AUTO,
        "long polls kept going; auto: as many as the backlog, the free slots and the round "
        f"trip call for, 1 to {AUTO_MAX_POLLERS}, fewer while MNS refuses long polls (its "
        "per-IP cap); a number pins it",
        low=1,
        high=64,
    )
    workers: int = key(16, "threads running handlers (messages handled at once)", low=1, high=1024)
    prefetch: int | str = key(
        AUTO,
        f"messages received ahead of free workers; auto: {MAX_BATCH} per poller thread",
        low=0,
        high=4096,
    )
    wait_seconds: int = key(20, "long-poll duration of each receive", low=0, high=30)
    shutdown_timeout: float = key(
        30.0, "seconds running handlers get to finish on SIGTERM", low=0, high=3600
    )
    deleters: int | str = key(
        AUTO,
        "threads sending batch deletes; auto: one per two poller threads, at least 2",
        low=1,
        high=16,
    )
    visibility_timeout: int = key(
        0, "seconds each heartbeat extension buys; 0 uses the queue's", low=0, high=43200
    )
    max_deliveries: int = key(
        10, "a message delivered more often than this is dead-lettered", low=1, high=1000
    )
    async_concurrency: int = key(
        256,
        "async handler calls running at once, on one event-loop thread (each holds its "
        "message in flight, in addition to workers + prefetch)",
        low=1,
        high=100000,
    )


@dataclass(frozen=True, slots=True)
class RetrySection:
    attempts: int = key(
        3, "calls of a failing handler per delivery, first included", low=1, high=100
    )
    max_seconds: float = key(30.0, "stop retrying a handler after this long", low=0, high=3600)
    initial_wait: float = key(
        0.2, "first wait between retries, seconds (jittered)", low=0, high=600
    )
    max_wait: float = key(5.0, "longest wait between retries, seconds", low=0, high=3600)
    redelivery_initial: int = key(
        10,
        "visibility after the first failed delivery, seconds; doubles each time",
        low=1,
        high=43200,
    )
    redelivery_max: int = key(3600, "longest visibility after a failed delivery", low=1, high=43200)


@dataclass(frozen=True, slots=True)
class DedupeSection:
    backend: str = key(
        "sqlite",
        "idempotency store: sqlite (one host), redis (a fleet), postgres (a fleet, in your "
        "application's PostgreSQL: needed by transactional handlers; pip install "
        "'vod-events[postgres]'), memory (tests), off",
        choices=("sqlite", "redis", "postgres", "memory", "off"),
    )
    path: str = key("", "SQLite file; empty: dedupe.sqlite3 in the state directory")
    url: str = key(
        "",
        "for backend = 'redis': redis://[:password@]host:6379/0; for backend = 'postgres': "
        "postgresql://user:password@host:5432/dbname (libpq URL or conninfo)",
        secret=True,
    )
    schema: str = key(
        DEFAULT_POSTGRES_SCHEMA,
        "postgres: the schema of the store's tables (created on first use if the role may; "
        "else run `vod-events dedupe migrate`)",
    )
    statement_timeout: float = key(
        10.0,
        "postgres: seconds any statement may run, transactional handlers' own included "
        "(sent at connect; 0: not sent, e.g. through a PgBouncer that does not track it: "
        "set it on the role instead)",
        low=0,
        high=86400,
    )
    claim_ttl: float = key(
        DEFAULT_CLAIM_TTL,
        "seconds a claim lasts without renewal; a crashed worker's claim is freed after this, "
        f"at once on the same host (renewed every claim_ttl/{RENEWALS_PER_TTL}: at least 1 s)",
        low=RENEWALS_PER_TTL,
        high=86400,
    )
    completed_ttl: float = key(
        604800.0, "seconds a completed key is kept (longer than the queue's retention)", low=60
    )


@dataclass(frozen=True, slots=True)
class DeadLetterSection:
    dir: str = key("", "directory of dead-letter JSON files; empty: dead-letters/ in the state dir")
    queue: str = key("", "an MNS queue for dead letters instead of a directory")


@dataclass(frozen=True, slots=True)
class StateSection:
    dir: str = key("", "state directory; empty: $STATE_DIRECTORY (systemd) or ./state")


@dataclass(frozen=True, slots=True)
class LogSection:
    level: str = key("info", "log level", choices=("debug", "info", "warning", "error", "critical"))
    format: str = key(
        "auto",
        "auto: JSON lines unless stdout is a terminal; json; console",
        choices=("auto", "json", "console"),
    )


@dataclass(frozen=True, slots=True)
class OpsSection:
    listen: str = key("", "host:port for /metrics, /healthz, /readyz; empty: off")


@dataclass(frozen=True, slots=True)
class HttpCallbackSection:
    listen: str = key("", "host:port to receive VOD HTTP callbacks on; empty: off")
    path: str = key("/vod/callback", "the URL path callbacks are POSTed to")
    callback_url: str = key(
        "", "the callback URL exactly as configured in VOD (what VOD signs; a proxy may differ)"
    )
    auth_keys: list[str] = key(
        [],
        "VOD AuthKeys accepted (several during rotation); empty: no authentication",
        secret=True,
    )
    timestamp_window: int = key(
        300, "seconds X-VOD-TIMESTAMP may differ from our clock", low=1, high=86400
    )
    max_body_bytes: int = key(
        1048576, "larger callback bodies are refused (413)", low=1024, high=67108864
    )
    max_concurrency: int = key(
        16, "callbacks processed at once; more get 503 and VOD retries", low=1, high=1024
    )


@dataclass(frozen=True, slots=True)
class TracingSection:
    enabled: bool = key(
        False,
        "OpenTelemetry spans per delivery and handler (pip install 'vod-events[otel]'); the "
        "exporter, endpoint and service name come from the standard OTEL_* variables "
        "(OTEL_TRACES_EXPORTER = otlp or console, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME)",
    )


@dataclass(frozen=True, slots=True)
class HandlerSection:
    events: list[str] = key(["*"], "EventType names, or '*' for every event")
    allow_unknown_events: bool = key(
        False,
        "accept names in `events` that are not a known EventType (a type VOD added after "
        "this release); without it such a name is refused, as it is most likely a typo",
    )
    call: str = key("", "your handler: 'package.module:function'")
    type: str = key(
        "", "a built-in handler instead of `call`", choices=("", "jsonl", "log", "http")
    )
    name: str = key("", "a stable name for idempotency records; default: call or type+path/url")
    path: str = key("", "jsonl: the file to append to")
    url: str = key("", "http: where to POST each event")
    timeout: float = key(
        0.0,
        "seconds one call may take; 0: no limit. Past it an async handler is cancelled and "
        "retried; a sync one, which a thread cannot safely stop, is logged and counted as an "
        "overrun while it runs on. http: the request timeout (10 s when 0)",
        low=0,
        high=3600,
    )
    max_concurrency: int = key(
        0,
        "the most calls of this handler at once, across all workers (e.g. to stay under an "
        "API's QPS); 0: no limit",
        low=0,
        high=100000,
    )
    secret: str = key(
        "", "http: HMAC-SHA256 key for the X-VOD-Events-Signature header", secret=True
    )
    transactional: bool = key(
        False,
        "call handlers: run inside a transaction of the dedupe store's PostgreSQL database "
        "(ctx.db) that also records the handler's completion: its writes and the completion "
        "commit together or not at all; needs [dedupe] backend = 'postgres'",
    )

    @property
    def route_name(self) -> str:
        """The handler's idempotency name: `name`, else `call`, else the built-in's type
        and target (the names vod-events has always used: changing one re-runs handlers)."""
        if self.name:
            return self.name
        if self.call:
            return self.call
        if self.type == "jsonl":
            return f"jsonl:{Path(self.path)}"
        if self.type == "http":
            return f"http:{self.url}"
        return self.type


@dataclass(frozen=True, slots=True)
class Override:
    """A key's value that came from a variable rather than the file."""

    source: str  # "environment variable" or "systemd credential"
    variable: str  # e.g. VOD_EVENTS_CONSUMER_WORKERS

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, path=f"{self.source} {self.variable}", key=key)


@dataclass(frozen=True, slots=True)
class Config:
    mns: MNSSection = field(default_factory=MNSSection)
    consumer: ConsumerSection = field(default_factory=ConsumerSection)
    retry: RetrySection = field(default_factory=RetrySection)
    dedupe: DedupeSection = field(default_factory=DedupeSection)
    dead_letter: DeadLetterSection = field(default_factory=DeadLetterSection)
    state: StateSection = field(default_factory=StateSection)
    log: LogSection = field(default_factory=LogSection)
    ops: OpsSection = field(default_factory=OpsSection)
    http_callback: HttpCallbackSection = field(default_factory=HttpCallbackSection)
    tracing: TracingSection = field(default_factory=TracingSection)
    handlers: list[HandlerSection] = field(default_factory=list)
    path: str = "<defaults>"
    # Keys ("consumer.workers", "handlers[0].secret") whose value a variable set.
    overrides: Mapping[str, Override] = field(default_factory=dict, compare=False, repr=False)

    def error(self, key: str, message: str) -> ConfigError:
        """A ConfigError about `key`, naming where its value came from: the variable that
        set it, else the file."""
        return _error(self.overrides, self.path, key, message)

    # Paths and credentials derived from the keys: each rule lives here, once.

    @property
    def state_dir(self) -> Path:
        """`[state] dir`, else the first of systemd's `$STATE_DIRECTORY`, else ./state."""
        return Path(
            self.state.dir or os.environ.get("STATE_DIRECTORY", "").split(":")[0] or "state"
        )

    @property
    def state_dir_origin(self) -> str:
        """Where `state_dir` comes from, for messages about it."""
        if self.state.dir:
            return "[state] dir"
        if os.environ.get("STATE_DIRECTORY"):
            return "$STATE_DIRECTORY, set by systemd's StateDirectory="
        return "the default, ./state in the working directory"

    @property
    def dedupe_path(self) -> Path:
        """The SQLite idempotency store (`[dedupe] backend = "sqlite"`): `[dedupe] path`,
        else dedupe.sqlite3 in the state directory."""
        return Path(self.dedupe.path) if self.dedupe.path else self.state_dir / "dedupe.sqlite3"

    @property
    def dead_letter_dir(self) -> Path:
        """Where dead letters are written unless `[dead_letter] queue` is set:
        `[dead_letter] dir`, else dead-letters/ in the state directory."""
        d = self.dead_letter.dir
        return Path(d) if d else self.state_dir / "dead-letters"

    @property
    def credentials(self) -> Credentials:
        """What MNS is called with: the default chain if `[mns] credentials = "default"`,
        else the AccessKey, already resolved against the environment when loaded."""
        mns = self.mns
        return resolve(
            mns.credentials,
            config=Credentials(mns.access_key_id, mns.access_key_secret, mns.security_token),
            environ={},  # read at load: `from_dict` took the environment it was given
        )


SECTIONS: dict[str, type[Any]] = {
    f.name: f.default_factory  # type: ignore[misc]
    for f in dataclasses.fields(Config)
    if f.name not in ("handlers", "path", "overrides")
}


def from_dict(
    data: Mapping[str, Any],
    where: str,
    environ: Mapping[str, str],
    *,
    from_credentials: Collection[str] = (),
) -> Config:
    """Validate `data` (a parsed TOML file, named `where` in errors) with the `VOD_EVENTS_*`
    overrides of `environ`; `from_credentials` names the variables systemd credentials
    supplied (for messages). Raises ConfigError.

    A config with no [[handlers]] is valid here (a Router built in Python may bring the
    handlers); the daemon refuses it (`require_handlers`)."""
    reader = _Reader(where, environ, from_credentials)
    unknown = sorted(set(data) - set(SECTIONS) - {"handlers"})
    if unknown:
        allowed = ", ".join([*SECTIONS, "handlers"])
        raise ConfigError(f"unknown section; allowed: {allowed}", path=where, key=unknown[0])
    sections: dict[str, Any] = {}
    for name, cls in SECTIONS.items():
        raw = data.get(name, {})
        if not isinstance(raw, dict):
            raise ConfigError("must be a table ([section])", path=where, key=name)
        sections[name] = reader.section(cls, name, dict(raw))
    handlers_raw = data.get("handlers", [])
    if not isinstance(handlers_raw, list):
        raise ConfigError("must be an array of tables ([[handlers]])", path=where, key="handlers")
    handlers = []
    for i, raw in enumerate(handlers_raw):
        label = f"handlers[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError("must be a table", path=where, key=label)
        # Overridable as VOD_EVENTS_HANDLERS_<i>_<KEY>, e.g. a secret from a Kubernetes Secret.
        handler = reader.section(HandlerSection, label, raw, env_section=f"handlers_{i}")
        _check_handler(handler, label, reader)
        handlers.append(handler)
    _check_handler_names(handlers, reader)
    reader.check_variables(len(handlers))
    _check_dedupe(sections["dedupe"], handlers, reader)
    if sections["ops"].listen:
        try:
            parse_listen(sections["ops"].listen)
        except ValueError as exc:
            raise reader.error("ops.listen", str(exc)) from None
    _check_endpoint(sections["mns"].endpoint, reader)
    sections["mns"] = _with_access_key(sections["mns"], environ)
    return Config(**sections, handlers=handlers, path=where, overrides=dict(reader.overrides))


def require_handlers(config: Config) -> None:
    """Raise ConfigError unless `config` has a [[handlers]] table: a daemon without one would
    delete every event unhandled."""
    if not config.handlers:
        raise ConfigError(NO_HANDLERS, path=config.path, key="handlers")


def parse_listen(listen: str) -> tuple[str, int]:
    """Split "host:port" ("[::1]:9400" for IPv6, ":9400" for every interface).

    Raises ValueError saying what is allowed.
    """
    host, sep, port_text = listen.rpartition(":")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ValueError(f"must be host:port with a port in 0..65535, got {listen!r}")
    host = host.removeprefix("[").removesuffix("]")
    return host or "0.0.0.0", int(port_text)  # noqa: S104 - ":9400" asks for every interface


def env_name(section: str, name: str) -> str:
    """The variable that overrides key `name` of `section` ("handlers_0" for a handler)."""
    return f"{ENV_PREFIX}{section.upper()}_{name.upper()}"


def _error(overrides: Mapping[str, Override], path: str, key: str, message: str) -> ConfigError:
    override = overrides.get(key)
    return override.error(key, message) if override else ConfigError(message, path=path, key=key)


class _Reader:
    """Reads sections from the file's tables and the environment, and remembers which keys
    a variable set, so that an error about one names the variable instead of the file."""

    def __init__(
        self, where: str, environ: Mapping[str, str], from_credentials: Collection[str]
    ) -> None:
        self.where = where
        self.environ = environ
        self.from_credentials = frozenset(from_credentials)
        self.overrides: dict[str, Override] = {}

    def error(self, key: str, message: str) -> ConfigError:
        return _error(self.overrides, self.where, key, message)

    def section(
        self, cls: type[Any], name: str, raw: dict[str, Any], *, env_section: str | None = None
    ) -> Any:
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for k in raw:
            if k not in fields:
                raise ConfigError(
                    f"unknown key; allowed in [{name}]: {', '.join(fields)}",
                    path=self.where,
                    key=f"{name}.{k}",
                )
        values: dict[str, Any] = {}
        for k, f in fields.items():
            variable = env_name(env_section or name, k)
            label = f"{name}.{k}"
            if variable in self.environ:
                source = (
                    "systemd credential"
                    if variable in self.from_credentials
                    else "environment variable"
                )
                override = self.overrides[label] = Override(source, variable)
                values[k] = _from_env(
                    f, self.environ[variable], functools.partial(override.error, label)
                )
            elif k in raw:
                values[k] = _checked(f, raw[k], functools.partial(self.error, label))
        return cls(**values)

    def check_variables(self, handlers: int) -> None:
        """Refuse a `VOD_EVENTS_*` variable that sets no key (a typo would be ignored)."""
        known = {
            env_name(name, f.name)
            for name, cls in SECTIONS.items()
            for f in dataclasses.fields(cls)
        }
        handler_keys = {f.name.upper() for f in dataclasses.fields(HandlerSection)}
        for variable in sorted(self.environ):
            if not variable.startswith(ENV_PREFIX) or variable in known:
                continue
            if NOT_KEYS.fullmatch(variable):
                continue
            source = (
                "systemd credential"
                if variable in self.from_credentials
                else "environment variable"
            )
            where = f"{source} {variable}"
            handler = re.fullmatch(rf"{ENV_PREFIX}HANDLERS_(\d+)_(\w+)", variable)
            if handler and handler[2] in handler_keys:
                if int(handler[1]) < handlers:
                    continue
                raise ConfigError(
                    f"there is no [[handlers]] table {int(handler[1])} in {self.where} "
                    f"(it has {handlers}, counted from 0)",
                    path=where,
                )
            patterns = [*known, *(env_name("handlers_<i>", k) for k in handler_keys)]
            close = difflib.get_close_matches(variable, patterns, n=1, cutoff=0.8)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(
                f"sets no config key{hint} (every key is VOD_EVENTS_<SECTION>_<KEY>, "
                "listed in config.example.toml)",
                path=where,
            )


def _from_env(f: dataclasses.Field[Any], text: str, fail: Callable[[str], ConfigError]) -> Any:
    kind = f.type
    shown = SECRET_MASK if f.metadata.get("secret") else repr(text)
    value: Any = text
    if kind == "int":
        try:
            value = int(text)
        except ValueError:
            raise fail(f"must be an integer, got {shown}") from None
    elif kind == "int | str":  # a number, or "auto"
        with contextlib.suppress(ValueError):
            value = int(text)
    elif kind == "float":
        try:
            value = float(text)
        except ValueError:
            raise fail(f"must be a number, got {shown}") from None
    elif kind == "bool":
        flag = {"true": True, "1": True, "yes": True, "on": True}
        flag |= {"false": False, "0": False, "no": False, "off": False}
        if text.strip().lower() not in flag:
            raise fail(f"must be true or false, got {shown}")
        value = flag[text.strip().lower()]
    elif kind == "list[str]":
        value = [part.strip() for part in text.split(",") if part.strip()]
    return _checked(f, value, fail)


def _checked(f: dataclasses.Field[Any], value: Any, fail: Callable[[str], ConfigError]) -> Any:
    kind, meta = f.type, f.metadata
    shown = SECRET_MASK if meta.get("secret") else repr(value)
    if kind == "int | str":  # "auto", or an integer in range
        if isinstance(value, str) and value.strip().lower() == AUTO:
            return AUTO
        if isinstance(value, str | bool) or not isinstance(value, int):
            raise fail(f'must be "auto" or an integer, got {shown}')
        kind = "int"
    ok = {
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "bool": isinstance(value, bool),
        "str": isinstance(value, str),
        "list[str]": isinstance(value, list) and all(isinstance(v, str) for v in value),
    }[str(kind)]
    if not ok:
        wanted = {
            "int": "an integer",
            "float": "a number",
            "bool": "true or false",
            "str": "a string",
        }.get(str(kind), "a list of strings")
        raise fail(f"must be {wanted}, got {shown}")
    if kind == "float":
        value = float(value)
        shown = SECRET_MASK if meta.get("secret") else repr(value)
        if not math.isfinite(value):
            raise fail(f"must be a finite number, got {shown}")
    low, high, choices = meta["low"], meta["high"], meta["choices"]
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"{low if low is not None else '-inf'}..{high if high is not None else 'inf'}"
        raise fail(f"must be in {bounds}, got {shown}")
    if choices:
        # Case does not matter ("INFO", "SQLite"): the canonical spelling is kept.
        canonical = {c.lower(): c for c in choices}
        if value.lower() not in canonical:
            allowed = ", ".join(repr(c) for c in choices if c)
            raise fail(f"must be one of {allowed}, got {shown}")
        value = canonical[value.lower()]
    return value


def _check_handler(handler: HandlerSection, label: str, reader: _Reader) -> None:
    if bool(handler.call) == bool(handler.type):
        raise ConfigError("set exactly one of 'call' or 'type'", path=reader.where, key=label)
    if not handler.events:
        raise reader.error(f"{label}.events", "must list at least one EventType or '*'")
    if not handler.allow_unknown_events:
        for name in handler.events:
            problem = unknown_event_type(name)
            if problem:
                raise reader.error(
                    f"{label}.events",
                    f"{problem} (for a type VOD added after this release, set "
                    "allow_unknown_events = true in this table)",
                )
    if handler.type == "jsonl" and not handler.path:
        raise reader.error(f"{label}.path", "the jsonl handler needs 'path'")
    if handler.type == "http" and not handler.url.startswith(("http://", "https://")):
        raise reader.error(f"{label}.url", "the http handler needs an http(s) 'url'")


def _check_handler_names(handlers: list[HandlerSection], reader: _Reader) -> None:
    """Refuse two tables with one idempotency name, unless both call the same function (a
    function may be listed twice, for different events: it runs once per event)."""
    first: dict[str, int] = {}
    for i, handler in enumerate(handlers):
        name = handler.route_name
        j = first.setdefault(name, i)
        if j != i and not (handler.call and handler.call == handlers[j].call):
            key = f"handlers[{i}].name" if handler.name else f"handlers[{i}]"
            raise reader.error(
                key,
                f"has the same name as handlers[{j}], {name!r}: names are idempotency keys, "
                "so once one completed for an event the other would be skipped as done; "
                "give one of them a distinct `name`",
            )
        if j != i and (handler.timeout, handler.max_concurrency) != (
            handlers[j].timeout,
            handlers[j].max_concurrency,
        ):
            raise reader.error(
                f"handlers[{i}].timeout"
                if handler.timeout != handlers[j].timeout
                else f"handlers[{i}].max_concurrency",
                f"differs from handlers[{j}], the same handler ({name!r}): one handler has "
                "one timeout and one max_concurrency",
            )
        if j != i and handler.transactional != handlers[j].transactional:
            raise reader.error(
                f"handlers[{i}].transactional",
                f"is {str(handler.transactional).lower()} but "
                f"{str(handlers[j].transactional).lower()} in handlers[{j}], the same handler "
                f"({name!r}): it runs one way for every event it matches",
            )


def _check_dedupe(dedupe: DedupeSection, handlers: list[HandlerSection], reader: _Reader) -> None:
    """The postgres backend's URL and schema; transactional handlers need that backend."""
    if dedupe.backend == "postgres":
        if not dedupe.url:
            raise reader.error(
                "dedupe.url",
                f"backend 'postgres' needs 'url' ({POSTGRES_URL_EXAMPLE}; or "
                f"{env_name('dedupe', 'url')})",
            )
        if not dedupe.url.startswith(("postgresql://", "postgres://")) and "=" not in dedupe.url:
            raise reader.error(
                "dedupe.url",
                f"must be a PostgreSQL URL ({POSTGRES_URL_EXAMPLE}) or a conninfo string "
                f"(host=... dbname=...), got {SECRET_MASK}",
            )
        if not PLAIN_IDENTIFIER.fullmatch(dedupe.schema):
            raise reader.error(
                "dedupe.schema",
                "must be a plain SQL identifier (a letter or _, then letters, digits or _; "
                f"at most 63), got {dedupe.schema!r}",
            )
    for i, handler in enumerate(handlers):
        if not handler.transactional:
            continue
        if not handler.call:
            raise reader.error(
                f"handlers[{i}].transactional",
                f"applies to `call` handlers only (ctx.db is for your code), not to the "
                f"built-in {handler.type!r}",
            )
        if dedupe.backend != "postgres":
            source = reader.overrides.get("dedupe.backend")
            where = f" (set by {source.variable})" if source else ""
            raise reader.error(
                f"handlers[{i}].transactional",
                f"needs dedupe.backend = 'postgres', but dedupe.backend is "
                f"{dedupe.backend!r}{where}: a transactional handler writes through ctx.db, "
                "a transaction in the store's own PostgreSQL database",
            )


def _check_endpoint(endpoint: str, reader: _Reader) -> None:
    if not endpoint:
        raise reader.error("mns.endpoint", "is required (or VOD_EVENTS_MNS_ENDPOINT)")
    wanted = (
        "must be an http:// or https:// URL, e.g. https://<account-id>.mns.<region>.aliyuncs.com"
    )
    parts = urllib.parse.urlsplit(endpoint)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise reader.error("mns.endpoint", f"{wanted}, got {endpoint!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise reader.error("mns.endpoint", f"{wanted}, got {endpoint!r}")


def _with_access_key(mns: MNSSection, environ: Mapping[str, str]) -> MNSSection:
    """`mns` with its AccessKey resolved: the file (or VOD_EVENTS_MNS_*) over the
    ALIBABA_CLOUD_* variables. Done in either mode, so that masking knows every secret."""
    found = resolve(
        STATIC,
        config=Credentials(mns.access_key_id, mns.access_key_secret, mns.security_token),
        environ=environ,
    )
    return dataclasses.replace(
        mns,
        access_key_id=found.access_key_id,
        access_key_secret=found.access_key_secret,
        security_token=found.security_token,
    )


def masked(config: Config) -> dict[str, Any]:
    """The effective config as plain data with every secret replaced by a mask."""

    def section(obj: Any) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            out[f.name] = SECRET_MASK if f.metadata.get("secret") and value else value
        return out

    data: dict[str, Any] = {name: section(getattr(config, name)) for name in SECTIONS}
    data["handlers"] = [section(h) for h in config.handlers]
    return data


def secret_values(config: Config) -> list[str]:
    """Every secret value in the config (for tests and log scrubbing)."""
    found = []
    for obj in [*(getattr(config, name) for name in SECTIONS), *config.handlers]:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.metadata.get("secret") and value:
                # A list of secrets (e.g. rotated keys): each one, not the list's repr.
                values = [str(v) for v in value] if isinstance(value, list) else [str(value)]
                found += values
                # A URL's password alone too: a library's message may quote just that.
                found += [p for v in values for p in _url_passwords(v) if p not in found]
    return found


def _url_passwords(value: str) -> list[str]:
    """The password in a URL's user-info (as written, and decoded), if any."""
    try:
        password = urllib.parse.urlsplit(value).password
    except ValueError:
        return []
    if not password:
        return []
    return list(dict.fromkeys([password, urllib.parse.unquote(password)]))
