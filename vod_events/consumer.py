"""The consumer: poll, start, run, finish — every thread of the daemon, in one file.

    pollers ──receive──▶ work queue ──▶ workers ──Processor──▶ outcome
       ▲                                   │ delete                │ hand back
       └── free slots ◀────────────────────┤                       ▼
                                           ▼               change_visibility
                                      delete queue ──▶ deleters (BatchDelete ≤ 16, ≤ 50 ms)
    heartbeat: extends the visibility of every in-flight message before it lapses

Threads and what they own:
- Pollers (`pollers`) long-poll with BatchReceiveMessage for min(16, free slots) messages,
  so at most `workers + prefetch` messages are in flight, and poll again as soon as slots
  free up (a quarter of the capacity, at most 16, or any 50 ms after the first) — never
  waiting for a whole batch (consumer lesson 1).
- Workers (`workers`) run the `Processor` on one message at a time.
- Deleters (`deleters`) batch successful messages into BatchDeleteMessage calls.
- The heartbeat extends visibility for running AND waiting messages (lesson 2).

Every in-flight message has one `InFlight` record holding its latest receipt handle, and
every call that uses or replaces that handle (extend, delete, hand back) is made under the
record's lock, so an extension and a deletion never race (lesson 3).

Each thread that talks to the queue has its own transport: the SDK connection is not
thread-safe.

Shutdown (lesson 4): stop polling at once (interrupting the long poll), hand unstarted
messages back with a short visibility, let running handlers finish within
`shutdown_timeout`, flush pending deletes. A thread that dies unexpectedly stops the whole
consumer with a non-zero exit code (lesson 10).
"""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from vod_events.backoff import ExponentialBackoff
from vod_events.processing import Outcome, Processor
from vod_events.stats import Stats
from vod_events.transports import (
    FatalTransportError,
    MessageGone,
    QueueInfo,
    ReceivedMessage,
    Transport,
    TransportError,
    TransportFactory,
)

log = structlog.get_logger("vod_events.consumer")

MAX_BATCH = 16  # MNS's limit for batch receive and batch delete
# Longest a poller waits for a fuller batch of free slots once one is free (see `Slots`).
POLL_PATIENCE_SECONDS = 0.05

# Exit codes of `Consumer.run`.
EXIT_OK = 0
EXIT_FATAL = 1  # the queue refused us: credentials, missing queue, access denied
EXIT_CRASH = 70  # one of our own threads died (EX_SOFTWARE)


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """How the consumer runs.

    A field named like a key of the `[consumer]` config section is that key: it means what
    the key's doc in `vod_events.config.schema.ConsumerSection` says and has its default,
    except that "the queue's visibility timeout" is None here where the config says 0.
    The fields that are not config keys:

    delete_flush_seconds: longest a successful message waits for its batch to fill.
    release_visibility: seconds before a received-but-unstarted message returns at shutdown.
    """

    pollers: int = 2
    workers: int = 16
    prefetch: int = 16
    wait_seconds: int = 20
    shutdown_timeout: float = 30.0
    deleters: int = 2
    delete_flush_seconds: float = 0.05
    release_visibility: int = 1
    visibility_timeout: int | None = None


@dataclass(slots=True, eq=False)
class InFlight:
    """One received message until it is deleted or handed back: the owner of its handle."""

    message: ReceivedMessage
    handle: str
    deadline: float  # time.monotonic() at which the current visibility lapses
    lock: threading.Lock = field(default_factory=threading.Lock)


