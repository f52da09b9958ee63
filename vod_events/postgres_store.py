"""Idempotency in PostgreSQL: the application's own database as the store, so that a
handler's rows and its completion can commit in one transaction (`PostgresStore.transaction`).

The claim / complete / release / renew / take-over semantics are those of the other stores
(vod_events/dedupe.py); the key's row moves through the same states:

    (absent) --claim--> in_progress --complete--> completed    (kept `completed_ttl`)
                              \\--release / lease lapses--> (absent, or taken by the next claim)

Tables live in one schema (`vod_events` by default): `idempotency (key, state, owner,
expires)` and `deferrals (message_id, count, expires)`, expiries in seconds since the epoch.
They are created on first use, or ahead of time by `migrate` for databases where the daemon's
role may not create anything (then pass `create=False`).
"""

from __future__ import annotations

import contextlib
import re
import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeAlias
from urllib.parse import quote

import psycopg
import structlog
from psycopg import errors, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from vod_events.dedupe import (
    DEFAULT_CLAIM_TTL,
    DEFAULT_COMPLETED_TTL,
    Claim,
    ClaimState,
    HeldClaims,
    complete_retried,
)

DEFAULT_SCHEMA = "vod_events"
TABLES = ("idempotency", "deferrals")
TABLE_PRIVILEGES = ["SELECT", "INSERT", "UPDATE", "DELETE"]  # what the store does to its tables
CLEANUP_BATCH = 1000  # rows per DELETE: each one a short transaction, never one huge delete
CLEANUP_MAX_BATCHES = 100  # per round; the rest waits for the next round
CLEANUP_INTERVAL = 60.0  # seconds between rounds of the background cleanup
_DOWN_WAIT = 0.5  # seconds a call waits for a connection while connecting fails

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_IN_PROGRESS = ClaimState.IN_PROGRESS.value
_COMPLETED = ClaimState.COMPLETED.value

Connection: TypeAlias = psycopg.Connection[TupleRow]
ConnectReport = Callable[[BaseException | None], None]


class _ReportingConnection(psycopg.Connection[TupleRow]):
    """A connection that tells the store whether each attempt to open one failed (the pool
    opens them in its own threads, and keeps their errors to its log)."""

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Self:
        report: ConnectReport | None = kwargs.pop("report", None)
        try:
            conn = super().connect(conninfo, **kwargs)
        except psycopg.Error as exc:
            if report is not None:
                report(exc)
            raise
        if report is not None:
            report(None)
        return conn


class PostgresStoreError(Exception):
    """The PostgreSQL store failed; the message never contains the database password."""


class StoreUnavailableError(PostgresStoreError):
    """PostgreSQL did not answer in time, refused the connection, or dropped it."""


class SchemaMissingError(PostgresStoreError):
    """The store's tables are not there, and the store may not create them (`create=False`)."""


class ClaimLostError(PostgresStoreError):
    """`transaction(key)` ended while this store did not hold the claim on `key` (never
    claimed, released, or lapsed and taken by another replica): everything was rolled back."""


# ---------------------------------------------------------------------- URLs and secrets


@dataclass(frozen=True, slots=True, repr=False)
class _Target:
    """A database URL, parsed once: the conninfo to connect with and a safe description.
    Its repr is the description: the password never reaches a log or a traceback."""

    params: dict[str, Any]
    secrets: tuple[str, ...]  # the password as written in the URL and as decoded

    @classmethod
    def parse(cls, url: str) -> _Target:
        try:
            params = conninfo_to_dict(url)
        except psycopg.Error:
            # libpq's message quotes the string it could not parse, password and all.
            raise PostgresStoreError(
                "not a PostgreSQL URL or conninfo string (e.g. postgresql://user@host/db)"
            ) from None
        password = str(params.get("password") or "")
        secrets = {password, quote(password, safe=""), quote(password)}
        return cls(params, tuple(s for s in secrets if len(s) >= 3))

    @property
    def description(self) -> str:
        """`postgresql://user@host:port/dbname`, without the password."""
        p = self.params
        user = f"{p['user']}@" if p.get("user") else ""
        host = str(p.get("host") or p.get("hostaddr") or "localhost")
        port = f":{p['port']}" if p.get("port") else ""
        return f"postgresql://{user}{host}{port}/{p.get('dbname') or ''}"

    def __repr__(self) -> str:
        return f"_Target({self.description!r})"

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def conninfo(self, **defaults: Any) -> str:
        """The URL's parameters over `defaults`; `options` is appended to, not replaced."""
        params = {**defaults, **self.params}
        if defaults.get("options") and self.params.get("options"):
            params["options"] = f"{self.params['options']} {defaults['options']}"
        return make_conninfo("", **{k: v for k, v in params.items() if v is not None})


