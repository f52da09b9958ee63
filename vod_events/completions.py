"""Handlers' completions, recorded in the idempotency store in batches by one thread.

A worker that ran a handler hands its key to `CompletionWriter.submit` (no I/O) and goes on
with its next message; the consumer's writer thread (`run`) records whatever has piled up
in one `store.complete_many` call. Each store call gives up the GIL (the sqlite3 module
releases it around every statement), and every give-up with other threads waiting is a
hand-over: written by each worker, a completion cost two thread switches per message;
written here, one batch costs about as much as one message did.

Invariants:
- A key stays held by the store until its completion is written (or has failed for good):
  the renewer keeps renewing it, a duplicate on another thread of this process waits for
  it (`store.wait_for`), and one in another process is deferred. So writing behind never
  lets a duplicate run a handler that has already run.
- The writer wakes as soon as a key arrives while it is idle, and takes every key that came
  while it was writing. From a handler's return to its recorded completion is the window in
  which a SIGKILL means the handler runs again on redelivery, so it is kept short: on a
  saturated CPU the writer thread may wait long for its turn at the GIL, and once the
  oldest key has waited `max_wait` the next `submit` writes the batch itself; SQLiteStore
  writes batches on a connection of their own, not queued behind the claims. Measured
  against each worker writing its own: the README's "Performance".
- A message may be deleted before its completion is written. That is no risk: a deleted
  message is not redelivered, and the key stays held until the write.
- `submit` blocks while `max_pending` keys wait (a slow or failing store slows the workers
  down, as it did when they wrote themselves, instead of piling keys up without bound).
- After `close`, `run` writes what is pending and returns; a key submitted after that is
  written at once on the submitting thread (a handler abandoned at shutdown).
A write that fails after the store's own retries is logged and counted
(`completion_failures`); its keys are left to their lease: at least once, never lost.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import structlog

from vod_events.dedupe import IdempotencyStore, StoreError
from vod_events.stats import Stats

log = structlog.get_logger("vod_events.completions")

MAX_PENDING = 1024  # keys waiting to be written before `submit` blocks
# Longest a key waits for the writer thread before a worker submitting another writes the
# batch itself: on a saturated CPU the thread waits long for the GIL (see the module doc).
MAX_WAIT_SECONDS = 0.005
MAX_WRITE = 256  # keys per store call: a batch of one transaction stays short


def _unwatched(what: str) -> AbstractContextManager[None]:
    return contextlib.nullcontext()


class CompletionWriter:
    """Write-behind of `store.complete`: `submit` from any thread, `run` on one thread.

    watch: wraps each store call (the consumer's `CallWatch.watch`, for liveness).
    max_pending: keys waiting before `submit` blocks.
    max_wait: longest the oldest waiting key waits for the writer thread before the next
        `submit` writes the batch itself.
    """

    def __init__(
        self,
        store: IdempotencyStore,
        stats: Stats,
        *,
        watch: Callable[[str], AbstractContextManager[None]] = _unwatched,
        max_pending: int = MAX_PENDING,
        max_wait: float = MAX_WAIT_SECONDS,
    ) -> None:
        self.store = store
        self.stats = stats
        self.watch = watch
        self.max_pending = max_pending
        self.max_wait = max_wait
        self._pending: list[str] = []
        self._oldest = 0.0  # time.monotonic() since which the first pending key waits
        self._writing = 0  # keys taken and not yet written
        self._closed = False
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # the writer waits here
        self._room = threading.Condition(self._lock)  # submitters wait here when full
        self._written = threading.Condition(self._lock)  # `flush` waits here

    def submit(self, key: str) -> None:
        """Record `key` as completed, soon; returns without waiting for the write, unless
        the oldest waiting key has waited `max_wait`: then this caller writes the batch."""
        with self._lock:
            while len(self._pending) >= self.max_pending and not self._closed:
                self._room.wait()
            if self._closed:
                keys = self._take([key])  # nobody else will
            else:
                now = time.monotonic()
                if not self._pending:
                    self._oldest = now
                    self._arrived.notify()  # idle: wake it; busy: it takes this one next
                self._pending.append(key)
                if now - self._oldest < self.max_wait:
                    return
                keys = self._take(self._pending)  # the writer is late: its GIL turn is not
        self._write(keys)

    def run(self) -> None:
        """The writer thread: write batches until `close`, then what is left; return."""
        while True:
            with self._lock:
                while not self._pending and not self._closed:
                    self._arrived.wait()
                if not self._pending:
                    return  # closed and drained
                keys = self._take(self._pending)
            self._write(keys)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every key submitted so far has been written (or has failed); False if
        `timeout` ran out first."""
        with self._lock:
            return self._written.wait_for(
                lambda: not self._pending and not self._writing, timeout=timeout
            )

    def close(self) -> None:
        """No more batching: `run` writes what is pending, then returns."""
        with self._lock:
            self._closed = True
            self._arrived.notify_all()
            self._room.notify_all()

    def pending(self) -> int:
        """Keys submitted and not written yet."""
        with self._lock:
            return len(self._pending) + self._writing

    def _take(self, keys: list[str]) -> list[str]:
        """Take up to MAX_WRITE of `keys` (the pending list, or a late key) to write (hold
        `_lock`)."""
        taken = keys[:MAX_WRITE]
        del keys[:MAX_WRITE]
        self._oldest = time.monotonic()  # what is left waits from now: one writer at a time
        self._writing += len(taken)
        self._room.notify_all()
        return taken

    def _write(self, keys: list[str]) -> None:
        """Write taken keys, then count them written."""
        try:
            with self.watch("record completions"):
                self.store.complete_many(keys)
        except StoreError as exc:
            self.stats.incr("completion_failures", len(keys))
            log.error(
                "recording handler completions failed; their keys are left to their lease",
                keys=len(keys),
                error=str(exc),
            )
        finally:
            with self._lock:
                self._writing -= len(keys)
                self._written.notify_all()
