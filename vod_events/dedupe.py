"""Idempotency: a completed handler never runs again for a redelivered event.

VOD events carry no id and MNS delivers at least once, so duplicates are certain. Each
(event dedupe key, handler) pair moves through a small state machine held in a store:

    (absent) --claim--> IN PROGRESS --complete--> COMPLETED   (kept `completed_ttl`, > retention)
                             |   \\--release--> (absent)      (the handler failed: try again later)
                             \\--lease lapses--> (absent)     (the claimer crashed)

A claim is a short lease (`claim_ttl`, 15 s by default) that its process renews every
`renew_interval` (a third of it) while the handler runs, so a long handler keeps it and a
crashed one frees it within `claim_ttl` - at once, when the owner was a process on this host
that no longer exists (`owners`). `claim` tells a caller that meets a claim in progress
whether this very store holds it (`Claim.mine`: another thread of this process is running the
handler, so wait for it with `wait_for`) or someone else does (come back after `retry_after`).

`complete` is retried, and the key stays held (renewed) until the write succeeds: one
transient error must not free the key of a handler that has already run. `complete_many`
records a batch in one write (the consumer's `CompletionWriter`, completions.py), and
`claim_many` claims a received batch in one (`Processor.claim_ahead`).

Deliveries that found the key in progress are counted per message (`count_deferral`), so the
consumer can leave them out of `max_deliveries`.

Backends: `MemoryStore` (tests, one process), `SQLiteStore` (default; one host, several
threads and processes), `RedisStore` (a fleet of replicas; atomic claims), `NullStore` (off).
"""

from __future__ import annotations

import enum
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import tenacity

from vod_events.owners import OwnerTokens

DEFAULT_CLAIM_TTL = 15.0
DEFAULT_COMPLETED_TTL = 7 * 24 * 3600.0  # longer than MNS's maximum retention (7 days)
RENEWALS_PER_TTL = 3  # a claim is renewed this often within its lease: two renewals may fail
# `complete` retries its write this often before giving the key up to its lease.
COMPLETE_ATTEMPTS = 5
SQLITE_CACHE_KIB = 512  # SQLiteStore's page cache, per process


class ClaimState(enum.Enum):
    CLAIMED = "claimed"  # this caller now owns the key: run the handler
    COMPLETED = "completed"  # done before: skip the handler
    IN_PROGRESS = "in_progress"  # someone else is running it: come back later


@dataclass(frozen=True, slots=True)
class Claim:
    """The answer to `claim`.

    retry_after: for IN_PROGRESS, seconds until that claim's lease runs out unless renewed.
    mine: for IN_PROGRESS, the claim is this store's own: another thread of this process is
        running the handler right now (`wait_for` it instead of handing the message back).
    """

    state: ClaimState
    retry_after: float = 0.0
    mine: bool = False


class StoreError(Exception):
    """The store could not record a completion; the key was left to its lease."""


class IdempotencyStore(Protocol):
    claim_ttl: float

    def claim(self, key: str) -> Claim: ...

    def claim_many(self, keys: Sequence[str]) -> dict[str, Claim]:
        """Claim several keys at once, in as few calls as the backend allows: CLAIMED for
        the keys it took, COMPLETED for those done before. A key it cannot settle so
        cheaply - in progress, or held by a dead owner, or any key on a backend without
        batch claims - is left out: `claim` it on its own."""
        ...

    def complete(self, key: str) -> None:
        """Record the key as completed (retried); raises StoreError when that failed."""
        ...

    def complete_many(self, keys: Sequence[str]) -> None:
        """`complete` for several keys at once, in as few writes as the backend allows;
        raises StoreError when that failed (the keys not recorded are left to their lease)."""
        ...

    def release(self, key: str) -> None: ...

    def renew(self) -> None:
        """Extend every claim this store still holds by `claim_ttl`."""
        ...

    def wait_for(self, key: str, timeout: float) -> bool:
        """Block until this store no longer holds `key` (completed or released), at most
        `timeout` s; True if it was let go."""
        ...

    def count_deferral(self, message_id: str) -> int:
        """Count one more delivery of `message_id` that found its key in progress; the total."""
        ...

    def deferrals(self, message_id: str) -> int:
        """How many deliveries of `message_id` were deferred so far."""
        ...

    def close(self) -> None: ...