def describe_url(url: str) -> str:
    """`postgresql://user@host:port/dbname`: the database `url` names, without its password.
    Raises PostgresStoreError for a string that is not a URL or conninfo."""
    return _Target.parse(url).description


def _check_schema_name(schema: str) -> str:
    if not _IDENTIFIER.fullmatch(schema):
        raise ValueError(f"not a plain SQL identifier (letters, digits, _): {schema!r}")
    return schema


# ------------------------------------------------------------------------------ statements

# Expiries are seconds since the epoch. `now` is the database server's clock - one clock for
# every replica, whatever their hosts' clocks say - unless the store was given a clock
# (tests move time by hand): then the parameter `now` carries it.
_NOW = "COALESCE(%(now)s::float8, extract(epoch FROM clock_timestamp())::float8)"


@dataclass(frozen=True, slots=True)
class _Statements:
    claim: bytes
    claim_many: bytes
    look: bytes
    completed_of: bytes
    take_over: bytes
    complete: bytes
    release: bytes
    renew: bytes
    complete_owned: bytes
    state: bytes
    count_deferral: bytes
    deferrals: bytes
    cleanup: tuple[bytes, ...]

    @classmethod
    def for_schema(cls, schema: str) -> _Statements:
        t = sql.Identifier(schema, "idempotency")
        d = sql.Identifier(schema, "deferrals")

        def q(text: str, table: sql.Identifier = t, **names: sql.Composable) -> bytes:
            """`text` with {now} (see _NOW) and {t} (the table) filled in, rendered once:
            psycopg caches what it parsed of a query given as bytes, not of a Composed."""
            composed = sql.SQL(text).format(now=sql.SQL(_NOW), t=table, **names)
            return composed.as_bytes(None)  # plain identifiers (checked): no escaping to do

        # The states are spelled as in ClaimState ('in_progress', 'completed').
        return cls(
            # Take the key if it is absent or its row has expired, in ONE statement: two
            # replicas inserting at once meet on the primary key; the loser waits for the
            # winner's row and re-checks the WHERE on it, so only one of them gets a row back.
            claim=q(
                "INSERT INTO {t} AS t (key, state, owner, expires)"
                " VALUES (%(key)s, 'in_progress', %(owner)s, {now} + %(ttl)s)"
                " ON CONFLICT (key) DO UPDATE"
                " SET state = excluded.state, owner = excluded.owner, expires = excluded.expires"
                " WHERE t.expires <= {now}"
                " RETURNING 1"
            ),
            # `claim` for many keys, in key order: two replicas claiming overlapping batches
            # wait for each other's rows in the same order, never in a deadlock.
            claim_many=q(
                "INSERT INTO {t} AS t (key, state, owner, expires)"
                " SELECT c.key, 'in_progress', c.owner, {now} + %(ttl)s"
                " FROM unnest(%(keys)s::text[], %(owners)s::text[]) AS c (key, owner)"
                " ORDER BY c.key"
                " ON CONFLICT (key) DO UPDATE"
                " SET state = excluded.state, owner = excluded.owner, expires = excluded.expires"
                " WHERE t.expires <= {now}"
                " RETURNING key"
            ),
            look=q("SELECT state, owner, expires - {now} FROM {t} WHERE key = %(key)s"),
            completed_of=q(
                "SELECT key FROM {t}"
                " WHERE key = ANY(%(keys)s::text[]) AND state = 'completed' AND expires > {now}"
            ),
            # A dead owner's claim, taken over only if it still has that owner.
            take_over=q(
                "UPDATE {t} SET owner = %(owner)s, expires = {now} + %(ttl)s"
                " WHERE key = %(key)s AND owner = %(old)s AND state = 'in_progress'"
            ),
            complete=q(
                "INSERT INTO {t} (key, state, owner, expires)"
                " VALUES (%(key)s, 'completed', '', {now} + %(ttl)s)"
                " ON CONFLICT (key) DO UPDATE"
                " SET state = excluded.state, owner = '', expires = excluded.expires"
            ),
            release=q(
                "DELETE FROM {t}"
                " WHERE key = %(key)s AND owner = %(owner)s AND state = 'in_progress'"
            ),
            renew=q(
                "UPDATE {t} AS t SET expires = {now} + %(ttl)s"
                " FROM unnest(%(keys)s::text[], %(owners)s::text[]) AS held (key, owner)"
                " WHERE t.key = held.key AND t.owner = held.owner AND t.state = 'in_progress'"
            ),
            # Inside the caller's transaction: completes the key only if this store still
            # holds the claim (compare-and-set on the owner), locking the row until COMMIT.
            # A replica taking the key meanwhile either went first (no row here) or waits for
            # this transaction and then finds the key completed.
            complete_owned=q(
                "UPDATE {t} SET state = 'completed', owner = '', expires = {now} + %(ttl)s"
                " WHERE key = %(key)s AND owner = %(owner)s AND state = 'in_progress'"
            ),
            state=q("SELECT state FROM {t} WHERE key = %(key)s"),
            count_deferral=q(
                "INSERT INTO {t} AS d (message_id, count, expires)"
                " VALUES (%(id)s, 1, {now} + %(ttl)s)"
                " ON CONFLICT (message_id) DO UPDATE"
                " SET count = CASE WHEN d.expires > {now} THEN d.count + 1 ELSE 1 END,"
                " expires = excluded.expires"
                " RETURNING count",
                d,
            ),
            deferrals=q("SELECT count FROM {t} WHERE message_id = %(id)s AND expires > {now}", d),
            # At most `limit` expired rows per statement, skipping rows that someone has
            # locked (a claim being taken over, a transactional completion): never waits,
            # never deadlocks with `renew`. The outer test re-checks the expiry on the row's
            # latest version, so a row re-claimed meanwhile is kept.
            cleanup=tuple(
                q(
                    "DELETE FROM {t} WHERE {column} IN (SELECT {column} FROM {t}"
                    " WHERE expires < {now} LIMIT %(limit)s FOR UPDATE SKIP LOCKED)"
                    " AND expires < {now}",
                    table,
                    column=sql.Identifier(column),
                )
                for table, column in ((t, "key"), (d, "message_id"))
            ),
        )


