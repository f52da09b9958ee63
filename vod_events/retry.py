"""In-process retry of one handler call, with tenacity.

Transient failures (any exception but those in `NOT_RETRIED`) are retried with exponential backoff
and jitter, bounded by a number of attempts AND a total time, whichever comes first. The
waits are interruptible: when the daemon shuts down, a handler sitting in a backoff gives up
at once and its message goes back to the queue.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    Retrying,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential_jitter,
)

from vod_events.errors import PermanentError

T = TypeVar("T")

# Raised by a handler, these end its tries at once: a PermanentError by definition, and
# SystemExit / KeyboardInterrupt because a library that calls sys.exit() will do so again.
NOT_RETRIED: tuple[type[BaseException], ...] = (PermanentError, SystemExit, KeyboardInterrupt)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try one handler before handing the message back to the queue.

    attempts: total calls, including the first (1 disables in-process retry).
    max_seconds: stop retrying once this much time has passed since the first call.
    initial_wait / max_wait: the exponential backoff between calls, in seconds, jittered.
    """

    attempts: int = 3
    max_seconds: float = 30.0
    initial_wait: float = 0.2
    max_wait: float = 5.0

    def call(
        self,
        func: Callable[[], T],
        *,
        stopping: threading.Event,
        on_retry: Callable[[int, BaseException], None] | None = None,
    ) -> T:
        """Call `func` until it returns, raising its last exception when out of tries.

        `stopping` set (shutdown) ends the retries at the next wait.
        `on_retry(attempt, exception)` is told about each failure that will be retried.

        Almost every call succeeds at once, and building tenacity's machinery costs a dozen
        objects per call (a quarter of a worker's CPU with a fast handler under load). So the
        first try runs directly; a failure brings the policy in, which replays that failure
        as its attempt 1: the same attempts, waits and `on_retry` calls, with the time bound
        counted from the first try.
        """
        started = time.monotonic()
        try:
            return func()
        except NOT_RETRIED:
            raise
        except BaseException as exc:  # as under tenacity: whatever the handler raises
            first_failure = exc
        replayed = False

        def attempt() -> T:
            nonlocal replayed
            if not replayed:
                replayed = True
                raise first_failure
            return func()

        remaining = max(0.0, self.max_seconds - (time.monotonic() - started))
        return self._retrying(remaining, stopping, on_retry)(attempt)

    async def call_async(
        self,
        func: Callable[[], Awaitable[T]],
        *,
        stopping: threading.Event,
        on_retry: Callable[[int, BaseException], None] | None = None,
    ) -> T:
        """`call` for an async handler: the same tries and waits, awaited on the loop."""
        started = time.monotonic()
        try:
            return await func()
        except NOT_RETRIED:
            raise
        except asyncio.CancelledError:
            raise  # a cancellation is not the handler's failure: never retried
        except BaseException as exc:
            first_failure = exc
        replayed = False

        async def attempt() -> T:
            nonlocal replayed
            if not replayed:
                replayed = True
                raise first_failure
            return await func()

        async def sleep(seconds: float) -> None:
            # In slices, so that a shutdown ends the wait (the Event cannot be awaited).
            deadline = time.monotonic() + seconds
            while not stopping.is_set() and (left := deadline - time.monotonic()) > 0:
                await asyncio.sleep(min(left, 0.1))

        remaining = max(0.0, self.max_seconds - (time.monotonic() - started))
        retrying = AsyncRetrying(sleep=sleep, **self._options(remaining, stopping, on_retry))
        return await retrying(attempt)

    def _retrying(
        self,
        max_seconds: float,
        stopping: threading.Event,
        on_retry: Callable[[int, BaseException], None] | None,
    ) -> Retrying:
        def sleep(seconds: float) -> None:
            stopping.wait(seconds)  # returns early on shutdown instead of sleeping on

        return Retrying(sleep=sleep, **self._options(max_seconds, stopping, on_retry))

    def _options(
        self,
        max_seconds: float,
        stopping: threading.Event,
        on_retry: Callable[[int, BaseException], None] | None,
    ) -> dict[str, Any]:
        """What `Retrying` and `AsyncRetrying` share: when to stop, wait and report."""

        def before_sleep(state: RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None:
                error = state.outcome.exception()
                if error is not None:
                    on_retry(state.attempt_number, error)

        return dict(
            stop=(
                stop_after_attempt(self.attempts)
                | stop_after_delay(max_seconds)
                | stop_when_event_set(stopping)
            ),
            wait=wait_exponential_jitter(
                multiplier=self.initial_wait, max=self.max_wait, jitter=self.initial_wait
            ),
            retry=retry_if_not_exception_type((*NOT_RETRIED, asyncio.CancelledError)),
            before_sleep=before_sleep,
            reraise=True,
        )
