"""What happens to one delivery: decode, dedupe, run handlers, decide its fate.

`Processor.process` turns a received message into an `Outcome` — delete it, or hand it back
to the queue for a while — and never raises. It knows nothing of threads, receipt handles or
HTTP, so the MNS consumer and the HTTP callback server share it.

The rules (docs/design.md rules 5 to 9):
- delete only after every matching handler succeeded (or had succeeded on an earlier
  delivery, per the idempotency store);
- a body that can never decode, a handler's PermanentError, or a DequeueCount beyond
  `max_deliveries` is dead-lettered, and deleted only once the dead letter is durable;
- anything else that fails goes back to the queue with a visibility computed from the
  DequeueCount, so retries back off even across crashes and restarts;
- a duplicate whose handler is running right now waits for it in this process, or comes back
  within seconds when it runs elsewhere; such deferrals are not deliveries that count.

A transactional handler (`Route.transactional`) runs inside `store.transaction(key)`, which
records its completion in the same database transaction as the handler's own writes
(`ctx.db`): each call, retries included, gets a fresh transaction, committed when the
handler returns and rolled back when it raises. Every other handler is completed with
`store.complete(key)` after it returns - or, in the consumer, handed to its write-behind
(`record_completions_with`), which keeps the key held until it is written.

Async handlers (`Route.is_async`): the pipeline is one generator per delivery (`_steps`),
which yields an `AsyncCall` where it needs an async handler's result. `process` drives it to
the end, waiting for each call (the HTTP callbacks' threads); `begin` and `resume` drive it
one step at a time, returning a `Pending` instead of waiting, so a consumer's worker thread
goes on with other messages while the call runs on the `AsyncRunner`'s loop. Either way the
decisions are the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import math
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import structlog

from vod_events.aio import AsyncRunner, Completion
from vod_events.backoff import RedeliveryBackoff
from vod_events.deadletter import DeadLetter, DeadLetterSink
from vod_events.decoder import decode
from vod_events.dedupe import Claim, ClaimState, IdempotencyStore, NullStore
from vod_events.errors import DecodeError, PermanentError
from vod_events.events import VodEvent
from vod_events.limits import Concurrency, OverrunWatch
from vod_events.retry import RetryPolicy
from vod_events.router import ContextSource, HandlerContext, Route, Router
from vod_events.stats import Stats
from vod_events.tracing import NO_TRACING, Delivery, Tracer
from vod_events.transports import ReceivedMessage

MAX_REASON = 500  # characters of an exception's text kept in a dead letter's reason
# A delivery whose handler runs elsewhere comes back after 1, 2, 4, 8, 8... seconds (never
# later than that claim's lease): a duplicate is resolved within seconds of its first copy.
DEFER_INITIAL = 1
DEFER_MAX = 8
OWN_CLAIM_POLL_SECONDS = 0.02  # how often a duplicate waiting on the loop looks again


class OutcomeStatus(StrEnum):
    """What became of a delivery. A StrEnum: `str()` and f-strings give the plain value."""

    HANDLED = "handled"  # every matching handler succeeded
    UNHANDLED = "unhandled"  # no handler matches the event
    DUPLICATE = "duplicate"  # every matching handler had completed on an earlier delivery
    DEAD_LETTERED = "dead_lettered"  # can never succeed; the dead letter is durable
    RETRY = "retry"  # failed for now; back to the queue with a backoff
    DEFERRED = "deferred"  # a handler is running elsewhere; look again after its claim


@dataclass(frozen=True, slots=True)
class Outcome:
    """The fate of one delivery.

    delete: True to delete the message; False to make it visible again after `visibility` s.
        RETRY and DEFERRED never delete; every other status always does.
    """

    status: OutcomeStatus
    delete: bool
    visibility: int = 0
    reason: str = ""


class HandlerTimeout(Exception):
    """An async handler's call outlived its `timeout` and was cancelled (a failed try)."""