def _ddl(schema: str) -> list[sql.Composed]:
    s = sql.Identifier(schema)
    t = sql.Identifier(schema, "idempotency")
    d = sql.Identifier(schema, "deferrals")
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " key text PRIMARY KEY,"
            " state text NOT NULL CHECK (state IN ('in_progress', 'completed')),"
            " owner text NOT NULL,"
            " expires double precision NOT NULL)"
        ).format(t),
        sql.SQL("CREATE INDEX IF NOT EXISTS idempotency_expires ON {} (expires)").format(t),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            " message_id text PRIMARY KEY,"
            " count integer NOT NULL,"
            " expires double precision NOT NULL)"
        ).format(d),
        sql.SQL("CREATE INDEX IF NOT EXISTS deferrals_expires ON {} (expires)").format(d),
    ]


def _missing_tables(conn: Connection, schema: str) -> list[str]:
    """The store's tables that are not in `schema`."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind IN ('r', 'p')",
        (schema, list(TABLES)),
    ).fetchall()
    present = {row[0] for row in rows}
    return [table for table in TABLES if table not in present]


def _create_tables(conn: Connection, schema: str) -> list[str]:
    """Create what is missing of the schema (autocommit `conn`); the tables it created.

    Looks first, so a role without CREATE on the database passes when everything is there
    (`CREATE SCHEMA IF NOT EXISTS` checks the privilege before the existence). Replicas
    starting together may race on the catalog (a unique violation despite IF NOT EXISTS):
    the loser looks again."""
    for attempt in range(3):
        missing = _missing_tables(conn, schema)
        if not missing:
            return []
        try:
            with conn.transaction():
                for statement in _ddl(schema):
                    conn.execute(statement)
            return [f"{schema}.{table}" for table in missing]
        except (errors.UniqueViolation, errors.DuplicateObject, errors.DuplicateTable):
            if attempt == 2:
                raise
    return []  # not reached


def migrate(url: str, schema: str = DEFAULT_SCHEMA, *, connect_timeout: float = 5.0) -> list[str]:
    """Create the store's schema and tables in the database at `url` (for `vod-events dedupe
    migrate`, run by a role that may create them). Idempotent; returns the tables it created
    ("schema.table"), [] when everything was there. Raises PostgresStoreError."""
    _check_schema_name(schema)
    target = _Target.parse(url)
    conninfo = target.conninfo(connect_timeout=max(2, round(connect_timeout)))
    try:
        with psycopg.connect(conninfo, autocommit=True, prepare_threshold=None) as conn:
            return _create_tables(conn, schema)
    except psycopg.OperationalError as exc:
        message = target.redact(f"{type(exc).__name__}: {exc}")
        raise StoreUnavailableError(f"{target.description}: {message}") from exc
    except psycopg.Error as exc:
        message = target.redact(f"{type(exc).__name__}: {exc}")
        raise PostgresStoreError(
            f"creating {schema}.{', '.join(TABLES)} in {target.description} failed: {message}"
        ) from exc


def _check_before_use(conn: Connection) -> None:
    """The pool's check of a connection it is about to lend: a round trip to the server only
    when the socket has something to read. An idle connection has nothing to read unless the
    server closed it or is about to (a restart, an idle timeout, a terminated backend): then
    the check fails, and the pool replaces the connection before anyone uses it. This keeps
    a round trip off every claim and completion."""
    if conn.closed or conn.broken:
        raise psycopg.OperationalError("the connection is closed")
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN | select.POLLPRI)
    if poller.poll(0):
        ConnectionPool.check_connection(conn)


# ---------------------------------------------------------------------------------- store


class PostgresStore:
    """Claims in PostgreSQL tables, shared by every replica; and transactional completion.

    Atomicity comes from single statements and row locks: a claim is one `INSERT ... ON
    CONFLICT DO UPDATE ... WHERE expired`; release, renew and the take-over of a dead owner's
    claim compare the owner token in their WHERE (compare-and-set), so a replica never acts
    on a claim that lapsed and was taken by another. No advisory locks (they belong to a
    server session, which a transaction-pooling PgBouncer does not keep for a client).

    `transaction(key)` runs the caller's statements and the key's completion in one
    transaction, so a handler's effects and its completion commit together or not at all.

    PgBouncer: session pooling and transaction pooling both work. The store keeps nothing in
    a server session: every operation is one autocommit statement or one explicit
    transaction (locks and all inside it), it never runs SET, LISTEN, temporary tables or
    advisory locks, and statements are never prepared (`prepare_threshold=None`: psycopg
    would otherwise prepare a statement run 5 times on a connection, and the next
    transaction may run on another server connection that lacks it). Statement pooling does
    not work for `transaction()` (it refuses multi-statement transactions). The statement
    timeout is sent as the `options` startup parameter (`-c statement_timeout=...`), which
    PgBouncer 1.20+ accepts once `statement_timeout` is in its `track_extra_parameters`;
    otherwise pass `statement_timeout=None` and set it on the role (`ALTER ROLE ... SET
    statement_timeout = '10s'`).

    Failures raise, never hang: `connect_timeout` bounds a connection attempt,
    `statement_timeout` a statement (also the caller's inside `transaction()`),
    `network_timeout` a connection whose peer vanished (TCP user timeout and keepalives), and
    `pool_timeout` the wait for a free connection (half a second while connecting is known
    to fail); connection errors raise StoreUnavailableError, saying why. Pooled connections
    are checked before use (without a round trip: see `_check_before_use`), so after a
    server restart calls succeed as soon as the server is back.

    claim_ttl / completed_ttl: as for the other stores. schema: where the tables live.
    create: create missing tables on first use (False: raise SchemaMissingError; run
        `migrate` first). min_size / max_size: the connection pool; give `max_size` at least
        the number of workers that run transactional handlers at once.
    cleanup_interval: seconds between background deletions of expired rows (None: none; call
        `cleanup()` yourself), each round `cleanup_max_batches` DELETEs of `cleanup_batch` rows.
    clock: None for the database server's clock (the default, one clock for every replica);
        a callable for tests that move time by hand.
    """

    def __init__(
        self,
        url: str,
        *,
        claim_ttl: float = DEFAULT_CLAIM_TTL,
        completed_ttl: float = DEFAULT_COMPLETED_TTL,
        schema: str = DEFAULT_SCHEMA,
        create: bool = True,
        min_size: int = 1,
        max_size: int = 10,
        pool_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        statement_timeout: float | None = 10.0,
        network_timeout: float = 30.0,
        cleanup_interval: float | None = CLEANUP_INTERVAL,
        cleanup_batch: int = CLEANUP_BATCH,
        cleanup_max_batches: int = CLEANUP_MAX_BATCHES,
        application_name: str = "vod-events",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.schema = _check_schema_name(schema)
        self.claim_ttl = claim_ttl
        self.completed_ttl = completed_ttl
        self.create = create
        self.cleanup_batch = cleanup_batch
        self.cleanup_max_batches = cleanup_max_batches
        self.clock = clock
        self._target = _Target.parse(url)
        self.where = self._target.description
        self._q = _Statements.for_schema(schema)
        self._held = HeldClaims()
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        self._log = structlog.get_logger("vod_events.postgres_store")
        options = (
            f"-c statement_timeout={round(statement_timeout * 1000)}"
            if statement_timeout is not None
            else None
        )
        conninfo = self._target.conninfo(
            connect_timeout=max(2, round(connect_timeout)),  # libpq: whole seconds, 2 at least
            options=options,
            application_name=application_name,
            tcp_user_timeout=round(network_timeout * 1000),
            keepalives=1,
            keepalives_idle=max(1, round(network_timeout / 3)),
            keepalives_interval=max(1, round(network_timeout / 9)),
            keepalives_count=3,
        )
        # The last connection attempt's error (redacted), None once one succeeds: while the
        # server is known to be down, calls wait `_DOWN_WAIT` for a connection, not
        # `pool_timeout`, and say why.
        self._connect_error: str | None = None
        self.pool_timeout = pool_timeout
        self._pool: ConnectionPool[_ReportingConnection] = ConnectionPool(
            conninfo,
            connection_class=_ReportingConnection,
            kwargs={"autocommit": True, "prepare_threshold": None, "report": self._reported},
            min_size=min_size,
            max_size=max(max_size, min_size, 1),
            timeout=pool_timeout,
            # The pool retries a failed connection with a growing delay (1, 2, 4 ... s) and
            # one attempt at a time: after a long outage the next try could be minutes away.
            # Giving up early lets the next caller start a fresh attempt at once.
            reconnect_timeout=max(pool_timeout, connect_timeout),
            check=_check_before_use,
            name="vod-events-dedupe",
            open=False,
        )
        self._pool.open(wait=False)  # connects in the background: a down server raises later
        self._closed = threading.Event()
        self._cleaner: threading.Thread | None = None
        if cleanup_interval is not None:
            self._cleaner = threading.Thread(
                target=self._clean_periodically,
                args=(cleanup_interval,),
                name="vod-events-dedupe-cleanup",
                daemon=True,
            )
            self._cleaner.start()

    def __repr__(self) -> str:
        return f"PostgresStore({self.where!r}, schema={self.schema!r})"

    # ------------------------------------------------------------------- plumbing

    def _now(self) -> float | None:
        return None if self.clock is None else self.clock()

    def _reported(self, exc: BaseException | None) -> None:
        self._connect_error = None if exc is None else self._redacted(exc)

    def _redacted(self, exc: BaseException) -> str:
        return self._target.redact(f"{type(exc).__name__}: {exc}".strip())

    def _wait(self, timeout: float | None = None) -> float:
        """How long to wait for a pooled connection: briefly while connecting fails."""
        wait = self.pool_timeout if timeout is None else timeout
        return min(wait, _DOWN_WAIT) if self._connect_error is not None else wait

    @contextlib.contextmanager
    def _pooled(self, timeout: float | None = None) -> Iterator[Connection]:
        with self._pool.connection(self._wait(timeout)) as conn:
            yield conn

    def _error(self, what: str, exc: BaseException) -> PostgresStoreError:
        message = self._redacted(exc)
        if isinstance(exc, errors.UndefinedTable | errors.InvalidSchemaName):
            self._schema_ready = False  # dropped under us: look (and maybe create) again
            return SchemaMissingError(
                f"{what}: the table {self.schema}.idempotency is missing in {self.where}"
                f" ({message}); run `vod-events dedupe migrate` or allow creating it"
            )
        if isinstance(exc, PoolTimeout) and (why := self._connect_error) is not None:
            return StoreUnavailableError(
                f"{what}: PostgreSQL at {self.where} is unreachable: {why}"
            )
        if isinstance(exc, PoolTimeout):
            return StoreUnavailableError(
                f"{what}: no connection to PostgreSQL at {self.where} ({message}): the server"
                " is down or unreachable, or every pooled connection is busy (max_size)"
            )
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
            return StoreUnavailableError(f"{what}: PostgreSQL at {self.where}: {message}")
        return PostgresStoreError(f"{what}: PostgreSQL at {self.where}: {message}")

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """psycopg's errors, as this module's (the password redacted)."""
        try:
            yield
        except PostgresStoreError:
            raise
        except psycopg.Error as exc:
            raise self._error(what, exc) from exc

    @contextlib.contextmanager
    def _connection(self, what: str) -> Iterator[Connection]:
        """A pooled autocommit connection, the schema checked first."""
        self._ensure_schema()
        with self._errors(what), self._pooled() as conn:
            yield conn

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            with self._errors("checking the schema"), self._pooled() as conn:
                if self.create:
                    _create_tables(conn, self.schema)
                elif missing := _missing_tables(conn, self.schema):
                    raise SchemaMissingError(
                        f"the table {self.schema}.{missing[0]} is missing in {self.where}"
                        " and this store may not create it (create=False): run"
                        " `vod-events dedupe migrate` (vod_events.postgres_store.migrate)"
                    )
            self._schema_ready = True

    # ------------------------------------------------------------- the protocol

    def claim(self, key: str) -> Claim:
        for _ in range(3):  # the row can lapse or go between the INSERT and the look: again
            held = self._held.token(key)
            token = self._held.tokens.new()
            args = {"key": key, "owner": token, "ttl": self.claim_ttl, "now": self._now()}
            with self._connection("claiming a key") as conn:
                if conn.execute(self._q.claim, args).fetchone() is not None:
                    self._held.add(key, token)
                    return Claim(ClaimState.CLAIMED)
                row = conn.execute(self._q.look, args).fetchone()
            if row is None or row[2] <= 0:
                continue
            state, owner, left = row
            if state == _COMPLETED:
                return Claim(ClaimState.COMPLETED)
            if self._held.tokens.owner_is_dead(owner):
                with self._connection("taking over a dead owner's claim") as conn:
                    if conn.execute(self._q.take_over, {**args, "old": owner}).rowcount == 1:
                        self._held.add(key, token)
                        return Claim(ClaimState.CLAIMED)
                continue
            return self._held.in_progress(key, owner, float(left), 0.0, held)
        return Claim(ClaimState.IN_PROGRESS, 1.0)

    def claim_many(self, keys: Sequence[str]) -> dict[str, Claim]:
        tokens = {key: self._held.tokens.new() for key in dict.fromkeys(keys)}
        if not tokens:
            return {}
        args = {
            "keys": list(tokens),
            "owners": list(tokens.values()),
            "ttl": self.claim_ttl,
            "now": self._now(),
        }
        with self._connection("claiming keys") as conn:
            taken = {row[0] for row in conn.execute(self._q.claim_many, args)}
            others = [key for key in tokens if key not in taken]
            done = (
                {row[0] for row in conn.execute(self._q.completed_of, {**args, "keys": others})}
                if others
                else set()
            )
        for key in taken:
            self._held.add(key, tokens[key])
        claims = dict.fromkeys(taken, Claim(ClaimState.CLAIMED))
        return claims | dict.fromkeys(done, Claim(ClaimState.COMPLETED))

    def complete(self, key: str) -> None:
        self.complete_many((key,))

    def complete_many(self, keys: Sequence[str]) -> None:
        def write() -> None:
            with self._connection("recording completions") as conn:
                now, ttl = self._now(), self.completed_ttl
                rows = [{"key": key, "ttl": ttl, "now": now} for key in keys]
                if len(rows) == 1:  # autocommit: one round trip, no BEGIN and COMMIT
                    conn.execute(self._q.complete, rows[0])
                    return
                with conn.transaction(), conn.cursor() as cursor:  # one commit for all
                    cursor.executemany(self._q.complete, rows)

        try:  # almost always succeeds at once: no retry machinery for that
            write()
        except Exception:
            complete_retried(self._held, keys, write)  # retried, the keys renewed meanwhile
        else:
            for key in keys:
                self._held.pop(key)

    def release(self, key: str) -> None:
        token = self._held.pop(key)
        if token is None:
            return  # not ours: nothing to release
        with self._connection("releasing a claim") as conn:
            conn.execute(self._q.release, {"key": key, "owner": token})

    def renew(self) -> None:
        held = self._held.items()
        if not held:
            return
        args = {
            "keys": [key for key, _ in held],
            "owners": [token for _, token in held],
            "ttl": self.claim_ttl,
            "now": self._now(),
        }
        with self._connection("renewing claims") as conn:
            conn.execute(self._q.renew, args)

    def wait_for(self, key: str, timeout: float) -> bool:
        return self._held.wait_for(key, timeout)

    def count_deferral(self, message_id: str) -> int:
        args = {"id": message_id, "ttl": self.completed_ttl, "now": self._now()}
        with self._connection("counting a deferral") as conn:
            row = conn.execute(self._q.count_deferral, args).fetchone()
        assert row is not None  # INSERT ... RETURNING always returns the row
        return int(row[0])

    def deferrals(self, message_id: str) -> int:
        with self._connection("reading deferrals") as conn:
            row = conn.execute(self._q.deferrals, {"id": message_id, "now": self._now()}).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        self._closed.set()
        if self._cleaner is not None and self._cleaner is not threading.current_thread():
            self._cleaner.join(10)
        self._pool.close(timeout=5)

    # ------------------------------------------------- transactional completion

    @contextlib.contextmanager
    def transaction(self, key: str) -> Iterator[Connection]:
        """A connection inside a transaction that also records `key` as completed.

        Claim `key` first. The block runs its statements on the connection; on normal exit
        the key is marked completed in the same transaction if this store still owns the
        claim (one compare-and-set UPDATE, which locks the row), and the transaction
        commits: the block's effects and the completion are durable together, or (an
        exception, a crash, a SIGKILL at any instant) neither is. An exception in the block
        rolls everything back and propagates; so does ClaimLostError when the claim is no
        longer this store's (the claim lapsed and another replica took it). Either way,
        `release(key)` the claim afterwards, as after any failed handler. Do not commit
        inside the block (psycopg refuses); `conn.transaction()` inside it makes a savepoint.

        The row is locked only at the end, so the claim's renewals are never kept waiting
        by a long block. Database errors of the store's own statements raise
        PostgresStoreError; an error on COMMIT leaves the outcome unknown to this process
        (the key is then completed or still claimed, never half done). A `psycopg.Rollback`
        raised in the block rolls everything back too, and raises PostgresStoreError.
        """
        token = dict(self._held.items()).get(key)
        if token is None:
            raise ClaimLostError(f"transaction({key!r}): this store holds no claim on it")
        self._ensure_schema()
        with self._errors("opening a transaction"):
            conn = self._pool.getconn(self._wait())
        in_block = completed = False
        try:
            with conn.transaction():
                in_block = True
                yield conn
                in_block = False
                self._complete_locked(conn, key, token)
                completed = True
        except psycopg.Error as exc:
            if in_block:
                raise  # the caller's own statements: their errors, untouched
            raise self._error("committing a transaction", exc) from exc
        finally:
            self._pool.putconn(conn)
        if not completed:
            # The block raised psycopg.Rollback, which the transaction swallows after rolling
            # back: returning normally would pass for a completion that never happened.
            raise PostgresStoreError(
                f"transaction({key!r}): the block raised psycopg.Rollback: everything was"
                " rolled back and the key was not completed"
            )
        self._held.pop(key)

    def _complete_locked(self, conn: Connection, key: str, token: str) -> None:
        """Inside the transaction: complete the key if the claim is still ours (one
        statement, which locks the row until COMMIT); else raise ClaimLostError."""
        args = {"key": key, "owner": token, "ttl": self.completed_ttl, "now": self._now()}
        if conn.execute(self._q.complete_owned, args).rowcount == 1:
            return
        row = conn.execute(self._q.state, {"key": key}).fetchone()  # only to say why
        if row is None:
            now = "its claim lapsed and its row is gone"
        elif row[0] == _COMPLETED:
            now = "it was completed by another holder"
        else:
            now = "another store holds it now"
        raise ClaimLostError(
            f"transaction({key!r}): the claim is no longer this store's ({now}); rolled back"
        )

    # ------------------------------------------------------------- health, cleanup

    def ping(self, timeout: float | None = None) -> None:
        """Raise PostgresStoreError unless the database answers and the tables are there
        (for /readyz and `doctor`). Creates missing tables when the store may (`create`).
        `timeout`: the longest wait for a connection (default: the pool's)."""
        with self._errors("checking the database"), self._pooled(timeout) as conn:
            missing = _missing_tables(conn, self.schema)
        if missing:
            with self._schema_lock:
                self._schema_ready = False
            self._ensure_schema()

    def may_create_tables(self, timeout: float | None = None) -> bool:
        """Whether this store's role may create what is missing of its schema: CREATE on the
        schema if it exists, else on the database (for `doctor`). Raises PostgresStoreError."""
        with self._errors("checking privileges"), self._pooled(timeout) as conn:
            row = conn.execute(
                "SELECT CASE WHEN n.oid IS NULL"
                " THEN has_database_privilege(current_database(), 'CREATE')"
                " ELSE has_schema_privilege(n.oid, 'CREATE') END"
                " FROM (SELECT 1) AS one LEFT JOIN pg_namespace n ON n.nspname = %s",
                (self.schema,),
            ).fetchone()
        return bool(row and row[0])

    def missing_privileges(self, timeout: float | None = None) -> list[str]:
        """What this store's role lacks to use its tables (for `doctor`): "USAGE on schema
        s", "SELECT, INSERT on s.t", ...; [] when it has everything (or the tables are
        missing: see `ping`). Raises PostgresStoreError."""
        with self._errors("checking privileges"), self._pooled(timeout) as conn:
            rows = conn.execute(
                "SELECT NULL, 'USAGE', 0::bigint FROM pg_namespace WHERE nspname = %(schema)s"
                " AND NOT has_schema_privilege(oid, 'USAGE')"
                " UNION ALL"
                " SELECT c.relname, p.privilege, p.i FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " CROSS JOIN unnest(%(privileges)s::text[]) WITH ORDINALITY AS p (privilege, i)"
                " WHERE n.nspname = %(schema)s AND c.relname = ANY(%(tables)s)"
                " AND NOT has_table_privilege(c.oid, p.privilege)"
                " ORDER BY 1 NULLS FIRST, 3",
                {"schema": self.schema, "tables": list(TABLES), "privileges": TABLE_PRIVILEGES},
            ).fetchall()
        lacking: dict[str, list[str]] = {}
        for table, privilege, _ in rows:
            what = f"schema {self.schema}" if table is None else f"{self.schema}.{table}"
            lacking.setdefault(what, []).append(str(privilege))
        return [f"{', '.join(privileges)} on {what}" for what, privileges in lacking.items()]

    def cleanup(self, *, batch: int | None = None, max_batches: int | None = None) -> int:
        """Delete expired rows (completions, lapsed claims, deferral counts): at most `batch`
        rows per statement, each its own short transaction, at most `max_batches` statements
        per table. The number of rows deleted."""
        batch = batch or self.cleanup_batch
        max_batches = max_batches or self.cleanup_max_batches
        deleted = 0
        for statement in self._q.cleanup:
            for _ in range(max_batches):
                with self._connection("deleting expired rows") as conn:
                    count = conn.execute(statement, {"limit": batch, "now": self._now()}).rowcount
                deleted += count
                if count < batch:
                    break
        return deleted

    def _clean_periodically(self, interval: float) -> None:
        while not self._closed.wait(interval):
            started = time.monotonic()
            try:
                deleted = self.cleanup()
            except PostgresStoreError as exc:
                self._log.warning("deleting expired idempotency rows failed", error=str(exc))
                continue
            if deleted:
                self._log.debug(
                    "deleted expired idempotency rows",
                    rows=deleted,
                    seconds=round(time.monotonic() - started, 3),
                )