class Slots:
    """Counts free in-flight slots; pollers take up to 16 at a time, finishing frees one.

    When the workers are the bottleneck, slots free up one at a time. A poller taking each
    as it frees would send one receive per message: a full round trip and request for one
    message, and a wake-up of every poller per finished message. So a poller waits for
    `batch` free slots, or `patience` seconds once at least one is free: it still polls as
    slots free up, never waiting for whole batches to finish (consumer lesson 1).
    """

    def __init__(self, total: int, batch: int = 1, patience: float = 0.0) -> None:
        self.free = total
        self.batch = max(1, min(batch, total))
        self.patience = patience
        self._cond = threading.Condition()

    def take_up_to(self, wanted: int, stopping: threading.Event) -> int:
        enough = min(wanted, self.batch)
        with self._cond:
            give_up_at: float | None = None
            while self.free < enough and not stopping.is_set():
                if self.free == 0:
                    self._cond.wait(timeout=0.5)
                    continue
                now = time.monotonic()
                if give_up_at is None:
                    give_up_at = now + self.patience
                elif now >= give_up_at:
                    break
                self._cond.wait(timeout=give_up_at - now)
            taken = min(wanted, self.free)
            self.free -= taken
            return taken

    def give_back(self, count: int = 1) -> None:
        if count:
            with self._cond:
                before = self.free
                self.free += count
                # Wake the pollers only when it changes what they do: the first free slot
                # (their patience starts) or a full batch.
                if before == 0 or before < self.batch <= self.free:
                    self._cond.notify_all()

    def wake_all(self) -> None:
        with self._cond:
            self._cond.notify_all()


class DeleteQueue:
    """Successful messages waiting for a BatchDeleteMessage; bounded (`put` blocks when full).

    `take` returns a batch once 16 are waiting or the oldest has waited `flush_seconds`, and
    a deleter is woken for exactly that: by the first message (to start its clock) and by
    the 16th, not by every message - each wake-up is a thread switch and a GIL hand-over.
    After `close`, deleters take what is left, then get None.
    """

    def __init__(self, capacity: int, flush_seconds: float) -> None:
        self.capacity = capacity
        self.flush_seconds = flush_seconds
        self._items: collections.deque[tuple[float, InFlight]] = collections.deque()
        self._closed = False
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # deleters wait here
        self._room = threading.Condition(self._lock)  # workers wait here when it is full

    def put(self, entry: InFlight) -> None:
        with self._lock:
            while len(self._items) >= self.capacity:
                self._room.wait()
            self._items.append((time.monotonic(), entry))
            if len(self._items) in (1, MAX_BATCH):
                self._ready.notify()

    def take(self) -> list[InFlight] | None:
        with self._lock:
            while True:
                if self._items:
                    due = self._items[0][0] + self.flush_seconds - time.monotonic()
                    if len(self._items) >= MAX_BATCH or due <= 0 or self._closed:
                        count = min(MAX_BATCH, len(self._items))
                        batch = [self._items.popleft()[1] for _ in range(count)]
                        self._room.notify(count)
                        if self._items:  # the rest needs a deleter watching its clock
                            self._ready.notify()
                        return batch
                    self._ready.wait(timeout=due)
                elif self._closed:
                    return None
                else:
                    self._ready.wait()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._ready.notify_all()


