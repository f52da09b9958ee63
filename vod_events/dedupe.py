"""Idempotency: a completed handler never runs again for a redelivered event.

VOD events carry no id and MNS delivers at least once, so duplicates are certain. Each
(event dedupe key, handler) pair moves through a small state machine held in a store:

    (absent) --claim--> IN PROGRESS --complete--> COMPLETED   (kept `completed_ttl`, > retention)
                             |   \\--release--> (absent)      (the handler failed: try again later)
                             \\--expires--> (absent)          (the claimer crashed; `claim_ttl`)

A claim held by this process is renewed by the consumer's heartbeat (`renew`), so a long
handler keeps it while a crashed one frees it within `claim_ttl`.

Backends: `MemoryStore` (tests, one process), `SQLiteStore` (default; one host, several
threads and processes), `RedisStore` (a fleet of replicas; atomic claims), `NullStore` (off).
"""

from __future__ import annotations

import enum
import itertools
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

DEFAULT_CLAIM_TTL = 120.0
DEFAULT_COMPLETED_TTL = 7 * 24 * 3600.0  # longer than MNS's maximum retention (7 days)


class ClaimState(enum.Enum):
    CLAIMED = "claimed"  # this caller now owns the key: run the handler
    COMPLETED = "completed"  # done before: skip the handler
    IN_PROGRESS = "in_progress"  # someone else is running it: come back later


@dataclass(frozen=True, slots=True)
class Claim:
    state: ClaimState
    retry_after: float = 0.0  # for IN_PROGRESS: seconds until that claim expires


class IdempotencyStore(Protocol):
    def claim(self, key: str) -> Claim: ...

    def complete(self, key: str) -> None: ...

    def release(self, key: str) -> None: ...

    def renew(self) -> None:
        """Extend every claim this process still holds by `claim_ttl`."""
        ...

    def close(self) -> None: ...


