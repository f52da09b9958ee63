"""The consumer: poll, start, run, finish — every thread of the daemon, in one file.

    pollers ──receive──▶ work queue ──▶ workers ──Processor──▶ outcome
       ▲                                   │ delete                │ hand back
       └── free slots ◀────────────────────┤                       ▼
                                           ▼               change_visibility
                                      delete queue ──▶ deleters (BatchDelete ≤ 16, ≤ 50 ms)
    heartbeat (extenders): extend each in-flight message's visibility before it lapses
    renewer: renew the idempotency claims every `renew_interval(store)`
    completions: record handlers' completions in the store, in batches behind the workers

Threads and what they own:
- Pollers long-poll with BatchReceiveMessage for min(16, free slots) messages, so at most
  `workers + prefetch` messages are in flight, and poll again as soon as slots free up (a
  quarter of the capacity, at most 16, or any 50 ms after the first) — never waiting for a
  whole batch (docs/design.md rule 1). Each batch is decoded and its idempotency keys
  claimed in one store call (`Processor.claim_ahead`) before the workers see it; the
  worker that takes a message owns its claims, and a message handed back unstarted has
  them released. `pollers = N` runs N of them, all polling;
  with `pollers = "auto"` (the default) a `PollerPolicy` (polling.py), told what each
  receive saw, decides how many of at most 16 poll now: more while full batches come back
  and the workers run dry, fewer when the workers are behind, the queue is dry, or MNS
  refuses long polls (its per-IP cap). A poller thread starts when the policy first wants
  it; one it wants no more waits in `_may_poll`.
- Workers (`workers`) run the `Processor` on one message at a time, and hand back the
  messages that are not to be deleted. A message that needs an async handler does not hold
  its worker: the handler's call runs on the processor's event-loop thread (`aio.py`), the
  worker takes the next message, and when the call ends the message comes back, ahead of
  new messages, to whichever worker is free, to go on from there (`Processor.resume`). Such
  messages hold an in-flight slot meanwhile: async handlers add `async_concurrency` slots.
- Deleters (`deleters`) batch successful messages into BatchDeleteMessage calls.
- Extenders (`extenders`, the heartbeat) extend the visibility of running AND waiting
  messages (rule 2), each when half of its current visibility is left. They share one
  schedule (a heap of the records' `due` times: taking the next costs log n, whatever is in
  flight), each on its own connection: a call that hangs until its timeout holds up one
  message, not the others (rule 14). There are 2, plus one per 128 slots (at most 16), so a
  whole capacity received at once is extended in seconds (2,048 at 20 ms: ~2.6 s).
- The renewer renews the idempotency store's claims on the store's own schedule: a lease is
  a few seconds, whatever the queue's visibility timeout (rule 13).
- The completion writer records handlers' completions in the store in batches, so that
  workers do not wait for a write each (completions.py: the key stays held until written).

Every in-flight message has one `InFlight` record holding its latest receipt handle, and
every call that uses or replaces that handle (extend, delete, hand back) is made under the
record's lock, so an extension and a deletion never race (rule 3). A thread that finds a
record's lock busy never waits for it: the extenders look at it again shortly, the deleters
put it back into the delete queue. Once deleted, handed back or given up, a record is marked
`finished` under its lock, and nobody uses its handle again.

Each thread that talks to the queue has its own transport: the SDK connection is not
thread-safe. Every call to the queue or the idempotency store goes through `CallWatch`, so
liveness (service/health.py) can tell a busy thread from one stuck in a call (rule 14).

Shutdown (rule 4): stop polling at once (interrupting the long poll), hand unstarted
messages back with a short visibility, let running handlers - sync and async - finish within
`shutdown_timeout` (async calls still running then are cancelled, and their messages handed
back), flush pending deletes. A thread that dies unexpectedly stops the whole
consumer with a non-zero exit code (rule 10), and so does a shutdown that had to abandon
running handlers.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import heapq
import itertools
import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import structlog

from vod_events.backoff import ExponentialBackoff
from vod_events.completions import CompletionWriter
from vod_events.dedupe import NullStore, renew_interval
from vod_events.polling import (
    AUTO,
    PollerPolicy,
    Receipt,
    auto_deleters,
    auto_extenders,
    auto_prefetch,
    poller_threads,
)
from vod_events.processing import Ahead, Outcome, Pending, Processor
from vod_events.stats import Stats
from vod_events.transports import (
    MAX_VISIBILITY_SECONDS,
    DeleteFailure,
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
RESUMED: Literal["resumed"] = "resumed"  # on the work queue: an ended async call is waiting
# At shutdown, how long async calls cancelled at shutdown_timeout get to hand their messages back.
CANCEL_GRACE_SECONDS = 2.0
# MNS's default VisibilityTimeout: what an extension buys while the queue's is unknown.
DEFAULT_VISIBILITY_SECONDS = 30
QUEUE_INFO_RETRY_SECONDS = 30.0  # how often a failed attribute read is tried again
HAND_BACK_ATTEMPTS = 3  # tries of a hand-back's change_visibility before leaving it
# A failed extension is tried again this soon (a new connection; the deadline is still ahead).
EXTEND_RETRY_SECONDS = 0.5
# A record whose handle another thread is using is looked at again this soon.
BUSY_RETRY_SECONDS = 0.05
DELETE_ATTEMPTS = 5
# A poller that waited longer than this for free slots found them short (the workers are
# the bottleneck, not the pollers).
SLOTS_SHORT_SECONDS = 0.005
# First deliveries remembered to bound how far the server's clock is ahead of ours.
CLOCK_SAMPLES = 32

DERIVED = -1  # a ConsumerSettings count derived from the others (the config's "auto")

# Exit codes of `Consumer.run`.
EXIT_OK = 0
EXIT_FATAL = 1  # the queue refused us: credentials, missing queue, access denied
EXIT_CRASH = 70  # one of our own threads died (EX_SOFTWARE)
# shutdown_timeout ran out with handlers still running: they were abandoned, and their
# messages come back when their visibility lapses (EX_TEMPFAIL: the work will be redone).
EXIT_ABANDONED = 75


@dataclass(frozen=True, slots=True)
class ConsumerSettings:
    """How the consumer runs.

    A field named like a key of the `[consumer]` config section is that key: it means what
    the key's doc in `vod_events.config.schema.ConsumerSection` says and has its default,
    except that "the queue's visibility timeout" is None here where the config says 0.
    The fields that are not config keys:

    delete_flush_seconds: longest a successful message waits for its batch to fill.
    release_visibility: seconds before a received-but-unstarted message returns at shutdown.
    extenders: threads extending visibility (each with its own connection); DERIVED: from
        the most messages the consumer holds (`extenders_for`), async handlers' included.

    `prefetch` and `deleters` left at DERIVED (the config's "auto") are derived when the
    settings are made (vod_events/polling.py): then they are plain numbers.
    """

    pollers: int | Literal["auto"] = AUTO
    workers: int = 16
    prefetch: int = DERIVED
    wait_seconds: int = 20
    shutdown_timeout: float = 30.0
    deleters: int = DERIVED
    delete_flush_seconds: float = 0.05
    release_visibility: int = 1
    visibility_timeout: int | None = None
    extenders: int = DERIVED

    def __post_init__(self) -> None:
        if self.prefetch == DERIVED:
            object.__setattr__(self, "prefetch", auto_prefetch(self.pollers))
        if self.deleters == DERIVED:
            object.__setattr__(self, "deleters", auto_deleters(self.pollers))

    def extenders_for(self, capacity: int) -> int:
        """Extender threads for a consumer holding up to `capacity` messages at once."""
        return auto_extenders(capacity) if self.extenders == DERIVED else max(1, self.extenders)


@dataclass(slots=True, eq=False)
class InFlight:
    """One received message until it is deleted or handed back: the owner of its handle.

    `handle`, `deadline`, `due` and `finished` change only with `lock` held. The extenders'
    schedule reads `due` without it; the decision is made again under the lock.
    """

    message: ReceivedMessage
    handle: str
    deadline: float  # time.monotonic() until which the visibility surely holds (or longer)
    due: float = 0.0  # time.monotonic() at which to extend it next
    finished: bool = False  # deleted, handed back or given up: its handle is not ours to use
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Decoded and claimed by its poller (`Processor.claim_ahead`); the worker that takes
    # the record takes this over.
    ahead: Ahead | None = None

    def retire(self) -> None:
        """Mark it finished (with `lock` held): no extension may touch it from now on."""
        self.finished = True
        self.due = float("inf")


@dataclass(frozen=True, slots=True)
class RunningCall:
    """A call to the queue or the store that a thread is blocked in right now."""

    thread: str
    what: str
    started: float  # time.monotonic()


class CallWatch:
    """The call each of the consumer's threads is in right now, and since when.

    Every call to the queue or the idempotency store goes through `watch`, so that liveness
    can tell a thread that is busy from one stuck in a call that never returns - a timeout
    that does not fire (a DNS lookup, a peer trickling bytes, a store without one).
    """

    def __init__(self) -> None:
        self._calls: dict[int, RunningCall] = {}
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def watch(self, what: str) -> Iterator[None]:
        ident = threading.get_ident()
        call = RunningCall(threading.current_thread().name, what, time.monotonic())
        with self._lock:
            self._calls[ident] = call
        try:
            yield
        finally:
            with self._lock:
                self._calls.pop(ident, None)

    def running(self) -> list[RunningCall]:
        with self._lock:
            return list(self._calls.values())


class VisibilityClock:
    """How long a delivery stays invisible, from its NextVisibleTime (the server's clock).

    Windows are counted from when the receive was SENT, before the server started them: the
    safe side. The server's clock may disagree with ours, so NextVisibleTime is never read
    against our clock directly:
    - a first delivery (DequeueCount 1) carries FirstDequeueTime, stamped by the same clock
      at the same moment: NextVisibleTime - FirstDequeueTime is its window, exactly;
    - for a redelivery, NextVisibleTime is moved to our clock by the server's lead over it,
      which each first delivery bounds from above (FirstDequeueTime minus our clock when the
      request was sent: the server stamped it later). The least of the recent bounds is used.
    - before any first delivery was seen, a redelivery's window is unknown (None).
    Thread-safe: the pollers share one.
    """

    def __init__(self, samples: int = CLOCK_SAMPLES) -> None:
        self._leads: collections.deque[int] = collections.deque(maxlen=samples)
        self._lock = threading.Lock()

    def window(self, message: ReceivedMessage, sent_ms: int) -> float | None:
        """Seconds from `sent_ms` (our wall clock, ms) for which `message` stays invisible."""
        if message.dequeue_count == 1 and message.first_dequeue_time_ms > 0:
            with self._lock:
                self._leads.append(message.first_dequeue_time_ms - sent_ms)
            return max(0.0, (message.next_visible_time_ms - message.first_dequeue_time_ms) / 1000)
        with self._lock:
            if not self._leads:
                return None
            lead = min(self._leads)
        return max(0.0, (message.next_visible_time_ms - sent_ms - lead) / 1000)


@dataclass(frozen=True, slots=True)
class Failing:
    """The queue has been failing our calls since `since` (time.monotonic())."""

    since: float
    endpoint: str
    error: str


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

    def put_back(self, entries: list[InFlight]) -> None:
        """Return entries a deleter could not lock, for a later batch. Never blocks: they
        were taken from this queue, and come back in the room they left."""
        with self._lock:
            now = time.monotonic()
            self._items.extend((now, entry) for entry in entries)
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

    def oldest_wait(self) -> float:
        """Seconds the oldest waiting message has waited (0 when none): deleters' progress."""
        with self._lock:
            return time.monotonic() - self._items[0][0] if self._items else 0.0


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
        self._queue_info_retry_at = 0.0  # when a poller may read missing attributes again
        self.last_poll = time.monotonic()  # liveness: when a poller last completed a receive
        self.queue_error: Failing | None = None  # readiness: receives failing, since when, why
        self.calls = CallWatch()  # liveness: the queue and store calls in progress
        self.fatal_error: str | None = None
        self.crashed: list[str] = []
        self.abandoned = 0  # handlers still running when shutdown_timeout ran out
        self.stop_requested = False

        self._wake = threading.Event()  # stop requested, fatal error or crash
        self._finished = threading.Event()  # workers are done: heartbeat and deleters may go
        self._ready_once = threading.Lock()
        self._inflight: dict[int, InFlight] = {}
        self._inflight_lock = threading.Lock()
        # The extenders wait here for the next record to fall due; a new record wakes them.
        self._schedule = threading.Condition(self._inflight_lock)
        self._clock = VisibilityClock()
        # New messages, RESUMED (a message whose async call has ended is waiting in
        # `_resumed`: wake up for it) or None (stop). Ended calls go first: finishing one
        # frees its slot and records its completion, which duplicates may be waiting for.
        self._work: queue.SimpleQueue[InFlight | Literal["resumed"] | None] = queue.SimpleQueue()
        self._resumed: queue.SimpleQueue[tuple[InFlight, Pending]] = queue.SimpleQueue()
        # Messages that have started an async call and not reached their outcome yet.
        self._awaiting: set[InFlight] = set()
        self._awaiting_done = threading.Condition()
        s = self.settings
        self._deletes = DeleteQueue(MAX_BATCH * 4 * s.deleters, s.delete_flush_seconds)
        capacity = self._capacity = s.workers + s.prefetch + processor.async_slots
        self.extenders = s.extenders_for(capacity)
        self._slots = Slots(
            capacity, batch=min(MAX_BATCH, capacity // 4), patience=POLL_PATIENCE_SECONDS
        )
        self._local = threading.local()
        self._transports: list[Transport] = []
        self._transports_lock = threading.Lock()
        self._poller_transports: list[Transport] = []
        self.threads: list[threading.Thread] = []
        # How many pollers poll now (vod_events/polling.py); asked and told under `_polling`.
        self._policy = PollerPolicy(
            poller_threads(s.pollers), s.wait_seconds, pinned=s.pollers != AUTO
        )
        self._polling = threading.Condition()
        self._pollers_started = 0  # poller threads: started as the policy first wants them
        # The extenders' schedule: (due, seq, record), the earliest first; an entry whose
        # record's `due` has changed since, or that is finished, is stale and skipped.
        self._due_heap: list[tuple[float, int, InFlight]] = []
        self._due_seq = itertools.count()
        # Handlers' completions, written behind the workers in batches (completions.py);
        # with idempotency off there is nothing to write.
        self._completions = (
            None
            if isinstance(processor.store, NullStore)
            else CompletionWriter(processor.store, self.stats, watch=self.calls.watch)
        )

    # ---------------------------------------------------------------- lifecycle

    def run(self) -> int:
        """Start, block until stopped (`stop()`, a fatal error or a crash), drain, return an
        exit code: 0 after a clean stop, 1 for a fatal queue error, 70 if a thread died, 75
        if running handlers had to be abandoned at shutdown."""
        code = self.start()
        if code != EXIT_OK:
            return code
        while not self._wake.wait(timeout=0.5):
            pass
        return self.shutdown()

    def start(self) -> int:
        """Check the queue, then start every thread. Returns non-zero if the queue refuses us."""
        transport = self._transport()
        try:
            with self.calls.watch("queue attributes"):
                self.queue_info = transport.queue_info()
        except FatalTransportError as exc:
            self.fatal_error = str(exc)
            log.error(
                "cannot consume the queue",
                queue=self.queue_name,
                endpoint=transport.endpoint,
                error=str(exc),
            )
            return EXIT_FATAL
        except TransportError as exc:
            # Unreachable now, but that may pass: the pollers keep trying, backing off.
            self._failing(transport, f"reading the queue's attributes: {exc}")
            log.error(
                "cannot read the queue's attributes; starting anyway, receives will retry",
                queue=self.queue_name,
                endpoint=transport.endpoint,
                error=str(exc),
            )
        s = self.settings
        for i in range(self.extenders):
            self._spawn(f"heartbeat-{i}", self._heartbeat_loop)
        self._spawn("renewer", self._renew_loop)
        if self._completions is not None:
            self._spawn("completions", self._completions.run)
            self.processor.record_completions_with(self._completions.submit)
        for i in range(s.deleters):
            self._spawn(f"deleter-{i}", self._deleter_loop)
        for i in range(s.workers):
            self._spawn(f"worker-{i}", self._worker_loop)
        self._start_pollers(self._policy.active)
        log.info(
            "consumer started",
            queue=self.queue_name,
            endpoint=transport.endpoint,
            pollers=s.pollers,
            workers=s.workers,
            prefetch=s.prefetch,
            deleters=s.deleters,
            extenders=self.extenders,
            visibility_timeout=self._extension_seconds(),
        )
        return EXIT_OK

    def stop(self) -> None:
        """Ask for a graceful stop; `run` then drains and returns. Safe from any thread."""
        self.stop_requested = True
        self._wake.set()

    def shutdown(self) -> int:
        """Drain in the order of docs/design.md rule 4 and return the exit code."""
        s = self.settings
        self.stopping.set()
        log.info("stopping: no more polling", in_flight=len(self._inflight))
        self._slots.wake_all()
        with self._transports_lock:
            for transport in self._poller_transports:
                transport.interrupt()  # do not sit out a 30 s long poll
        self._join(self._threads("poller"), timeout=10.0)

        deadline = time.monotonic() + s.shutdown_timeout
        released = wakeups = 0
        while True:  # hand back what no worker has started yet
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, InFlight):
                self._release(item)
                released += 1
            elif item == RESUMED:
                wakeups += 1
        for _ in range(wakeups):  # ended async calls: workers still finish them
            self._work.put(RESUMED)
        if released:
            log.info("handed back unstarted messages", count=released)

        cancelled = self._wait_for_async(deadline)
        for _ in range(s.workers):
            self._work.put(None)
        workers = self._threads("worker")
        self._join(workers, timeout=max(0.0, deadline - time.monotonic()))
        self.abandoned = sum(1 for t in workers if t.is_alive()) + cancelled
        if self.abandoned:
            log.warning(
                "shutdown_timeout reached; abandoning running handlers, "
                "their messages will be redelivered",
                running=self.abandoned,
            )
        if self._completions is not None:
            self._completions.close()  # written before the store closes
        self._deletes.close()  # deleters send what is left, then stop
        self._join(self._threads("deleter") + self._threads("completions"), timeout=10.0)
        self._finished.set()
        with self._schedule:
            self._schedule.notify_all()
        self._join(self._threads("heartbeat") + self._threads("renewer"), timeout=5.0)
        with self._transports_lock:
            for transport in self._transports:
                transport.close()  # also ends a call still blocked on the network
        self.processor.close()
        self.processor.store.close()

        if self.crashed:
            log.error("consumer stopped because a thread died", threads=self.crashed)
            return EXIT_CRASH
        if self.fatal_error:
            log.error("consumer stopped on a fatal queue error", error=self.fatal_error)
            return EXIT_FATAL
        if self.abandoned:
            log.error(
                "consumer stopped with handlers abandoned",
                abandoned=self.abandoned,
                exit_code=EXIT_ABANDONED,
                **self.stats.snapshot().counters,
            )
            return EXIT_ABANDONED
        log.info("consumer stopped", **self.stats.snapshot().counters)
        return EXIT_OK

    def extension_lateness(self) -> float:
        """Seconds the most overdue extension is late (0 when none): the heartbeat's
        progress. A failed extension is due again shortly, so it is not late: only a
        heartbeat that stopped moving, or cannot keep up, falls behind."""
        now = time.monotonic()
        with self._inflight_lock:
            return max((now - e.due for e in self._inflight.values() if e.due < now), default=0.0)

    def delete_wait(self) -> float:
        """Seconds the oldest message waiting for a deleter has waited (0 when none)."""
        return self._deletes.oldest_wait()

    @property
    def active(self) -> int:
        """Messages received and not yet finished (bounded by workers + prefetch, plus
        async_concurrency when there are async handlers)."""
        return self._capacity - self._slots.free

    @property
    def pollers_active(self) -> int:
        """Pollers polling now: the policy's choice with `pollers = "auto"`, else all."""
        return self._policy.active

    @property
    def long_polls_refused(self) -> int:
        """Long polls the queue answered at once with nothing (MNS's per-IP cap)."""
        return self._policy.refusals

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
        thread.start()
        self.threads.append(thread)  # started first: liveness must never see it not running

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

    def _read_queue_info(self, transport: Transport) -> None:
        """Read the queue's attributes that the start could not (at most every
        QUEUE_INFO_RETRY_SECONDS): until then extensions fall back to a guessed timeout."""
        now = time.monotonic()
        if now < self._queue_info_retry_at:
            return
        self._queue_info_retry_at = now + QUEUE_INFO_RETRY_SECONDS
        try:
            with self.calls.watch("queue attributes"):
                self.queue_info = transport.queue_info()
        except TransportError as exc:
            log.warning("the queue's attributes are still unavailable", error=str(exc))
            return
        log.info("queue attributes read", visibility_timeout=self.queue_info.visibility_timeout)

    def _extension_seconds(self) -> int:
        """What each extension asks for: the configured value, else the queue's."""
        if self.settings.visibility_timeout is not None:
            return max(1, self.settings.visibility_timeout)
        return self.queue_info.visibility_timeout if self.queue_info else DEFAULT_VISIBILITY_SECONDS

    def _failing(self, transport: Transport, error: str) -> Failing:
        current = self.queue_error
        since = current.since if current is not None else time.monotonic()
        self.queue_error = Failing(since, transport.endpoint, error)
        return self.queue_error

    # ---------------------------------------------------------------- in-flight table

    def _track(self, messages: list[ReceivedMessage], sent: float, sent_ms: int) -> list[InFlight]:
        """Register messages received by a request sent at `sent` (monotonic) = `sent_ms`
        (wall clock, ms), each due for its first extension half-way through its window."""
        entries = []
        for message in messages:
            window = self._first_window(message, sent_ms)
            entries.append(
                InFlight(message, message.receipt_handle, sent + window, due=sent + window / 2)
            )
        with self._schedule:
            heap = self._due_heap
            earliest = heap[0][0] if heap else math.inf
            for entry in entries:
                self._inflight[id(entry)] = entry
                heapq.heappush(heap, (entry.due, next(self._due_seq), entry))
            self.stats.set_in_flight(len(self._inflight))
            if entries and min(e.due for e in entries) < earliest:
                self._schedule.notify()  # due before any extender means to wake up
        return entries

    def _first_window(self, message: ReceivedMessage, sent_ms: int) -> float:
        """Seconds from the receive's sending for which `message` is surely invisible: from
        its NextVisibleTime, and never more than the queue's VisibilityTimeout when known
        (a receive grants exactly that). Not `[consumer] visibility_timeout`: that is what
        extensions buy, not what the receive gave. 0 when unknown: extend at once."""
        windows = [self._clock.window(message, sent_ms)]
        if self.queue_info is not None:
            windows.append(float(self.queue_info.visibility_timeout))
        known = [w for w in windows if w is not None]
        return min(known) if known else 0.0

    def _untrack(self, entry: InFlight) -> None:
        with self._inflight_lock:
            self._inflight.pop(id(entry), None)
            self.stats.set_in_flight(len(self._inflight))

    def _set_visibility(self, entry: InFlight, seconds: int, what: str) -> int:
        """Every change_visibility goes through here, with `entry.lock` held (rule 3): the
        one place that keeps the request within MNS's range and adopts the new handle.
        Returns the seconds asked for."""
        seconds = min(max(seconds, 0), MAX_VISIBILITY_SECONDS)
        started = time.monotonic()  # the server starts counting later: the safe side
        with self.calls.watch(what):
            entry.handle, _ = self._transport().change_visibility(entry.handle, seconds)
        entry.deadline = started + seconds
        return seconds

    # ---------------------------------------------------------------- poll

    def _poller_loop(self, index: int = 0) -> None:
        """Poller `index`: polls while the policy's `active` exceeds it (all of them when
        `pollers` is a number), else waits for it to."""
        s = self.settings
        errors = ExponentialBackoff(initial=0.5, maximum=30.0)
        empty = ExponentialBackoff(initial=0.2, maximum=5.0)
        error_streak = empty_streak = 0
        transport = self._transport()
        with self._transports_lock:
            self._poller_transports.append(transport)
        while not self.stopping.is_set():
            if not self._may_poll(index):
                continue
            asked = time.monotonic()
            wanted = self._slots.take_up_to(MAX_BATCH, self.stopping)
            short = wanted < MAX_BATCH or time.monotonic() - asked > SLOTS_SHORT_SECONDS
            if self.stopping.is_set():
                self._slots.give_back(wanted)
                break
            sent, sent_ms = time.monotonic(), time.time_ns() // 1_000_000
            try:
                with self.calls.watch("receive"):
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
                failing = self._failing(transport, str(exc))
                log.error(
                    "cannot receive from the queue; backing off",
                    queue=self.queue_name,
                    endpoint=transport.endpoint,
                    error=str(exc),
                    failing_for_s=round(time.monotonic() - failing.since, 1),
                    retry_in_s=round(delay, 2),
                )
                self.stopping.wait(delay)
                transport = self._reconnect()
                with self._transports_lock:
                    self._poller_transports.append(transport)
                continue
            self.last_poll = time.monotonic()
            if self.queue_info is None:
                self._read_queue_info(transport)
            if self.queue_error is not None:
                log.info("receiving again", queue=self.queue_name, endpoint=transport.endpoint)
                self.queue_error = None
            error_streak = 0
            self._notify_ready()
            self._slots.give_back(wanted - len(messages))
            waiting = self._work.qsize()  # received before, not started yet
            self._observe(Receipt(wanted, len(messages), self.last_poll - sent, short, waiting))
            if not messages:
                self.stats.incr("empty_polls")
                elapsed = self.last_poll - sent
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
            entries = self._track(messages, sent, sent_ms)
            with self.calls.watch("claim ahead"):
                aheads = self.processor.claim_ahead(messages)
            for entry, ahead in zip(entries, aheads, strict=True):
                entry.ahead = ahead
                self._work.put(entry)

    def _may_poll(self, index: int) -> bool:
        """Whether poller `index` is to poll now; if not, wait a while for that first."""
        with self._polling:
            if index < self._policy.active:
                return True
            self._polling.wait(timeout=0.5)  # woken when `active` grows
            return index < self._policy.active

    def _observe(self, receipt: Receipt) -> None:
        with self._polling:
            before = self._policy.active
            after = self._policy.observe(receipt)
            if after > before:
                self._polling.notify_all()
        refused = self._policy.refused(receipt)
        if refused:
            self.stats.incr("refused_polls")
        if after != before:
            log.debug("pollers", active=after, refused=refused)
        if after > self._pollers_started and not self.stopping.is_set():
            self._start_pollers(after)

    def _start_pollers(self, count: int) -> None:
        """Start poller threads up to `count`: a thread the policy never wanted costs nothing
        (no stack, no malloc arena, no wake-ups)."""
        with self._polling:
            first, self._pollers_started = (
                self._pollers_started,
                max(self._pollers_started, count),
            )
            new = range(first, self._pollers_started)
        for i in new:
            self._spawn(f"poller-{i}", functools.partial(self._poller_loop, i))

    def _notify_ready(self) -> None:
        if self.on_ready is not None and self._ready_once.acquire(blocking=False):
            self.on_ready()

    # ---------------------------------------------------------------- run

    def _worker_loop(self) -> None:
        while True:
            try:
                entry, pending = self._resumed.get_nowait()
            except queue.Empty:
                item = self._work.get()
                if item is None:
                    return
                if item == RESUMED:
                    continue  # take it from `_resumed`, unless another worker was first
                entry, pending = item, None
            if pending is None:
                if self.stopping.is_set():
                    self._release(entry)
                    continue
                result = self.processor.begin(entry.message, entry.ahead)
                entry.ahead = None  # the run owns it now
            else:
                result = self.processor.resume(pending)
            if isinstance(result, Pending):
                self._await(entry, result)
                continue
            if pending is not None:
                self._awaited(entry)
            self._slots.give_back()
            self._finish(entry, result)

    def _await(self, entry: InFlight, pending: Pending) -> None:
        """Let `entry` wait for its async call without a worker; back to the work queue
        (from the loop's thread) when the call ends."""
        with self._awaiting_done:
            self._awaiting.add(entry)

        def ended() -> None:
            self._resumed.put((entry, pending))
            self._work.put(RESUMED)

        pending.when_done(ended)

    def _awaited(self, entry: InFlight) -> None:
        with self._awaiting_done:
            self._awaiting.discard(entry)
            if not self._awaiting:
                self._awaiting_done.notify_all()

    def _wait_for_async(self, deadline: float) -> int:
        """At shutdown: wait until `deadline` for the messages in async calls to reach their
        outcome; then cancel the calls still running, and give their messages a moment to
        be handed back. How many did not make it by the deadline."""
        with self._awaiting_done:
            self._awaiting_done.wait_for(
                lambda: not self._awaiting, timeout=max(0.0, deadline - time.monotonic())
            )
            late = len(self._awaiting)
        if not late:
            return 0
        log.warning(
            "shutdown_timeout reached; cancelling running async handlers, their messages "
            "will be handed back",
            running=late,
        )
        self.processor.cancel_async()
        with self._awaiting_done:
            self._awaiting_done.wait_for(lambda: not self._awaiting, timeout=CANCEL_GRACE_SECONDS)
        return late

    def _finish(self, entry: InFlight, outcome: Outcome) -> None:
        if outcome.delete:
            self._deletes.put(entry)  # the deleter untracks it once deleted
            return
        self._hand_back(entry, outcome.visibility, "hand back")

    def _release(self, entry: InFlight) -> None:
        """Hand an unstarted message back quickly at shutdown."""
        self.processor.forget(entry.ahead)
        entry.ahead = None
        self._hand_back(entry, self.settings.release_visibility, "release")
        self.stats.incr("released")
        self._slots.give_back()

    def _hand_back(self, entry: InFlight, seconds: int, what: str) -> None:
        """Make the message visible again in `seconds`, and let it go."""
        with entry.lock:
            for attempt in range(1, HAND_BACK_ATTEMPTS + 1):
                try:
                    self._set_visibility(entry, seconds, what)
                    break
                except MessageGone:
                    break  # its visibility lapsed: it is back in the queue already
                except TransportError as exc:
                    if attempt == HAND_BACK_ATTEMPTS or self.stopping.is_set():
                        # It returns when its current visibility lapses: later, not lost.
                        log.warning(
                            f"{what} failed", message_id=entry.message.message_id, error=str(exc)
                        )
                        break
                    # A deferral handed back after the full visibility timeout instead
                    # of seconds would delay the duplicate's resolution: try again soon.
                    time.sleep(0.2 * attempt)
            entry.retire()  # before the lock goes: the heartbeat must not extend it again
        self._untrack(entry)

    # ---------------------------------------------------------------- finish

    def _deleter_loop(self) -> None:
        while (batch := self._deletes.take()) is not None:
            self._delete(batch)

    def _delete(self, batch: list[InFlight]) -> None:
        """Delete `batch`, each under its lock with its latest handle (rule 3).

        A record whose lock is busy (an extension is using its handle, maybe until its
        timeout) goes back to the delete queue instead of holding up the others. Between
        attempts the locks are let go, so the heartbeat keeps the messages invisible.
        """
        backoff = ExponentialBackoff(initial=0.2, maximum=5.0)
        pending = batch
        for attempt in range(1, DELETE_ATTEMPTS + 1):
            locked = self._lock_or_put_back(pending)
            if not locked:
                if pending:
                    time.sleep(BUSY_RETRY_SECONDS)  # all busy: do not spin on them
                return
            try:
                done = self._delete_locked(locked, last=attempt == DELETE_ATTEMPTS)
            finally:
                for entry in locked:
                    entry.lock.release()
            for entry in locked:
                if entry.finished:
                    self._untrack(entry)
            if done:
                return
            pending = locked
            time.sleep(backoff.delay(attempt))
            self._reconnect()

    def _lock_or_put_back(self, entries: list[InFlight]) -> list[InFlight]:
        locked: list[InFlight] = []
        busy: list[InFlight] = []
        for entry in entries:
            (locked if entry.lock.acquire(blocking=False) else busy).append(entry)
        if busy:
            self._deletes.put_back(busy)
        return locked

    def _delete_locked(self, batch: list[InFlight], *, last: bool) -> bool:
        """One BatchDeleteMessage for `batch`, whose locks are held. True when they are done
        with (deleted, gone, or given up after the last attempt), False to try again."""
        transport = self._transport()
        failures: list[DeleteFailure] = []
        try:
            with self.calls.watch("delete"):
                failures = transport.delete([entry.handle for entry in batch])
        except TransportError as exc:
            if not last:
                log.warning("delete failed; retrying", endpoint=transport.endpoint, error=str(exc))
                return False
            # They will be redelivered; the idempotency store skips them then.
            log.error(
                "delete failed; messages will be redelivered",
                endpoint=transport.endpoint,
                error=str(exc),
            )
            self.stats.incr("delete_failures", len(batch))
        else:
            by_handle = {entry.handle: entry for entry in batch}
            for failure in failures:
                # After a retried call, "gone" may mean our first attempt did delete it.
                entry = by_handle.get(failure.receipt_handle)
                log.info(
                    "delete: handle no longer valid",
                    message_id=entry.message.message_id if entry else "",
                    code=failure.code,
                )
            self.stats.incr("deleted", len(batch) - len(failures))
            if failures:
                self.stats.incr("delete_failures", len(failures))
        for entry in batch:
            entry.retire()
        return True

    # ---------------------------------------------------------------- keep alive

    def _heartbeat_loop(self) -> None:
        """An extender: extend whichever in-flight record falls due first (rule 2)."""
        while (entry := self._next_due()) is not None:
            was_due = entry.due
            try:
                self._extend(entry)
            finally:
                rescheduled = not entry.finished and was_due != entry.due < math.inf
                entry.lock.release()
            if rescheduled:
                with self._schedule:
                    heapq.heappush(self._due_heap, (entry.due, next(self._due_seq), entry))

    def _next_due(self) -> InFlight | None:
        """Wait for the record due first, take it off the schedule and return it locked
        (the caller puts it back with its next `due`); None once finished. A record whose
        lock is busy (a delete, a hand back) stays on the schedule, looked at again soon."""
        with self._schedule:
            while not self._finished.is_set():
                heap = self._due_heap
                if len(heap) > 2 * len(self._inflight) + 64:  # mostly stale: rebuild it
                    heap[:] = [item for item in heap if _current(item)]
                    heapq.heapify(heap)
                now = time.monotonic()
                wait = 1.0
                busy: list[tuple[float, int, InFlight]] = []
                while heap:
                    item = heap[0]
                    if not _current(item):
                        heapq.heappop(heap)
                    elif item[0] > now:
                        wait = min(wait, item[0] - now)
                        break
                    elif item[2].lock.acquire(blocking=False):
                        heapq.heappop(heap)
                        for other in busy:
                            heapq.heappush(heap, other)
                        return item[2]
                    else:
                        busy.append(heapq.heappop(heap))
                        wait = BUSY_RETRY_SECONDS
                for other in busy:
                    heapq.heappush(heap, other)
                self._schedule.wait(wait)
        return None

    def _extend(self, entry: InFlight) -> None:
        """Extend one record's visibility (its lock held), and schedule the next extension
        for when half of the new visibility is left."""
        if entry.finished or entry.due > time.monotonic():
            return  # handed back, deleted, or extended by the other extender meanwhile
        try:
            granted = self._set_visibility(entry, self._extension_seconds(), "extend visibility")
        except MessageGone:
            log.warning(
                "visibility lapsed before it could be extended; it may be redelivered",
                message_id=entry.message.message_id,
            )
            entry.due = float("inf")  # nothing left to extend
        except TransportError as exc:
            entry.due = time.monotonic() + EXTEND_RETRY_SECONDS
            log.warning(
                "visibility extension failed; retrying",
                message_id=entry.message.message_id,
                error=str(exc),
                lapses_in_s=round(entry.deadline - time.monotonic(), 1),
            )
            self._reconnect()
        else:
            entry.due = entry.deadline - granted / 2
            self.stats.incr("extended")

    def _renew_loop(self) -> None:
        """Renew the idempotency claims on the store's schedule (rules 9 and 13)."""
        store = self.processor.store
        interval = renew_interval(store)
        while not self._finished.wait(timeout=interval):
            try:
                with self.calls.watch("renew claims"):
                    store.renew()
            except Exception as exc:
                log.warning("renewing idempotency claims failed", error=repr(exc))


def _current(item: tuple[float, int, InFlight]) -> bool:
    """Whether a schedule entry still stands: its record unfinished, due when it says."""
    due, _, entry = item
    return not entry.finished and entry.due == due