class Consumer:
    """Consumes one queue with `processor` until stopped. See the module docstring."""

    def __init__(
        self,
        connect: TransportFactory,
        queue_name: str,
        processor: Processor,
        settings: ConsumerSettings | None = None,
        *,
        stats: Stats | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> None:
        self.connect = connect
        self.queue_name = queue_name
        self.processor = processor
        self.settings = settings or ConsumerSettings()
        self.stats = stats or processor.stats
        self.on_ready = on_ready  # called once, after the first successful poll
        self.stopping = processor.stopping  # set: stop polling, wind down
        self.queue_info: QueueInfo | None = None
        self.last_poll = time.monotonic()  # liveness: when a poller last completed a receive
        self.fatal_error: str | None = None
        self.crashed: list[str] = []
        self.stop_requested = False

        self._wake = threading.Event()  # stop requested, fatal error or crash
        self._finished = threading.Event()  # workers are done: heartbeat and deleters may go
        self._ready_once = threading.Lock()
        self._inflight: dict[int, InFlight] = {}
        self._inflight_lock = threading.Lock()
        self._work: queue.SimpleQueue[InFlight | None] = queue.SimpleQueue()
        s = self.settings
        self._deletes = DeleteQueue(MAX_BATCH * 4 * s.deleters, s.delete_flush_seconds)
        capacity = s.workers + s.prefetch
        self._slots = Slots(
            capacity, batch=min(MAX_BATCH, capacity // 4), patience=POLL_PATIENCE_SECONDS
        )
        self._local = threading.local()
        self._transports: list[Transport] = []
        self._transports_lock = threading.Lock()
        self._poller_transports: list[Transport] = []
        self.threads: list[threading.Thread] = []

    # ---------------------------------------------------------------- lifecycle

    def run(self) -> int:
        """Start, block until stopped (`stop()`, a fatal error or a crash), drain, return an
        exit code: 0 after a clean stop, 1 for a fatal queue error, 70 if a thread died."""
        code = self.start()
        if code != EXIT_OK:
            return code
        while not self._wake.wait(timeout=0.5):
            pass
        return self.shutdown()

    def start(self) -> int:
        """Check the queue, then start every thread. Returns non-zero if the queue refuses us."""
        try:
            self.queue_info = self._transport().queue_info()
        except FatalTransportError as exc:
            self.fatal_error = str(exc)
            log.error("cannot consume the queue", queue=self.queue_name, error=str(exc))
            return EXIT_FATAL
        except TransportError as exc:
            # Unreachable now, but that is transient: the pollers will keep trying.
            log.warning("queue attributes unavailable; starting anyway", error=str(exc))
        s = self.settings
        self._spawn("heartbeat", self._heartbeat_loop)
        for i in range(s.deleters):
            self._spawn(f"deleter-{i}", self._deleter_loop)
        for i in range(s.workers):
            self._spawn(f"worker-{i}", self._worker_loop)
        for i in range(s.pollers):
            self._spawn(f"poller-{i}", self._poller_loop)
        log.info(
            "consumer started",
            queue=self.queue_name,
            pollers=s.pollers,
            workers=s.workers,
            visibility_timeout=self._visibility_timeout(),
        )
        return EXIT_OK

    def stop(self) -> None:
        """Ask for a graceful stop; `run` then drains and returns. Safe from any thread."""
        self.stop_requested = True
        self._wake.set()

    def shutdown(self) -> int:
        """Drain in the order of consumer lesson 4 and return the exit code."""
        s = self.settings
        self.stopping.set()
        log.info("stopping: no more polling", in_flight=len(self._inflight))
        self._slots.wake_all()
        with self._transports_lock:
            for transport in self._poller_transports:
                transport.interrupt()  # do not sit out a 30 s long poll
        self._join(self._threads("poller"), timeout=10.0)

        released = 0
        while True:  # hand back what no worker has started yet
            try:
                entry = self._work.get_nowait()
            except queue.Empty:
                break
            if entry is not None:
                self._release(entry)
                released += 1
        for _ in range(s.workers):
            self._work.put(None)
        if released:
            log.info("handed back unstarted messages", count=released)

        workers = self._threads("worker")
        self._join(workers, timeout=s.shutdown_timeout)
        abandoned = sum(1 for t in workers if t.is_alive())
        if abandoned:
            log.warning(
                "shutdown_timeout reached; abandoning running handlers, "
                "their messages will be redelivered",
                running=abandoned,
            )
        self._deletes.close()  # deleters send what is left, then stop
        self._join(self._threads("deleter"), timeout=10.0)
        self._finished.set()
        self._join(self._threads("heartbeat"), timeout=5.0)
        with self._transports_lock:
            for transport in self._transports:
                transport.close()
        self.processor.store.close()

        if self.crashed:
            log.error("consumer stopped because a thread died", threads=self.crashed)
            return EXIT_CRASH
        if self.fatal_error:
            log.error("consumer stopped on a fatal queue error", error=self.fatal_error)
            return EXIT_FATAL
        log.info("consumer stopped", **self.stats.snapshot().counters)
        return EXIT_OK

    @property
    def active(self) -> int:
        """Messages received and not yet finished by a worker (bounded by workers + prefetch)."""
        return self.settings.workers + self.settings.prefetch - self._slots.free

    def alive(self) -> bool:
        """Liveness: every thread running and no crash."""
        return not self.crashed and all(t.is_alive() for t in self.threads)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                target()
            except BaseException as exc:  # a bug in our own code: stop, never hang
                self.crashed.append(name)
                log.critical("thread died", thread=name, error=repr(exc), exc_info=exc)
                self._wake.set()

        thread = threading.Thread(target=guarded, name=f"vod-events-{name}", daemon=True)
        self.threads.append(thread)
        thread.start()

    def _threads(self, kind: str) -> list[threading.Thread]:
        return [t for t in self.threads if t.name.startswith(f"vod-events-{kind}")]

    @staticmethod
    def _join(threads: list[threading.Thread], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def _transport(self) -> Transport:
        """This thread's own connection (the SDK's is not thread-safe)."""
        transport: Transport | None = getattr(self._local, "transport", None)
        if transport is None:
            transport = self._local.transport = self.connect(self.queue_name)
            with self._transports_lock:
                self._transports.append(transport)
        return transport

    def _reconnect(self) -> Transport:
        old: Transport | None = getattr(self._local, "transport", None)
        if old is not None:
            old.close()
            with self._transports_lock:
                self._transports.remove(old)
                if old in self._poller_transports:
                    self._poller_transports.remove(old)
            self._local.transport = None
        return self._transport()

    def _visibility_timeout(self) -> int:
        if self.settings.visibility_timeout is not None:
            return self.settings.visibility_timeout
        return self.queue_info.visibility_timeout if self.queue_info else 30

    # ---------------------------------------------------------------- in-flight table

    def _track(self, messages: list[ReceivedMessage], received_at: float) -> list[InFlight]:
        # The server started the visibility clock after we sent the request: counting from
        # the moment we sent it errs on the safe side.
        deadline = received_at + self._visibility_timeout()
        entries = [InFlight(m, m.receipt_handle, deadline) for m in messages]
        with self._inflight_lock:
            for entry in entries:
                self._inflight[id(entry)] = entry
            self.stats.set_in_flight(len(self._inflight))
        return entries

    def _untrack(self, entry: InFlight) -> None:
        with self._inflight_lock:
            self._inflight.pop(id(entry), None)
            self.stats.set_in_flight(len(self._inflight))

    # ---------------------------------------------------------------- poll

    def _poller_loop(self) -> None:
        s = self.settings
        errors = ExponentialBackoff(initial=0.5, maximum=30.0)
        empty = ExponentialBackoff(initial=0.2, maximum=5.0)
        error_streak = empty_streak = 0
        transport = self._transport()
        with self._transports_lock:
            self._poller_transports.append(transport)
        while not self.stopping.is_set():
            wanted = self._slots.take_up_to(MAX_BATCH, self.stopping)
            if self.stopping.is_set():
                self._slots.give_back(wanted)
                break
            started = time.monotonic()
            try:
                messages = transport.receive(wanted, s.wait_seconds)
            except FatalTransportError as exc:
                self._slots.give_back(wanted)
                self.fatal_error = str(exc)
                self._wake.set()
                return
            except TransportError as exc:
                self._slots.give_back(wanted)
                if self.stopping.is_set():
                    break
                error_streak += 1
                self.stats.incr("poll_errors")
                delay = errors.delay(error_streak)
                log.warning("receive failed; backing off", error=str(exc), retry_in_s=delay)
                self.stopping.wait(delay)
                transport = self._reconnect()
                with self._transports_lock:
                    self._poller_transports.append(transport)
                continue
            self.last_poll = time.monotonic()
            error_streak = 0
            self._notify_ready()
            self._slots.give_back(wanted - len(messages))
            if not messages:
                self.stats.incr("empty_polls")
                elapsed = self.last_poll - started
                # An answer well before the long poll could have ended means the server
                # refused to wait (MNS's long-poll limit): back off instead of spinning.
                if elapsed < min(1.0, s.wait_seconds / 2) or s.wait_seconds == 0:
                    empty_streak += 1
                    self.stopping.wait(empty.delay(empty_streak))
                else:
                    empty_streak = 0
                continue
            empty_streak = 0
            self.stats.incr("received", len(messages))
            for entry in self._track(messages, started):
                self._work.put(entry)

    def _notify_ready(self) -> None:
        if self.on_ready is not None and self._ready_once.acquire(blocking=False):
            self.on_ready()

    # ---------------------------------------------------------------- run

    def _worker_loop(self) -> None:
        while True:
            entry = self._work.get()
            if entry is None:
                return
            if self.stopping.is_set():
                self._release(entry)
                continue
            outcome = self.processor.process(entry.message)
            self._slots.give_back()
            self._finish(entry, outcome)

    def _finish(self, entry: InFlight, outcome: Outcome) -> None:
        if outcome.delete:
            self._deletes.put(entry)  # the deleter untracks it once deleted
            return
        self._change_visibility(entry, outcome.visibility, "hand back")
        self._untrack(entry)

    def _release(self, entry: InFlight) -> None:
        """Hand an unstarted message back quickly at shutdown."""
        self._change_visibility(entry, self.settings.release_visibility, "release")
        self.stats.incr("released")
        self._slots.give_back()
        self._untrack(entry)

    def _change_visibility(self, entry: InFlight, seconds: int, why: str) -> bool:
        with entry.lock:
            try:
                entry.handle, _ = self._transport().change_visibility(entry.handle, seconds)
            except MessageGone:
                return False  # its visibility lapsed: it is already back in the queue
            except TransportError as exc:
                # It returns when its current visibility lapses: later, but not lost.
                log.warning(f"{why} failed", message_id=entry.message.message_id, error=str(exc))
                return False
            entry.deadline = time.monotonic() + seconds
            return True

    # ---------------------------------------------------------------- finish

    def _deleter_loop(self) -> None:
        while (batch := self._deletes.take()) is not None:
            self._delete(batch)

    def _delete(self, batch: list[InFlight]) -> None:
        backoff = ExponentialBackoff(initial=0.2, maximum=5.0)
        for entry in batch:
            entry.lock.acquire()  # only the heartbeat competes, one record at a time
        try:
            by_handle = {entry.handle: entry for entry in batch}
            for attempt in range(1, 6):
                try:
                    failures = self._transport().delete(list(by_handle))
                    break
                except TransportError as exc:
                    if attempt == 5:
                        # They will be redelivered; the idempotency store skips them then.
                        log.error("delete failed; messages will be redelivered", error=str(exc))
                        self.stats.incr("delete_failures", len(batch))
                        return
                    log.warning("delete failed; retrying", error=str(exc), attempt=attempt)
                    time.sleep(backoff.delay(attempt))
                    self._reconnect()
            failed = {f.receipt_handle: f for f in failures}
            for handle, failure in failed.items():
                # After a retried call, "gone" may mean our first attempt did delete it.
                log.info(
                    "delete: handle no longer valid",
                    message_id=by_handle[handle].message.message_id if handle in by_handle else "",
                    code=failure.code,
                )
            self.stats.incr("deleted", len(batch) - len(failed))
            if failed:
                self.stats.incr("delete_failures", len(failed))
        finally:
            for entry in batch:
                entry.lock.release()
                self._untrack(entry)

    # ---------------------------------------------------------------- keep alive

    def _heartbeat_loop(self) -> None:
        vt = self._visibility_timeout()
        interval = min(max(vt / 4, 0.25), 10.0)
        while not self._finished.wait(timeout=interval):
            self._extend_due(vt)
            try:
                self.processor.store.renew()
            except Exception as exc:
                log.warning("renewing idempotency claims failed", error=repr(exc))

    def _extend_due(self, vt: int) -> None:
        now = time.monotonic()
        with self._inflight_lock:
            due = [e for e in self._inflight.values() if e.deadline - now < vt / 2]
        for entry in due:
            # A busy lock means a delete or hand-back is using the handle right now.
            if not entry.lock.acquire(blocking=False):
                continue
            try:
                if id(entry) not in self._inflight:
                    continue
                entry.handle, _ = self._transport().change_visibility(entry.handle, vt)
                entry.deadline = time.monotonic() + vt
                self.stats.incr("extended")
            except MessageGone:
                log.warning(
                    "visibility lapsed before it could be extended; it may be redelivered",
                    message_id=entry.message.message_id,
                )
                entry.deadline = float("inf")  # nothing left to extend
            except TransportError as exc:
                log.warning("visibility extension failed; will retry", error=str(exc))
            finally:
                entry.lock.release()