class _HeldClaims:
    """The keys this process has claimed and not yet completed or released, with owner tokens."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, str] = {}
        # Owner tokens only need to be unique: a random prefix per store and a counter. A
        # uuid4() per claim read os.urandom, a system call that gives up the GIL - under
        # load, a thread switch per claim.
        self._prefix = uuid.uuid4().hex
        self._count = itertools.count()

    def new_token(self) -> str:
        return f"{self._prefix}-{next(self._count)}"  # next() on a count is atomic

    def add(self, key: str, token: str | None = None) -> str:
        token = token or self.new_token()
        with self._lock:
            self._held[key] = token
        return token

    def pop(self, key: str) -> str | None:
        with self._lock:
            return self._held.pop(key, None)

    def items(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._held.items())


class NullStore:
    """Idempotency off: every delivery runs its handlers."""

    def claim(self, key: str) -> Claim:
        return Claim(ClaimState.CLAIMED)

    def complete(self, key: str) -> None:
        pass

    def release(self, key: str) -> None:
        pass

    def renew(self) -> None:
        pass

    def close(self) -> None:
        pass


class MemoryStore:
    """In-process store; `clock` is injectable so tests can move time."""

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
        self._held = _HeldClaims()

    def claim(self, key: str) -> Claim:
        with self._lock:
            now = self.clock()
            row = self._rows.get(key)
            if row is not None and row[2] > now:
                if row[0] is ClaimState.COMPLETED:
                    return Claim(ClaimState.COMPLETED)
                return Claim(ClaimState.IN_PROGRESS, row[2] - now)
            self._rows[key] = (ClaimState.IN_PROGRESS, self._held.add(key), now + self.claim_ttl)
            return Claim(ClaimState.CLAIMED)

    def complete(self, key: str) -> None:
        self._held.pop(key)
        with self._lock:
            self._rows[key] = (ClaimState.COMPLETED, "", self.clock() + self.completed_ttl)

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

    def close(self) -> None:
        pass


class SQLiteStore:
    """A SQLite file shared by the threads and processes of one host.

    One connection per process, used by one thread at a time; WAL mode so other processes'
    readers never block. Every state change is one statement (its own transaction), so two
    processes cannot both claim a key.
    """

    _SCHEMA = """
        CREATE TABLE IF NOT EXISTS idempotency (
            key TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            owner TEXT NOT NULL,
            expires REAL NOT NULL
        ) WITHOUT ROWID
    """
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
        self._held = _HeldClaims()
        self._claims = 0
        # This process's threads take turns at one connection. With a connection per worker
        # thread, writers that found SQLite's write lock taken slept 1, 2, 5, 10... ms in its
        # busy handler, and under load those sleeps became convoys; each connection also
        # kept its own page cache (RSS growing with the workers and the table). A waiter
        # here wakes as soon as the lock is free. Other processes still meet SQLite's own
        # lock and the busy timeout.
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._connection().execute(self._SCHEMA)

    def _connection(self) -> sqlite3.Connection:
        """The connection, opened on first use (again after close()); hold `_lock`."""
        if self._db is None:
            # Used by one thread at a time (under _lock), but not always the same one.
            db = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes in WAL
            self._db = db
        return self._db

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

    def claim(self, key: str) -> Claim:
        for _ in range(3):  # another process can free the row between claim and look: again
            now = self.clock()
            token = self._held.new_token()
            with self._lock:
                db = self._connection()
                params = (key, ClaimState.IN_PROGRESS.value, token, now + self.claim_ttl, now)
                if db.execute(self._CLAIM, params).rowcount == 1:
                    self._held.add(key, token)
                    self._claims += 1
                    if self._claims % self.PURGE_EVERY == 0:
                        db.execute("DELETE FROM idempotency WHERE expires < ?", (now,))
                    return Claim(ClaimState.CLAIMED)
                row = db.execute(
                    "SELECT state, expires FROM idempotency WHERE key = ?", (key,)
                ).fetchone()
            if row is not None and row[1] > now:
                if row[0] == ClaimState.COMPLETED.value:
                    return Claim(ClaimState.COMPLETED)
                return Claim(ClaimState.IN_PROGRESS, row[1] - now)
        return Claim(ClaimState.IN_PROGRESS, 1.0)

    def complete(self, key: str) -> None:
        self._held.pop(key)
        with self._lock:
            self._connection().execute(
                "INSERT OR REPLACE INTO idempotency VALUES (?, ?, '', ?)",
                (key, ClaimState.COMPLETED.value, self.clock() + self.completed_ttl),
            )

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
            db.executemany(
                "UPDATE idempotency SET expires = ? WHERE key = ? AND owner = ?",
                [(expiry, key, token) for key, token in held],
            )
            db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class RedisStore:
    """Keys in Redis, shared by every replica consuming the queue.

    A claim is one `SET key value NX PX ttl`: atomic, so two replicas never both claim.
    Release and renew compare the owner token inside a Lua script, so a replica never
    releases or extends a claim that expired and was taken by someone else.
    """

    _RELEASE = (
        "if redis.call('GET', KEYS[1]) == ARGV[1] then "
        "return redis.call('DEL', KEYS[1]) end return 0"
    )
    _RENEW = (
        "if redis.call('GET', KEYS[1]) == ARGV[1] then "
        "return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0"
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
        self.claim_ttl_ms = int(claim_ttl * 1000)
        self.completed_ttl_ms = int(completed_ttl * 1000)
        self.prefix = prefix
        self._held = _HeldClaims()
        self._release = self.client.register_script(self._RELEASE)
        self._renew = self.client.register_script(self._RENEW)

    def claim(self, key: str) -> Claim:
        name = self.prefix + key
        for _ in range(3):  # the key can expire between the SET and the GET: look again
            token = uuid.uuid4().hex
            if self.client.set(name, token, nx=True, px=self.claim_ttl_ms):
                self._held.add(key, token)
                return Claim(ClaimState.CLAIMED)
            with self.client.pipeline() as pipe:
                pipe.get(name)
                pipe.pttl(name)
                value, ttl_ms = pipe.execute()
            if value == self.DONE.encode():
                return Claim(ClaimState.COMPLETED)
            if value is not None:
                return Claim(ClaimState.IN_PROGRESS, max(int(ttl_ms), 0) / 1000)
        return Claim(ClaimState.IN_PROGRESS, 1.0)

    def complete(self, key: str) -> None:
        self._held.pop(key)
        self.client.set(self.prefix + key, self.DONE, px=self.completed_ttl_ms)

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

    def close(self) -> None:
        self.client.close()
