"""`vod-events doctor --config FILE`: connect and report what would stop events arriving.

Each check prints `ok`, `warning` or `error` with what it found and, when something is
wrong, the fix. The checks follow the path of an event: credentials, the queue and its
attributes (VOD drops events silently when it cannot write them), the clock, the handlers,
the idempotency store and the dead-letter target. Nothing is received, deleted or written.

Exit codes: 0 no errors (warnings allowed); 1 at least one error; 2 invalid configuration.
Secrets never appear in the output: each is masked wherever it might (an error text, a URL).
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import http.client
import logging
import os
import socket
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

from vod_events.cli import config_error
from vod_events.config import SECRET_MASK, Config, HandlerSection, load, secret_values
from vod_events.config.credentials import DEFAULT_CHAIN, default_chain, how_to_supply
from vod_events.config.secrets import exposure_warning
from vod_events.errors import ConfigError
from vod_events.router import import_handler
from vod_events.service.assemble import (
    OTEL_EXTRA,
    POSTGRES_EXTRA,
    require_postgres_driver,
    require_tracing_sdk,
    transport_factory,
)
from vod_events.transports import (
    FatalTransportError,
    QueueInfo,
    Transport,
    TransportError,
    TransportFactory,
)

EXIT_OK, EXIT_ERRORS = 0, 1

FULL_MESSAGE_SIZE = 65536  # MNS's maximum; VOD's AI results can come close to it
BACKLOG_WARNING = 1000  # waiting messages worth a warning
SKEW_WARNING_SECONDS = 60.0  # lag metrics and logs get confusing
SKEW_ERROR_SECONDS = 15 * 60.0  # MNS rejects signed requests (TimeExpired)
NETWORK_TIMEOUT = 5.0
MIN_MASKED = 6  # characters; see `mask`

CREDENTIAL_CODES = {
    "InvalidAccessKeyId": "the AccessKey id is not known to this account and region",
    "SignatureDoesNotMatch": "the AccessKey secret does not match the id",
    "AccessDenied": "the AccessKey is valid but may not use this queue",
    "MissingAuthorizationHeader": "the request was not signed",
    "InvalidAuthorizationHeader": "the request signature is malformed",
}


class Status(enum.Enum):
    OK = "ok"
    WARNING = "warning"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class Finding:
    """The result of one check: what was found and, unless ok, how to fix it."""

    status: Status
    check: str
    detail: str
    fix: str = ""


def ok(check: str, detail: str) -> Finding:
    return Finding(Status.OK, check, detail)


def warning(check: str, detail: str, fix: str) -> Finding:
    return Finding(Status.WARNING, check, detail, fix)


def error(check: str, detail: str, fix: str) -> Finding:
    return Finding(Status.ERROR, check, detail, fix)


# ---------------------------------------------------------------- command line


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the TOML config file")


def run(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
    except ConfigError as exc:
        return config_error(exc)
    findings = Doctor(config).run()
    print(render(findings, secret_values(config)), end="")
    return EXIT_ERRORS if any(f.status is Status.ERROR for f in findings) else EXIT_OK


def render(findings: list[Finding], hidden: list[str]) -> str:
    """One line per finding, its fix indented below, a summary last; secrets masked."""
    width = max((len(f.check) for f in findings), default=0)
    lines = []
    for f in findings:
        lines.append(f"{f.status.value:<8} {f.check:<{width}}  {f.detail}")
        if f.fix:
            lines.append(f"{'':<8} {'':<{width}}  fix: {f.fix}")
    counts = {s: sum(1 for f in findings if f.status is s) for s in Status}
    lines.append(
        f"{counts[Status.OK]} ok, {counts[Status.WARNING]} warning(s), "
        f"{counts[Status.ERROR]} error(s)"
    )
    return mask("\n".join(lines) + "\n", hidden)


def mask(text: str, hidden: list[str]) -> str:
    """`text` with every secret replaced by the mask (longest first: one may contain another).

    A safety net behind never formatting secrets in: values shorter than MIN_MASKED are left
    alone, as they would also mask ordinary words (real keys and passwords are longer).
    """
    for value in sorted(hidden, key=len, reverse=True):
        if len(value) >= MIN_MASKED:
            text = text.replace(value, SECRET_MASK)
    return text


# ---------------------------------------------------------------- the checks


class Doctor:
    """Runs every check for one config. `connect` makes queue transports (default: MNS)."""

    def __init__(self, config: Config, connect: TransportFactory | None = None) -> None:
        self.config = config
        self._connect = connect

    def connect(self, queue: str) -> Transport:
        # Made when first needed: only once the credentials were found usable.
        if self._connect is None:
            self._connect = transport_factory(self.config)
        return self._connect(queue)

    def run(self) -> list[Finding]:
        credentials = self.credentials()
        findings = [*self.config_file(), *credentials]
        if not any(f.status is Status.ERROR for f in credentials):
            info, connection = self.queue()
            findings += connection
            if info is not None:
                findings += self.queue_attributes(info)
        if not any(f.check == "clock" for f in findings):  # MNS may have judged it already
            findings.append(check_clock(self.config.mns.endpoint))
        findings += self.handlers()
        findings.append(self.dedupe_store())
        # Worth asking about the dead-letter queue only if MNS accepted the credentials.
        connected = any(f.check == "credentials" and f.status is Status.OK for f in findings)
        findings.append(self.dead_letter_target(connected))
        if self.config.tracing.enabled:
            findings.append(check_tracing(self.config))
        return findings

    def config_file(self) -> Iterator[Finding]:
        exposed = exposure_warning(self.config.path)
        if exposed:
            yield warning("config file", exposed, "")  # the text says how to fix it

    def credentials(self) -> list[Finding]:
        credentials = self.config.credentials
        if credentials.default_chain:
            try:
                default_chain(self.config.path).get_credential()
            except ConfigError as exc:
                return [error("credentials", str(exc), "pip install alibabacloud-credentials")]
            except Exception as exc:
                return [
                    error(
                        "credentials",
                        f"the default credential chain found none: {type(exc).__name__}: {exc}",
                        "attach a RAM role to the ECS instance, set up RRSA (OIDC) for the pod, "
                        "or configure a profile (~/.alibabacloud/credentials)",
                    )
                ]
            return [ok("credentials", "found by the default credential chain")]
        if not credentials.has_access_key:
            chain = f"[mns] credentials = '{DEFAULT_CHAIN}'"
            return [
                error(
                    "credentials",
                    "no AccessKey configured",
                    how_to_supply(config=True, chain=chain),
                )
            ]
        return []  # whether the service accepts them is known after connecting

    def queue(self) -> tuple[QueueInfo | None, list[Finding]]:
        mns = self.config.mns
        try:
            transport = self.connect(mns.queue)
            try:
                info = transport.queue_info()
            finally:
                transport.close()
        except FatalTransportError as exc:
            return None, self._refused(exc)
        except TransportError as exc:
            return None, [
                error(
                    "endpoint",
                    f"cannot reach {mns.endpoint}: {exc}",
                    "check [mns] endpoint (https://<account-id>.mns.<region>.aliyuncs.com), "
                    "DNS, and any firewall or proxy between here and MNS",
                )
            ]
        return info, [
            ok("credentials", f"accepted by {mns.endpoint}"),
            ok("queue", f"{mns.queue!r} exists"),
        ]

    def _refused(self, exc: FatalTransportError) -> list[Finding]:
        mns = self.config.mns
        if exc.code == "QueueNotExist":
            return [
                ok("credentials", f"accepted by {mns.endpoint}"),
                error(
                    "queue",
                    f"{mns.queue!r} does not exist at {mns.endpoint}",
                    "create it in the MNS console (same region as VOD) and name it in VOD's "
                    "event notification settings (SetMessageCallback MnsQueueName), or fix "
                    "[mns] queue / endpoint",
                ),
            ]
        if exc.code == "TimeExpired":
            return [
                error(
                    "clock",
                    f"MNS rejected the request's Date as too far from its clock: {exc}",
                    "synchronise this host's clock (chrony or systemd-timesyncd)",
                )
            ]
        meaning = CREDENTIAL_CODES.get(exc.code, "the request was refused")
        fix = (
            "grant the RAM user or role mns:GetQueueAttributes, ReceiveMessage, "
            "BatchReceiveMessage, DeleteMessage, BatchDeleteMessage and ChangeMessageVisibility "
            "on this queue"
            if exc.code == "AccessDenied"
            else "check the AccessKey id and secret, and that they belong to the account in "
            "the endpoint"
        )
        return [error("credentials", f"{meaning}: {exc}", fix)]

    def queue_attributes(self, info: QueueInfo) -> list[Finding]:
        return [
            self._message_size(info),
            self._visibility(info),
            self._depth(info),
        ]

    def _message_size(self, info: QueueInfo) -> Finding:
        if info.maximum_message_size < FULL_MESSAGE_SIZE:
            return warning(
                "message size",
                f"MaximumMessageSize is {info.maximum_message_size} bytes: VOD silently drops "
                "events larger than that (large AI results: video tags, ASR text, audit)",
                f"set the queue's MaximumMessageSize to {FULL_MESSAGE_SIZE} "
                "(MNS console, or SetQueueAttributes)",
            )
        return ok("message size", f"MaximumMessageSize is {info.maximum_message_size} bytes")

    def _visibility(self, info: QueueInfo) -> Finding:
        configured = self.config.consumer.visibility_timeout
        visibility = configured or info.visibility_timeout
        source = "[consumer] visibility_timeout" if configured else "the queue's VisibilityTimeout"
        http_timeouts = [h.timeout for h in self.config.handlers if h.type == "http"]
        # The longest a delivery keeps retrying its handlers before it is handed back.
        retry_time = self.config.retry.max_seconds + max(http_timeouts, default=0.0)
        if visibility < retry_time:
            return warning(
                "visibility",
                f"a delivery may retry its handlers for up to {retry_time:g} s, longer than "
                f"the {visibility} s visibility ({source}): it then depends on the heartbeat "
                "extending it, and a stalled process gets it redelivered while still running",
                f"raise {source} to at least {retry_time:.0f} s, or lower [retry] max_seconds",
            )
        return ok(
            "visibility",
            f"{visibility} s ({source}) covers {retry_time:g} s of handler retries",
        )

    def _depth(self, info: QueueInfo) -> Finding:
        detail = (
            f"{info.active_messages} waiting, {info.inactive_messages} in flight, "
            f"{info.delay_messages} delayed"
        )
        if info.active_messages > BACKLOG_WARNING:
            return warning(
                "queue depth",
                f"{detail}: a backlog",
                "add [consumer] workers, or run more replicas on the same queue",
            )
        return ok("queue depth", detail)

    def handlers(self) -> list[Finding]:
        if not self.config.handlers:
            return [
                error(
                    "handlers",
                    "no [[handlers]]: the daemon refuses to start, as it would delete every "
                    "event unhandled",
                    "add a [[handlers]] table (call = 'package.module:function' or a built-in)",
                )
            ]
        return [self._handler(i, h) for i, h in enumerate(self.config.handlers)]

    def _handler(self, index: int, handler: HandlerSection) -> Finding:
        label = f"handler {index + 1}"
        if handler.call:
            try:
                import_handler(handler.call)
            except ConfigError as exc:  # missing, or failing as it is imported
                return error(
                    label,
                    str(exc),
                    "install the package in this environment, fix the module path in "
                    f"handlers[{index}].call, or fix the error the module raises",
                )
            return ok(label, f"{handler.call} imports")
        if handler.type == "jsonl":
            return _creatable(label, Path(handler.path), f"handlers[{index}].path")
        if handler.type == "http":
            return _reachable(label, handler.url)
        return ok(label, f"built-in {handler.type!r}")

    def dedupe_store(self) -> Finding:
        d = self.config.dedupe
        if d.backend == "sqlite":
            return _sqlite(self.config.dedupe_path)
        if d.backend == "redis":
            return _redis(d.url)
        if d.backend == "postgres":
            return _postgres(self.config)
        return warning(
            "dedupe",
            f"backend {d.backend!r}: a redelivered event runs its handlers again "
            f"{'after a restart' if d.backend == 'memory' else 'every time'}",
            "use backend = 'sqlite' (one host), 'redis' or 'postgres' (several replicas)",
        )

    def dead_letter_target(self, connected: bool = True) -> Finding:
        target = self.config.dead_letter
        if target.queue:
            if not connected:
                return warning(
                    "dead letters", f"queue {target.queue!r} not checked: MNS refused us", ""
                )
            try:
                transport = self.connect(target.queue)
                try:
                    transport.queue_info()
                finally:
                    transport.close()
            except TransportError as exc:
                return error(
                    "dead letters",
                    f"queue {target.queue!r}: {exc}",
                    "create the dead-letter queue, or fix [dead_letter] queue",
                )
            return ok("dead letters", f"queue {target.queue!r} exists")
        return _creatable(
            "dead letters", self.config.dead_letter_dir, "[dead_letter] dir or [state] dir"
        )


# ---------------------------------------------------------------- helpers


def check_clock(endpoint: str, now: Callable[[], float] = time.time) -> Finding:
    """Compare our clock with the `Date` header of a plain, unsigned HEAD to the endpoint."""
    parts = urllib.parse.urlsplit(endpoint)
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    try:
        connection = connection_class(parts.hostname or "", parts.port, timeout=NETWORK_TIMEOUT)
        try:
            sent = now()
            connection.request("HEAD", "/")
            response = connection.getresponse()
            received = now()
            date = response.getheader("Date")
        finally:
            connection.close()
    except (OSError, http.client.HTTPException) as exc:
        return warning("clock", f"cannot ask {parts.netloc} for its time: {exc}", "")
    if not date:
        return warning("clock", f"{parts.netloc} sent no Date header to compare with", "")
    server = parsedate_to_datetime(date).timestamp()
    # The header has whole seconds: compare with the middle of the request.
    skew = server - (sent + received) / 2
    described = f"this host's clock is {abs(skew):.0f} s {'behind' if skew > 0 else 'ahead of'}"
    fix = "synchronise this host's clock (chrony or systemd-timesyncd)"
    if abs(skew) >= SKEW_ERROR_SECONDS:
        return error("clock", f"{described} MNS: requests are refused (TimeExpired)", fix)
    if abs(skew) >= SKEW_WARNING_SECONDS:
        return warning("clock", f"{described} MNS: lag metrics will be off", fix)
    return ok("clock", f"within {max(abs(skew), 1.0):.0f} s of the server's Date header")


def check_tracing(config: Config, environ: Mapping[str, str] | None = None) -> Finding:
    """`[tracing]` on: OpenTelemetry installed, the OTEL_* exporter settings usable, and the
    OTLP endpoint accepting connections (a warning if not: the daemon runs, spans are lost)."""
    environ = os.environ if environ is None else environ
    try:
        require_tracing_sdk(config)
    except ConfigError as exc:
        return error("tracing", str(exc).partition(": ")[2] or str(exc), OTEL_EXTRA)
    from vod_events import tracing_otel

    try:
        names = tracing_otel.exporter_names(environ)
    except ConfigError as exc:
        return error("tracing", str(exc), "fix the variable, or unset it for the default (otlp)")
    if "otlp" not in names:
        return ok("tracing", f"OpenTelemetry, exporter: {', '.join(names) or 'none'}")
    url = tracing_otel.otlp_endpoint(environ)
    if problem := _connect_error(url):
        return warning(
            "tracing",
            f"OTLP endpoint {redact_url(url)} is not reachable now: {problem} "
            "(events are handled; their spans are dropped)",
            "start the collector, or set OTEL_EXPORTER_OTLP_ENDPOINT "
            "(or OTEL_TRACES_EXPORTER=console)",
        )
    return ok("tracing", f"OpenTelemetry, OTLP to {redact_url(url)} accepts connections")


def _creatable(check: str, path: Path, key: str) -> Finding:
    """Can `path` (a file or a directory) be written, or created where it is missing?"""
    if path.exists():
        if os.access(path, os.W_OK):
            return ok(check, f"{path} is writable")
        return error(check, f"{path} is not writable", f"make it writable, or change {key}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
        return ok(check, f"{path} can be created ({parent} is writable)")
    return error(
        check,
        f"{path} cannot be created: {parent} is not a writable directory",
        f"create it writable by the service user (systemd: StateDirectory=), or change {key}",
    )


def _sqlite(path: Path) -> Finding:
    if not path.exists():
        return _creatable("dedupe", path, "[dedupe] path or [state] dir")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=NETWORK_TIMEOUT)
        try:
            tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as exc:
        return error("dedupe", f"{path}: {exc}", "move the broken file away; it is rebuilt")
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        return error(
            "dedupe",
            f"{path} or its directory is not writable (SQLite needs both)",
            "give the service user write access to both",
        )
    return ok("dedupe", f"SQLite {path} opens ({tables} table(s))")


def _redis(url: str) -> Finding:
    import redis

    where = redact_url(url)
    try:
        client = redis.Redis.from_url(
            url, socket_timeout=NETWORK_TIMEOUT, socket_connect_timeout=NETWORK_TIMEOUT
        )
        try:
            client.ping()
        finally:
            client.close()
    except (ValueError, redis.RedisError) as exc:
        return error(
            "dedupe",
            f"Redis {where}: {type(exc).__name__}: {exc}",
            "check [dedupe] url (redis://[:password@]host:port/db) and that Redis is reachable",
        )
    return ok("dedupe", f"Redis {where} answers PING")


def _postgres(config: Config) -> Finding:
    """Connect as the daemon would, and look for the store's tables and the role's
    privileges on them; create nothing."""
    try:
        require_postgres_driver(config)
    except ConfigError as exc:
        return error("dedupe", str(exc).partition(": ")[2] or str(exc), POSTGRES_EXTRA)
    # The pool logs each failed connection attempt: this command reports them as a finding.
    pool_log = logging.getLogger("psycopg.pool")
    level = pool_log.level
    pool_log.setLevel(logging.CRITICAL)
    try:
        finding = _postgres_store_finding(config)
    finally:
        pool_log.setLevel(level)
    # libpq's messages run over several lines: one line per finding.
    return dataclasses.replace(finding, detail=" ".join(finding.detail.split()))


def _postgres_store_finding(config: Config) -> Finding:
    from vod_events.postgres_store import PostgresStore, PostgresStoreError, SchemaMissingError

    d = config.dedupe
    fix_connection = (
        "check [dedupe] url (postgresql://user:password@host:5432/dbname, or "
        "VOD_EVENTS_DEDUPE_URL), that PostgreSQL is reachable from here, and that it accepts "
        "this role (pg_hba.conf, the password)"
    )
    try:
        store = PostgresStore(
            d.url,
            schema=d.schema,
            create=False,  # the doctor only looks
            min_size=0,
            max_size=1,
            pool_timeout=NETWORK_TIMEOUT,
            connect_timeout=NETWORK_TIMEOUT,
            statement_timeout=d.statement_timeout or None,
            cleanup_interval=None,
            application_name="vod-events doctor",
        )
    except PostgresStoreError as exc:
        return error("dedupe", f"PostgreSQL: {exc}", fix_connection)
    tables = f"{d.schema}.idempotency and {d.schema}.deferrals"
    try:
        try:
            store.ping(NETWORK_TIMEOUT)
        except SchemaMissingError:
            if store.may_create_tables(NETWORK_TIMEOUT):
                return ok(
                    "dedupe",
                    f"PostgreSQL {store.where} answers; {tables} are missing, and the daemon "
                    "creates them on first use (this role may)",
                )
            return error(
                "dedupe",
                f"PostgreSQL {store.where} answers, but {tables} are missing and this role "
                f"may not create them (no CREATE on the schema {d.schema}, or on the database "
                "when that schema is missing)",
                "run `vod-events dedupe migrate --config FILE` once, with a [dedupe] url of a "
                "role that may create them (then grant this role its privileges on them), "
                "or grant this role CREATE",
            )
        if lacking := store.missing_privileges(NETWORK_TIMEOUT):
            return error(
                "dedupe",
                f"PostgreSQL {store.where} answers and {tables} are there, but this role "
                f"lacks {'; '.join(lacking)}",
                f"as their owner: GRANT USAGE ON SCHEMA {d.schema} TO <role>; GRANT SELECT, "
                f"INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {d.schema} TO <role>",
            )
    except PostgresStoreError as exc:  # names the database, never the password
        return error("dedupe", str(exc), fix_connection)
    finally:
        store.close()
    return ok("dedupe", f"PostgreSQL {store.where} answers; {tables} are there")


def _connect_error(url: str) -> str:
    """Why a TCP connection to `url`'s host and port fails now; "" if it succeeds."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=NETWORK_TIMEOUT).close()
    except OSError as exc:
        return str(exc.strerror or exc)
    return ""


def _reachable(check: str, url: str) -> Finding:
    if problem := _connect_error(url):
        return warning(
            check,
            f"{redact_url(url)} is not reachable now: {problem}",
            "start the application (events are retried until it answers), or fix the url",
        )
    return ok(check, f"{redact_url(url)} accepts connections")


def redact_url(url: str) -> str:
    """`url` without the password of its user-info part."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{SECRET_MASK}@{host}"))