def renew_interval(store: IdempotencyStore) -> float:
    """How often the holder of claims must renew them."""
    return store.claim_ttl / RENEWALS_PER_TTL


def _retried(write: Callable[[], object]) -> None:
    """Run an idempotent write, retrying transient failures with a short backoff.

    Tried once directly first: building tenacity's machinery costs ~100 us per call, and
    almost every write succeeds at once. A failure is then retried from the start (the
    write is idempotent), up to COMPLETE_ATTEMPTS calls in all."""
    try:
        write()
        return
    except Exception:  # noqa: S110 - retried below, where the last failure is raised
        pass
    for attempt in tenacity.Retrying(
        stop=tenacity.stop_after_attempt(COMPLETE_ATTEMPTS - 1),
        wait=tenacity.wait_exponential(multiplier=0.1, max=2.0),
        reraise=True,
    ):
        with attempt:
            write()


class HeldClaims:
    """The keys this store has claimed and not yet completed or released, with owner tokens.

    `wait_for` lets a thread that met one of these keys wait until its holder lets it go.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._held: dict[str, str] = {}
        self.tokens = OwnerTokens()

    def add(self, key: str, token: str) -> None:
        with self._cond:
            self._held[key] = token

    def pop(self, key: str) -> str | None:
        with self._cond:
            token = self._held.pop(key, None)
            self._cond.notify_all()
            return token

    def items(self) -> list[tuple[str, str]]:
        with self._cond:
            return list(self._held.items())

    def wait_for(self, key: str, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: key not in self._held, timeout)

    def token(self, key: str) -> str | None:
        """The owner token this store holds `key` with, if it does."""
        with self._cond:
            return self._held.get(key)

    def in_progress(
        self, key: str, owner: str, expires: float, now: float, held_before: str | None = None
    ) -> Claim:
        """What a claim in progress held by `owner` means to this store: `mine` only while
        this store still holds it (a claim it let go after a failed completion is not).

        `held_before`: `token(key)` taken before the row was read. A claim this store held
        then is `mine` even if it was let go since: its completion (written by another
        thread) landed between the read and this check, and the caller, waiting for its
        own, looks again and finds it completed - rather than deferring a duplicate as if
        another process held the key."""
        with self._cond:
            mine = owner in (held_before, self._held.get(key))
        return Claim(ClaimState.IN_PROGRESS, max(expires - now, 0.0), mine=mine)


class NullStore:
    """Idempotency off: every delivery runs its handlers."""

    claim_ttl = DEFAULT_CLAIM_TTL

    def claim(self, key: str) -> Claim:
        return Claim(ClaimState.CLAIMED)

    def claim_many(self, keys: Sequence[str]) -> dict[str, Claim]:
        return dict.fromkeys(keys, Claim(ClaimState.CLAIMED))

    def complete(self, key: str) -> None:
        pass

    def complete_many(self, keys: Sequence[str]) -> None:
        pass

    def release(self, key: str) -> None:
        pass

    def renew(self) -> None:
        pass

    def wait_for(self, key: str, timeout: float) -> bool:
        return True

    def count_deferral(self, message_id: str) -> int:
        return 0  # never defers: nothing is ever in progress

    def deferrals(self, message_id: str) -> int:
        return 0

    def close(self) -> None:
        pass


class MemoryStore:
    """In-process store; `clock` is injectable so tests can move time. Expired rows are
    dropped every `PURGE_EVERY` claims, so memory stays bounded by what is live."""

    PURGE_EVERY = 1000

    def __init__(
        self,
        claim_ttl: float = DEFAULT_CLAIM_TTL,
        completed_ttl: float = DEFAULT_COMPLETED_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.claim_ttl = claim_ttl
        self.completed_ttl = completed_ttl
        self.clock = clock
        self._lock = threading.Lock()
        self._rows: dict[str, tuple[ClaimState, str, float]] = {}  # key -> (state, owner, expiry)
        self._deferrals: dict[str, tuple[int, float]] = {}  # message id -> (count, expiry)
        self._held = HeldClaims()
        self._claims = 0

    def claim(self, key: str) -> Claim:
        with self._lock:
            now = self.clock()
            self._claims += 1
            if self._claims % self.PURGE_EVERY == 0:
                self._purge(now)
            row = self._rows.get(key)
            if row is not None and row[2] > now:
                if row[0] is ClaimState.COMPLETED:
                    return Claim(ClaimState.COMPLETED)
                return self._held.in_progress(key, row[1], row[2], now)
            token = self._held.tokens.new()
            self._held.add(key, token)
            self._rows[key] = (ClaimState.IN_PROGRESS, token, now + self.claim_ttl)
            return Claim(ClaimState.CLAIMED)

    def claim_many(self, keys: Sequence[str]) -> dict[str, Claim]:
        claims = {key: self.claim(key) for key in dict.fromkeys(keys)}
        return {key: c for key, c in claims.items() if c.state is not ClaimState.IN_PROGRESS}

    def _purge(self, now: float) -> None:
        self._rows = {k: row for k, row in self._rows.items() if row[2] > now}
        self._deferrals = {k: d for k, d in self._deferrals.items() if d[1] > now}

    def complete(self, key: str) -> None:
        self.complete_many((key,))

    def complete_many(self, keys: Sequence[str]) -> None:
        with self._lock:
            expiry = self.clock() + self.completed_ttl
            for key in keys:
                self._rows[key] = (ClaimState.COMPLETED, "", expiry)
        for key in keys:
            self._held.pop(key)

    def release(self, key: str) -> None:
        token = self._held.pop(key)
        with self._lock:
            row = self._rows.get(key)
            if row is not None and row[0] is ClaimState.IN_PROGRESS and row[1] == token:
                del self._rows[key]

    def renew(self) -> None:
        with self._lock:
            expiry = self.clock() + self.claim_ttl
            for key, token in self._held.items():
                row = self._rows.get(key)
                if row is not None and row[1] == token:
                    self._rows[key] = (row[0], token, expiry)

    def wait_for(self, key: str, timeout: float) -> bool:
        return self._held.wait_for(key, timeout)

    def count_deferral(self, message_id: str) -> int:
        with self._lock:
            count = self.deferrals(message_id) + 1
            self._deferrals[message_id] = (count, self.clock() + self.completed_ttl)
            return count

    def deferrals(self, message_id: str) -> int:
        count, expiry = self._deferrals.get(message_id, (0, 0.0))
        return count if expiry > self.clock() else 0

    def close(self) -> None:
        pass


def sqlite_has_json(db: sqlite3.Connection) -> bool:
    """Whether this SQLite has its JSON functions (built in since 3.38; an option before),
    which SQLiteStore's batch statements need."""
    try:
        db.execute("SELECT value FROM json_each('[]')")
    except sqlite3.OperationalError:
        return False
    return True