@dataclass(frozen=True, slots=True)
class AsyncCall:
    """A step of the pipeline that needs an async handler's call (all its tries) to finish.
    The generator is sent back the call's exception, or None when it succeeded."""

    make: Callable[[], Coroutine[Any, Any, None]]


Steps = Generator[AsyncCall, BaseException | None, Outcome]


class Pending:
    """A delivery waiting for an async handler's call; `Processor.resume` it once it ended.

    Owned by one thread at a time: whoever holds it resumes it, once, after the call ends."""

    __slots__ = ("_completion", "_delivery", "_steps")

    def __init__(self, steps: Steps, completion: Completion, delivery: Delivery) -> None:
        self._steps = steps
        self._completion = completion
        self._delivery = delivery

    def when_done(self, callback: Callable[[], None]) -> None:
        """Call `callback()` (on the loop's thread, or at once) when the call has ended."""
        self._completion.when_done(callback)

    def wait(self) -> None:
        self._completion.wait()


@dataclass(slots=True)
class Ahead:
    """What `Processor.claim_ahead` settled for one delivery before a worker starts it.

    event: the decoded body; None when it did not decode (`begin` decodes it again, to
        dead-letter it with the reason).
    claims: keys the batch claim took (CLAIMED) or found done (COMPLETED). The delivery's
        other keys are claimed one by one when it runs. Whatever a run does not use is
        released when it ends, and `forget` releases them for a delivery that never runs.
    """

    event: VodEvent | None
    claims: dict[str, Claim] = field(default_factory=dict)


TransactionFactory = Callable[[str], AbstractContextManager[Any]]


def transaction_of(store: IdempotencyStore) -> TransactionFactory | None:
    """The store's `transaction(key)` (PostgresStore's), or None if it has none."""
    transaction = getattr(store, "transaction", None)
    return transaction if callable(transaction) else None


class Processor:
    """Runs one delivery through the pipeline. Thread-safe: share one between workers.

    router: which handlers run for an event.
    store: the idempotency store (NullStore: off).
    dead_letters: where messages that can never succeed go (None: nowhere, so they are
        left in the queue with the longest backoff and an error log — never deleted).
    retry: in-process retry of each handler call.
    redelivery: visibility for a delivery handed back to the queue, from its DequeueCount.
    max_deliveries: a message delivered more often than this is dead-lettered; deliveries
        deferred because the handler was running elsewhere, and deliveries whose handlers
        had all completed, are not counted.
    source: the queue name (or "http-callback"), recorded in dead letters.
    context_source: what handlers see as `ctx.source`: "mns" or "http".
    stopping: set at shutdown; cuts in-process retries short.
    own_claim_wait: seconds a duplicate waits in-process for another thread of this process
        running the same handler, before it is handed back (the heartbeat keeps it meanwhile).
    async_concurrency: the most async handler calls running at once, on the event-loop
        thread started for them (only if the router has async handlers).
    tracer: told of each delivery and handler call (`vod_events.tracing`); off by default.

    Raises ValueError when the router has transactional handlers and the store has no
    `transaction` (only PostgresStore does).
    """

    def __init__(
        self,
        router: Router,
        *,
        stats: Stats,
        stopping: threading.Event,
        source: str,
        store: IdempotencyStore | None = None,
        dead_letters: DeadLetterSink | None = None,
        retry: RetryPolicy | None = None,
        redelivery: RedeliveryBackoff | None = None,
        max_deliveries: int = 10,
        decoder: Callable[[str], VodEvent] = decode,
        context_source: ContextSource = "mns",
        own_claim_wait: float = 20.0,
        async_concurrency: int = 256,
        tracer: Tracer = NO_TRACING,
    ) -> None:
        self.router = router
        self.stats = stats
        self.stopping = stopping
        self.source = source
        self.store = store or NullStore()
        self.dead_letters = dead_letters
        self.retry = retry or RetryPolicy()
        self.redelivery = redelivery or RedeliveryBackoff()
        self.max_deliveries = max_deliveries
        self.decoder = decoder
        self.context_source = context_source
        self.own_claim_wait = own_claim_wait
        self.async_concurrency = async_concurrency
        self.tracer = tracer
        self._queued = context_source == "mns"
        self._runner: AsyncRunner | None = None
        self._runner_lock = threading.Lock()
        self._concurrency = Concurrency()
        self._overruns = OverrunWatch(stats)
        self._awaitable_warned: set[str] = set()
        self.log = structlog.get_logger("vod_events.processing")
        if router.transactional and transaction_of(self.store) is None:
            raise ValueError(
                f"transactional handler(s) {', '.join(map(repr, router.transactional))} need "
                "an idempotency store with transactions, PostgresStore ([dedupe] backend = "
                f"'postgres'); this processor's store is a {type(self.store).__name__}"
            )
        self._claim_lost: type[Exception] | None = None  # PostgresStore's, once needed
        # Records a handler's completion: the store, or a consumer's write-behind.
        self._complete: Callable[[str], None] = self.store.complete

    @property
    def async_slots(self) -> int:
        """How many more deliveries a consumer may hold in flight for async handlers to
        await: `async_concurrency` when the router has async handlers, else 0."""
        return self.async_concurrency if self.router.has_async else 0

    def process(self, message: ReceivedMessage, ahead: Ahead | None = None) -> Outcome:
        """The delivery's outcome, waiting here for any async handler. Never raises."""
        result = self.begin(message, ahead)
        while isinstance(result, Pending):
            result.wait()
            result = self.resume(result)
        return result

    def begin(self, message: ReceivedMessage, ahead: Ahead | None = None) -> Outcome | Pending:
        """Run the delivery up to its outcome, or up to an async handler's call: then a
        `Pending` to `resume` once it is done. `ahead`: what `claim_ahead` settled for it
        (the run owns it from here). Never raises."""
        delivery = self.tracer.delivery(self.source, message)
        return self._advance(self._steps(message, delivery, ahead), delivery, None)

    def claim_ahead(self, messages: list[ReceivedMessage]) -> list[Ahead]:
        """Decode a received batch and claim its keys in one `store.claim_many` call, for
        `begin`; one `Ahead` per message, in order. Each sqlite3 statement hands the GIL
        over, so one statement per batch instead of one per message saves thread switches.
        A key two messages of the batch share is claimed for the first only (the other
        waits for it, as any duplicate in this process does). Never raises: what it could
        not do is done one by one when each delivery runs."""
        aheads: list[Ahead] = []
        first: dict[str, Ahead] = {}  # each key -> the delivery it is claimed for
        for message in messages:
            try:
                event = self.decoder(message.body)
                keys = [_key(event, route) for route in self.router.routes_for(event)]
            except Exception:  # `begin` does it again, and says why
                aheads.append(Ahead(None))
                continue
            ahead = Ahead(event)
            aheads.append(ahead)
            for key in keys:
                first.setdefault(key, ahead)
        if not first:
            return aheads
        try:
            settled = self.store.claim_many(list(first))
        except Exception as exc:
            self.log.warning("claiming a batch failed; claiming one by one", error=repr(exc))
            return aheads
        for key, claim in settled.items():
            first[key].claims[key] = claim
        return aheads

    def forget(self, ahead: Ahead | None) -> None:
        """Release the claims `claim_ahead` took for a delivery that will not run here
        (handed back unstarted). Never raises: a claim left behind lapses with its lease."""
        if ahead is not None:
            self._release_unused(ahead.claims)

    def resume(self, pending: Pending) -> Outcome | Pending:
        """Go on with a delivery whose async call has ended (see `begin`). Never raises."""
        return self._advance(pending._steps, pending._delivery, pending._completion.error())

    def cancel_async(self) -> int:
        """Cancel every async handler call still running (shutdown_timeout has run out); how
        many there were. Each comes back to its `Pending` as a failure."""
        return self._runner.cancel_all() if self._runner is not None else 0

    def record_completions_with(self, complete: Callable[[str], None]) -> None:
        """Record handlers' completions with `complete(key)` instead of `store.complete`:
        the consumer's `CompletionWriter.submit` (completions.py), which returns before the
        write, keeping the key held in the store until it is done."""
        self._complete = complete

    def close(self) -> None:
        """Stop the async handlers' loop, if one was started (the store has its owner)."""
        if self._runner is not None:
            self._runner.close()

    def _advance(
        self, steps: Steps, delivery: Delivery, sent: BaseException | None
    ) -> Outcome | Pending:
        with delivery.activate():
            try:
                call = steps.send(sent) if sent is not None else next(steps)
            except StopIteration as done:
                outcome: Outcome = done.value
                delivery.end(outcome.status, outcome.reason)
                return outcome
            try:
                return Pending(steps, self._async_runner().submit(call.make), delivery)
            except Exception as exc:  # no loop (closed at shutdown): a failed call
                return self._advance(steps, delivery, exc)

    def _async_runner(self) -> AsyncRunner:
        with self._runner_lock:
            if self._runner is None:
                self._runner = AsyncRunner(self.async_concurrency)
            return self._runner

    def _steps(self, message: ReceivedMessage, delivery: Delivery, ahead: Ahead | None) -> Steps:
        log = self.log.bind(message_id=message.message_id, dequeue_count=message.dequeue_count)
        claims = ahead.claims if ahead is not None else {}
        try:
            try:
                event = ahead.event if ahead is not None else None
                if event is None:
                    event = self.decoder(message.body)
            except DecodeError as exc:
                return self._dead_letter(message, f"undecodable: {exc.reason}", log)
            delivery.event(event)
            log = log.bind(
                event_type=event.event_type, media_id=event.media_id, job_id=event.job_id
            )
            return (yield from self._handle(message, event, log, delivery, claims))
        except Exception as exc:  # a bug or a store outage: never lose the message
            log.exception("processing failed; the message will be redelivered")
            return self._retry(message, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._release_unused(claims)  # taken ahead for handlers this run did not reach

    def _release_unused(self, claims: dict[str, Claim]) -> None:
        while claims:
            key, claim = claims.popitem()
            if claim.state is ClaimState.CLAIMED:
                try:
                    self.store.release(key)
                except Exception as exc:  # it lapses with its lease: later, not lost
                    self.log.warning("releasing a claim failed", key=key, error=repr(exc))

    def _handle(
        self,
        message: ReceivedMessage,
        event: VodEvent,
        log: Log,
        delivery: Delivery,
        claims: dict[str, Claim],
    ) -> Steps:
        routes = self.router.routes_for(event)
        if not routes:
            self.stats.incr("unhandled")
            log.info("no handler for this event type; deleting")
            return Outcome(OutcomeStatus.UNHANDLED, delete=True)
        context = HandlerContext(
            message_id=message.message_id,
            dequeue_count=message.dequeue_count,
            enqueue_time=(
                datetime.fromtimestamp(message.enqueue_time_ms / 1000, UTC)
                if message.enqueue_time_ms > 0
                else None
            ),
            source=self.context_source,
        )
        if message.enqueue_time_ms > 0:
            self.stats.observe_lag(time.time() - message.enqueue_time_ms / 1000)
        ran = 0
        for route in routes:
            key = _key(event, route)
            ahead = claims.pop(key, None)
            claim = ahead if ahead is not None else (yield from self._claim(key))
            if claim.state is ClaimState.COMPLETED:
                continue
            if claim.state is ClaimState.IN_PROGRESS:
                return self._defer(message, claim, route, log)
            if too_often := self._delivered_too_often(message):
                self.store.release(key)
                return self._dead_letter(message, too_often, log)
            call = Call(route, event, context, message, key, log, delivery)
            if route.is_async:
                outcome = yield from self._run_async(call)
            elif route.transactional:
                outcome = self._run_in_transaction(call)
            else:
                outcome = self._run(call)
            if outcome is not None:
                return outcome
            ran += 1
        if ran == 0:
            self.stats.incr("duplicates")
            log.info("duplicate delivery: every handler already completed; deleting")
            return Outcome(OutcomeStatus.DUPLICATE, delete=True)
        self.stats.incr("handled")
        log.debug("handled")
        return Outcome(OutcomeStatus.HANDLED, delete=True)

    def _claim(self, key: str) -> Generator[AsyncCall, BaseException | None, Claim]:
        """Claim `key`; when another thread of this process holds it, wait for that thread
        (up to `own_claim_wait`) instead of handing the duplicate back to the queue.

        With async handlers in the router, the wait is a call on the event loop, not a
        blocked worker: the claim may be held by an async call whose completion a free
        worker must record, and duplicates blocking every worker would wait for it in vain
        (docs/design.md rule 16)."""
        claim = self.store.claim(key)
        deadline = time.monotonic() + self.own_claim_wait
        while claim.state is ClaimState.IN_PROGRESS and claim.mine:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.stopping.is_set():
                break
            # In slices, so that a shutdown is noticed.
            if self.router.has_async:
                yield AsyncCall(functools.partial(self._released, key, min(remaining, 1.0)))
            else:
                self.store.wait_for(key, min(remaining, 1.0))
            claim = self.store.claim(key)
        return claim

    async def _released(self, key: str, timeout: float) -> None:
        """Wait on the loop until this process no longer holds `key`, at most `timeout` s."""
        end = time.monotonic() + timeout
        # wait_for(key, 0) only looks at the store's in-memory record of held claims.
        while not self.store.wait_for(key, 0) and time.monotonic() < end:
            await asyncio.sleep(OWN_CLAIM_POLL_SECONDS)

    def _defer(self, message: ReceivedMessage, claim: Claim, route: Route, log: Log) -> Outcome:
        """Hand back a delivery whose handler is running elsewhere: soon, and sooner still
        when its claim's lease runs out first. Deferrals do not count as deliveries."""
        # Only a queue message comes back under the same id with a DequeueCount to correct;
        # an HTTP callback's retry is a new request (and a new id), so nothing is recorded.
        deferrals = self.store.count_deferral(message.message_id) if self._queued else 1
        if claim.mine:  # our own handler outlived `own_claim_wait`: look again at once
            visibility = 1
        else:
            growing = min(DEFER_INITIAL * 2 ** min(deferrals - 1, 16), DEFER_MAX)
            visibility = max(1, min(math.ceil(claim.retry_after) + 1, growing))
        self.stats.incr("deferred")
        log.info(
            "handler in progress elsewhere; looking again shortly",
            handler=route.name,
            retry_in_s=visibility,
        )
        return Outcome(OutcomeStatus.DEFERRED, delete=False, visibility=visibility)

    def _delivered_too_often(self, message: ReceivedMessage) -> str:
        """Why this delivery is one too many, or "". Deliveries that were deferred because a
        handler was running elsewhere are not counted: they never ran a handler."""
        if message.dequeue_count <= self.max_deliveries:
            return ""  # the common case: no need to ask the store
        deferrals = self.store.deferrals(message.message_id)
        if message.dequeue_count - deferrals <= self.max_deliveries:
            return ""
        return (
            f"delivered {message.dequeue_count} times ({deferrals} deferred), more than "
            f"max_deliveries={self.max_deliveries}"
        )

    def _on_retry(self, call: Call, what: str) -> Callable[[int, BaseException], None]:
        def on_retry(attempt: int, error: BaseException) -> None:
            self.stats.incr("retried")
            call.log.warning(what, handler=call.route.name, attempt=attempt, error=repr(error))

        return on_retry

    def _limited(self, call: Call) -> AbstractContextManager[Any]:
        """What holds one try of a sync handler: its concurrency place, its overrun watch,
        its span."""
        route = call.route
        if route.max_concurrency is None and route.timeout is None:
            return call.delivery.handler(route.name)  # the common case, without a stack
        stack = contextlib.ExitStack()
        if route.max_concurrency is not None:
            stack.enter_context(self._concurrency.of(route.name, route.max_concurrency))
        if route.timeout is not None:
            stack.enter_context(
                self._overruns.running(route.name, call.message.message_id, route.timeout)
            )
        stack.enter_context(call.delivery.handler(route.name))
        return stack

    def _run(self, call: Call) -> Outcome | None:
        """Run one sync handler under its claim; None on success, else the delivery's outcome."""

        def attempt() -> None:
            with self._limited(call):
                result = call.route.handler(call.event, call.context)
            if inspect.isawaitable(result):
                self._await_returned(call, result)

        started = time.perf_counter()
        try:
            self.retry.call(
                attempt,
                stopping=self.stopping,
                on_retry=self._on_retry(call, "handler failed; retrying"),
            )
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            # SystemExit / KeyboardInterrupt from a handler (a library calling sys.exit()) is
            # its failure, not ours: the worker thread must survive it.
            return self._failed(call, exc)
        finally:
            self.stats.observe_handler(time.perf_counter() - started)
        self._complete(call.key)
        return None

    def _await_returned(self, call: Call, awaitable: Any) -> None:
        """A handler not detected as async returned an awaitable (a decorator hid the
        `async def`): await it rather than count a call that never ran as a success."""
        if call.route.name not in self._awaitable_warned:
            self._awaitable_warned.add(call.route.name)
            call.log.warning(
                "handler returned an awaitable: awaited on a worker thread; declare it "
                "`async def` (or mark it with inspect.markcoroutinefunction) to run it on "
                "the event loop",
                handler=call.route.name,
            )

        async def wait() -> None:
            await awaitable

        self._async_runner().run(wait)

    def _run_async(self, call: Call) -> Generator[AsyncCall, BaseException | None, Outcome | None]:
        """Run one async handler under its claim on the event loop (the worker thread does
        not wait for it: see `begin`); None on success, else the delivery's outcome."""
        route = call.route
        on_retry = self._on_retry(call, "handler failed; retrying")

        async def attempt() -> None:
            limit = (
                self._async_runner().limit(route.name, route.max_concurrency)
                if route.max_concurrency is not None
                else None
            )
            deadline = asyncio.timeout(route.timeout)  # None: no limit
            async with limit or contextlib.nullcontext():
                with call.delivery.handler(route.name):
                    try:
                        async with deadline:
                            await route.handler(call.event, call.context)  # type: ignore[misc]
                    except TimeoutError:
                        if not deadline.expired():
                            raise  # the handler's own TimeoutError, not its limit
                        self.stats.incr("handler_timeouts")
                        raise HandlerTimeout(
                            f"timed out after {route.timeout:g} s and was cancelled"
                        ) from None

        async def all_tries() -> None:
            await self.retry.call_async(attempt, stopping=self.stopping, on_retry=on_retry)

        started = time.perf_counter()
        error = yield AsyncCall(all_tries)
        self.stats.observe_handler(time.perf_counter() - started)
        if error is not None:
            return self._failed(call, error)
        self._complete(call.key)
        return None

    def _run_in_transaction(self, call: Call) -> Outcome | None:
        """Run a transactional handler: each call in a fresh `store.transaction(key)`, whose
        commit records the completion with the handler's writes. None on success.

        ClaimLostError (the claim lapsed and another replica took it, so this transaction
        was rolled back) is not retried in process, where it would only fail again: the
        message is handed back, and its next delivery finds the other replica's outcome."""
        route, key, log = call.route, call.key, call.log
        transaction = transaction_of(self.store)
        if transaction is None:  # a route added to the router after the processor was built
            self.store.release(key)
            self.stats.incr("failed")
            reason = f"{route.name}: transactional, but the idempotency store has no transactions"
            log.error("handler not run; message handed back to the queue", reason=reason)
            return self._retry(call.message, reason)
        claim_lost = self._claim_lost_error()
        lost: list[Exception] = []

        def attempt() -> None:
            try:
                with self._limited(call), transaction(key) as conn:
                    route.handler(call.event, dataclasses.replace(call.context, db=conn))
            except claim_lost as exc:
                lost.append(exc)  # returns: RetryPolicy would call it again

        started = time.perf_counter()
        try:
            self.retry.call(
                attempt,
                stopping=self.stopping,
                on_retry=self._on_retry(
                    call, "handler failed and its transaction was rolled back; retrying"
                ),
            )
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            return self._failed(call, exc)
        finally:
            self.stats.observe_handler(time.perf_counter() - started)
        if lost:
            self.store.release(key)  # no longer ours: only forgets it here
            self.stats.incr("failed")
            outcome = self._retry(
                call.message, f"{route.name}: {type(lost[0]).__name__}: {lost[0]}"
            )
            log.warning(
                "claim lost to another consumer while the handler ran; its transaction was "
                "rolled back and the message handed back to the queue",
                handler=route.name,
                error=str(lost[0]),
                retry_in_s=outcome.visibility,
            )
            return outcome
        return None

    def _claim_lost_error(self) -> type[Exception]:
        if self._claim_lost is None:
            # Imported only for transactional handlers: psycopg is the `postgres` extra.
            from vod_events.postgres_store import ClaimLostError

            self._claim_lost = ClaimLostError
        return self._claim_lost

    def _failed(self, call: Call, exc: BaseException) -> Outcome:
        """A handler failed for good on this delivery: release its claim; dead-letter a
        PermanentError, hand anything else back to the queue."""
        route, message, log = call.route, call.message, call.log
        self.store.release(call.key)
        if isinstance(exc, PermanentError):
            return self._dead_letter(message, f"{route.name}: permanent failure: {exc}", log)
        self.stats.incr("failed")
        outcome = self._retry(message, f"{route.name}: {type(exc).__name__}: {exc}")
        log.warning(
            "handler failed; message handed back to the queue",
            handler=route.name,
            error=repr(exc),
            retry_in_s=outcome.visibility,
        )
        return outcome

    def _retry(self, message: ReceivedMessage, reason: str) -> Outcome:
        visibility = self.redelivery.visibility_for(message.dequeue_count)
        return Outcome(
            OutcomeStatus.RETRY, delete=False, visibility=visibility, reason=reason[:MAX_REASON]
        )

    def _dead_letter(self, message: ReceivedMessage, reason: str, log: Log) -> Outcome:
        reason = reason[:MAX_REASON]
        if self.dead_letters is None:
            log.error("message can never succeed and no dead-letter target is set", reason=reason)
            return Outcome(OutcomeStatus.RETRY, delete=False, visibility=43200, reason=reason)
        letter = DeadLetter.of(message, reason, self.source)
        try:
            self.dead_letters.put(letter)
        except Exception as exc:
            log.error("dead-letter write failed; message kept in the queue", error=repr(exc))
            return self._retry(message, f"dead-letter write failed: {exc}")
        self.stats.incr("dead_lettered")
        log.warning("message dead-lettered", reason=reason)
        return Outcome(OutcomeStatus.DEAD_LETTERED, delete=True, reason=reason)


Log = structlog.typing.FilteringBoundLogger


def _key(event: VodEvent, route: Route) -> str:
    """The idempotency key of one handler for one event."""
    return f"{event.dedupe_key}|{route.name}"


@dataclass(frozen=True, slots=True)
class Call:
    """One handler's call for one delivery: what running it needs."""

    route: Route
    event: VodEvent
    context: HandlerContext
    message: ReceivedMessage
    key: str  # its idempotency key
    log: Log
    delivery: Delivery