class SQLiteStore:
    """A SQLite file shared by the threads and processes of one host.

    One connection per process, used by one thread at a time, and one more for batches of
    completions; WAL mode so other processes' readers never block. Every state change is one
    statement (its own transaction), so two processes cannot both claim a key.
    """

    _SCHEMA = (
        """
        CREATE TABLE IF NOT EXISTS idempotency (
            key TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            owner TEXT NOT NULL,
            expires REAL NOT NULL
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE IF NOT EXISTS deferrals (
            message_id TEXT PRIMARY KEY,
            count INTEGER NOT NULL,
            expires REAL NOT NULL
        ) WITHOUT ROWID
        """,
    )
    PURGE_EVERY = 1000  # claims between deletions of expired rows

    def __init__(
        self,
        path: str | Path,
        claim_ttl: float = DEFAULT_CLAIM_TTL,
        completed_ttl: float = DEFAULT_COMPLETED_TTL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.clock = clock
        self.claim_ttl = claim_ttl
        self.completed_ttl = completed_ttl
        self._held = HeldClaims()
        self._claims = 0
        # This process's threads take turns at one connection. With a connection per worker
        # thread, writers that found SQLite's write lock taken slept 1, 2, 5, 10... ms in its
        # busy handler, and under load those sleeps became convoys; each connection also
        # kept its own page cache (RSS growing with the workers and the table). A waiter
        # here wakes as soon as the lock is free. Other processes still meet SQLite's own
        # lock and the busy timeout.
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        # Batches of completions (`complete_many`, the consumer's completion writer) go on a
        # connection of their own, so they never queue behind the claims for `_lock`: under
        # a saturated CPU a holder of `_lock` waits long for the GIL after its statement,
        # and the completions' wait is the window in which a SIGKILL means a handler runs
        # again. The two meet only at SQLite's write lock, held by neither while it waits.
        self._batch_lock = threading.Lock()
        self._batch_db: sqlite3.Connection | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            for statement in self._SCHEMA:
                self._connection().execute(statement)
            self._batches = sqlite_has_json(self._connection())

    def _connection(self) -> sqlite3.Connection:
        """The connection, opened on first use (again after close()); hold `_lock`."""
        if self._db is None:
            self._db = self._open()
        return self._db

    def _batch_connection(self) -> sqlite3.Connection:
        """The connection for batches of completions; hold `_batch_lock`."""
        if self._batch_db is None:
            self._batch_db = self._open()
        return self._batch_db

    def _open(self) -> sqlite3.Connection:
        # Used by one thread at a time (under its lock), but not always the same one.
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL
        # Claims land at random keys all over the table, so SQLite's default page cache
        # (2 MB) fills over hours and is rarely hit: 512 KiB keeps the B-tree's upper
        # levels and cost no CPU per message in the soak, 0.8 MB less RSS after warm-up.
        db.execute(f"PRAGMA cache_size={-SQLITE_CACHE_KIB}")
        return db

    # Take the key if it is absent or its row has expired, in ONE statement: atomic on its
    # own, and SQLite's write lock is held only inside that one call. (A BEGIN IMMEDIATE ..
    # SELECT .. INSERT .. COMMIT sequence held the lock across four calls, each giving up
    # the GIL; with dozens of busy threads the lock holder waited for the GIL while the
    # other writers slept in SQLite's busy handler.)
    _CLAIM = """
        INSERT INTO idempotency VALUES (?1, ?2, ?3, ?4)
        ON CONFLICT (key) DO UPDATE
            SET state = excluded.state, owner = excluded.owner, expires = excluded.expires
            WHERE idempotency.expires <= ?5
    """
    # Take over a claim whose owner is known to be dead, only if it still has that owner.
    _TAKE_OVER = """
        UPDATE idempotency SET owner = ?1, expires = ?2
        WHERE key = ?3 AND owner = ?4 AND state = 'in_progress'
    """

    def claim(self, key: str) -> Claim:
        for _ in range(3):  # another process can free the row between claim and look: again
            held = self._held.token(key)
            now = self.clock()
            token = self._held.tokens.new()
            with self._lock:
                db = self._connection()
                params = (key, ClaimState.IN_PROGRESS.value, token, now + self.claim_ttl, now)
                if db.execute(self._CLAIM, params).rowcount == 1:
                    self._held.add(key, token)
                    self._count_claims(1, now, db)
                    return Claim(ClaimState.CLAIMED)
                row = db.execute(
                    "SELECT state, owner, expires FROM idempotency WHERE key = ?", (key,)
                ).fetchone()
            if row is None or row[2] <= now:
                continue
            state, owner, expires = row
            if state == ClaimState.COMPLETED.value:
                return Claim(ClaimState.COMPLETED)
            if self._held.tokens.owner_is_dead(owner):
                with self._lock:
                    takeover = (token, now + self.claim_ttl, key, owner)
                    if self._connection().execute(self._TAKE_OVER, takeover).rowcount == 1:
                        self._held.add(key, token)
                        return Claim(ClaimState.CLAIMED)
                continue
            return self._held.in_progress(key, owner, expires, now, held)
        return Claim(ClaimState.IN_PROGRESS, 1.0)

    _COMPLETE = "INSERT OR REPLACE INTO idempotency VALUES (?, 'completed', '', ?)"

    # The batch statements below take their keys as one JSON array (`json_each`), so each
    # has ONE text whatever the batch size. Built with a placeholder per row, every batch
    # size was a statement of its own: the sqlite3 module caches 128 prepared statements
    # per connection, and the cache filling with the rare sizes, up to 256 rows each, was
    # about a third of the RSS growth of the 200,000-message soak after its warm-up
    # (+4.5 MB -> +3.1 to +3.4 MB).
    # `_CLAIM` for a batch: ?1 is a JSON array of [key, owner] pairs.
    _CLAIM_MANY = """
        INSERT INTO idempotency
        SELECT json_extract(value, '$[0]'), 'in_progress', json_extract(value, '$[1]'), ?2
        FROM json_each(?1) WHERE true
        ON CONFLICT (key) DO UPDATE
            SET state = excluded.state, owner = excluded.owner, expires = excluded.expires
            WHERE idempotency.expires <= ?3
    """
    _LOOK_MANY = (
        "SELECT key, state, owner FROM idempotency WHERE key IN (SELECT value FROM json_each(?))"
    )
    _COMPLETE_MANY = (
        "INSERT OR REPLACE INTO idempotency SELECT value, 'completed', '', ? FROM json_each(?)"
    )

    def claim_many(self, keys: Sequence[str]) -> dict[str, Claim]:
        unique = list(dict.fromkeys(keys))
        if not unique or not self._batches:  # without JSON: each key claimed on its own
            return {}
        now = self.clock()
        tokens = {key: self._held.tokens.new() for key in unique}
        pairs = json.dumps([[key, token] for key, token in tokens.items()])
        with self._lock:
            db = self._connection()
            claimed = db.execute(self._CLAIM_MANY, (pairs, now + self.claim_ttl, now)).rowcount
            if claimed == len(unique):  # all new: the usual
                found = [(key, ClaimState.IN_PROGRESS.value, tokens[key]) for key in unique]
            else:  # which did it take? One row per key (each a GIL hand-over): rarer
                found = db.execute(self._LOOK_MANY, (json.dumps(unique),)).fetchall()
            claims: dict[str, Claim] = {}
            for key, state, owner in found:
                if owner == tokens[key]:
                    self._held.add(key, owner)
                    claims[key] = Claim(ClaimState.CLAIMED)
                elif state == ClaimState.COMPLETED.value:
                    claims[key] = Claim(ClaimState.COMPLETED)
            self._count_claims(len(claims), now, db)
        return claims

    def _count_claims(self, count: int, now: float, db: sqlite3.Connection) -> None:
        """Count claims taken; every PURGE_EVERY, delete expired rows (hold `_lock`)."""
        before, self._claims = self._claims, self._claims + count
        if before // self.PURGE_EVERY != self._claims // self.PURGE_EVERY:
            db.execute("DELETE FROM idempotency WHERE expires < ?", (now,))
            db.execute("DELETE FROM deferrals WHERE expires < ?", (now,))

    def complete(self, key: str) -> None:
        def write() -> None:
            with self._lock:
                expiry = self.clock() + self.completed_ttl
                self._connection().execute(self._COMPLETE, (key, expiry))

        complete_retried(self._held, (key,), write)

    def complete_many(self, keys: Sequence[str]) -> None:
        # One statement of many rows: atomic on its own, and one GIL hand-over (the sqlite3
        # module gives up the GIL around each statement; executemany: around each row).
        batch = json.dumps(list(keys))

        def write() -> None:
            expiry = self.clock() + self.completed_ttl
            with self._batch_lock:
                self._batch_connection().execute(self._COMPLETE_MANY, (expiry, batch))

        if not self._batches:
            for key in keys:
                self.complete(key)
        elif keys:
            complete_retried(self._held, keys, write)

    def release(self, key: str) -> None:
        token = self._held.pop(key)
        with self._lock:
            self._connection().execute(
                "DELETE FROM idempotency WHERE key = ? AND owner = ? AND state = ?",
                (key, token, ClaimState.IN_PROGRESS.value),
            )

    def renew(self) -> None:
        held = self._held.items()
        if not held:
            return
        expiry = self.clock() + self.claim_ttl
        with self._lock:
            db = self._connection()
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany(
                    "UPDATE idempotency SET expires = ? WHERE key = ? AND owner = ?",
                    [(expiry, key, token) for key, token in held],
                )
            finally:
                db.execute("COMMIT")

    def wait_for(self, key: str, timeout: float) -> bool:
        return self._held.wait_for(key, timeout)

    def count_deferral(self, message_id: str) -> int:
        now = self.clock()
        with self._lock:
            row = (
                self._connection()
                .execute(
                    "INSERT INTO deferrals VALUES (?1, 1, ?2) ON CONFLICT (message_id) DO UPDATE"
                    " SET count = CASE WHEN deferrals.expires > ?3 THEN deferrals.count + 1"
                    " ELSE 1 END, expires = excluded.expires RETURNING count",
                    (message_id, now + self.completed_ttl, now),
                )
                .fetchone()
            )
        return int(row[0])

    def deferrals(self, message_id: str) -> int:
        with self._lock:
            row = (
                self._connection()
                .execute(
                    "SELECT count FROM deferrals WHERE message_id = ? AND expires > ?",
                    (message_id, self.clock()),
                )
                .fetchone()
            )
        return int(row[0]) if row else 0

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
        with self._batch_lock:
            if self._batch_db is not None:
                self._batch_db.close()
                self._batch_db = None


def complete_retried(held: HeldClaims, keys: Sequence[str], write: Callable[[], object]) -> None:
    """Record completions: retried, and renewed meanwhile (the keys stay held until the
    write succeeds). After the last failure the keys are let go to their lease, so a
    redelivery can run the handler again once it lapses - at least once, never lost."""
    try:
        _retried(write)
    except Exception as exc:
        for key in keys:
            held.pop(key)
        raise StoreError(f"recording the completion failed: {exc!r}") from exc
    for key in keys:
        held.pop(key)


class RedisStore:
    """Keys in Redis, shared by every replica consuming the queue.

    A claim is one `SET key value NX PX ttl`: atomic, so two replicas never both claim.
    Release, renew and the take-over of a dead owner's claim compare the owner token inside
    a Lua script, so a replica never acts on a claim that expired and was taken by someone
    else. Every key starts with `prefix`.
    """

    _RELEASE = (
        "if redis.call('GET', KEYS[1]) == ARGV[1] then "
        "return redis.call('DEL', KEYS[1]) end return 0"
    )
    _RENEW = (
        "if redis.call('GET', KEYS[1]) == ARGV[1] then "
        "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
    )
    _TAKE_OVER = (
        "if redis.call('GET', KEYS[1]) == ARGV[1] then "
        "return redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end return 0"
    )
    DONE = "done"

    def __init__(
        self,
        url: str,
        claim_ttl: float = DEFAULT_CLAIM_TTL,
        completed_ttl: float = DEFAULT_COMPLETED_TTL,
        prefix: str = "vod-events:dedupe:",
    ) -> None:
        import redis  # imported here: only fleets that choose Redis pay for it

        self.client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5)
        self.claim_ttl = claim_ttl
        self.claim_ttl_ms = int(claim_ttl * 1000)
        self.completed_ttl_ms = int(completed_ttl * 1000)
        self.prefix = prefix
        self._held = HeldClaims()
        self._release = self.client.register_script(self._RELEASE)
        self._renew = self.client.register_script(self._RENEW)
        self._take_over = self.client.register_script(self._TAKE_OVER)

    def claim(self, key: str) -> Claim:
        name = self.prefix + key
        for _ in range(3):  # the key can expire between the SET and the GET: look again
            held = self._held.token(key)
            token = self._held.tokens.new()
            if self.client.set(name, token, nx=True, px=self.claim_ttl_ms):
                self._held.add(key, token)
                return Claim(ClaimState.CLAIMED)
            with self.client.pipeline() as pipe:
                pipe.get(name)
                pipe.pttl(name)
                value, ttl_ms = pipe.execute()
            if value is None:
                continue
            owner = value.decode()
            if owner == self.DONE:
                return Claim(ClaimState.COMPLETED)
            if self._held.tokens.owner_is_dead(owner):
                if self._take_over(keys=[name], args=[owner, token, self.claim_ttl_ms]):
                    self._held.add(key, token)
                    return Claim(ClaimState.CLAIMED)
                continue
            return self._held.in_progress(key, owner, max(int(ttl_ms), 0) / 1000, 0.0, held)
        return Claim(ClaimState.IN_PROGRESS, 1.0)

    def claim_many(self, keys: Sequence[str]) -> dict[str, Claim]:
        # One pipeline of SET NX (each atomic on its own), then one MGET for the keys it
        # did not take, to tell the completed ones from those in progress.
        tokens = {key: self._held.tokens.new() for key in dict.fromkeys(keys)}
        if not tokens:
            return {}
        with self.client.pipeline(transaction=False) as pipe:
            for key, token in tokens.items():
                pipe.set(self.prefix + key, token, nx=True, px=self.claim_ttl_ms)
            taken = pipe.execute()
        claims: dict[str, Claim] = {}
        for (key, token), took in zip(tokens.items(), taken, strict=True):
            if took:
                self._held.add(key, token)
                claims[key] = Claim(ClaimState.CLAIMED)
        others = [key for key in tokens if key not in claims]
        if others:
            values = self.client.mget([self.prefix + key for key in others])
            for key, value in zip(others, values, strict=True):
                if value == self.DONE.encode():
                    claims[key] = Claim(ClaimState.COMPLETED)
        return claims

    def complete(self, key: str) -> None:
        complete_retried(
            self._held,
            (key,),
            lambda: self.client.set(self.prefix + key, self.DONE, px=self.completed_ttl_ms),
        )

    def complete_many(self, keys: Sequence[str]) -> None:
        def write() -> None:
            pipe = self.client.pipeline(transaction=False)  # one round trip; each SET atomic
            for key in keys:
                pipe.set(self.prefix + key, self.DONE, px=self.completed_ttl_ms)
            pipe.execute()

        complete_retried(self._held, keys, write)

    def release(self, key: str) -> None:
        token = self._held.pop(key)
        if token is not None:
            self._release(keys=[self.prefix + key], args=[token])

    def renew(self) -> None:
        held = self._held.items()
        if not held:
            return
        with self.client.pipeline(transaction=False) as pipe:
            for key, token in held:
                self._renew(keys=[self.prefix + key], args=[token, self.claim_ttl_ms], client=pipe)
            pipe.execute()

    def wait_for(self, key: str, timeout: float) -> bool:
        return self._held.wait_for(key, timeout)

    def count_deferral(self, message_id: str) -> int:
        name = f"{self.prefix}deferrals:{message_id}"
        with self.client.pipeline() as pipe:
            pipe.incr(name)
            pipe.pexpire(name, self.completed_ttl_ms)
            count, _ = pipe.execute()
        return int(count)

    def deferrals(self, message_id: str) -> int:
        value = self.client.get(f"{self.prefix}deferrals:{message_id}")
        return int(value) if value is not None else 0

    def close(self) -> None:
        self.client.close()
