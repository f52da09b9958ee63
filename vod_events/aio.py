"""The event-loop thread that runs async handlers.

An `async def` handler (or a callable object whose `__call__` is one) does not get a worker
thread of its own: its call is a coroutine, submitted here, and the worker goes on with
other messages until the coroutine is done (see `Processor.begin` / `Processor.resume`). So
thousands of I/O-bound calls can wait at once on one thread.

Invariants:
- one loop, on one daemon thread, started by the first `submit`; every coroutine of every
  async handler runs on it, so async handlers never run concurrently with each other in the
  Python sense (only interleaved at their awaits);
- at most `concurrency` submitted calls run at once; the others wait for a place (in
  submission order), their time counted as the handler's;
- `cancel_all` cancels what is running or waiting; nothing else ever cancels a call (a
  shutdown cancels only what has outlived `shutdown_timeout`);
- a handler that blocks the loop (a sync sleep, a sync HTTP call) holds up every async
  handler: the loop's lag is watched and a blocked loop is logged, naming no handler (which
  one blocked cannot be known), once per episode.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

log = structlog.get_logger("vod_events.aio")


LAG_CHECK_SECONDS = 0.5
LAG_WARNING_SECONDS = 1.0  # a loop this late running a ready callback is blocked


class Completion:
    """How one submitted call ended: `error()` is None on success, its exception otherwise
    (CancelledError when it was cancelled). One callback, run once by whoever ends it.

    Lighter than concurrent.futures.Future (no Condition, no callback list): one is made per
    async handler call, on the hot path."""

    __slots__ = ("_callback", "_cancelled", "_done", "_error", "_lock", "_waiter")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._done = False
        self._cancelled = False
        self._error: BaseException | None = None
        self._callback: Callable[[], None] | None = None
        self._waiter: threading.Event | None = None

    def when_done(self, callback: Callable[[], None]) -> None:
        """Call `callback()` once the call has ended: at once if it has, else on the thread
        that ends it (the loop's, or a canceller's)."""
        with self._lock:
            if not self._done:
                self._callback = callback
                return
        callback()

    def wait(self) -> None:
        with self._lock:
            if self._done:
                return
            waiter = self._waiter = self._waiter or threading.Event()
        waiter.wait()

    def done(self) -> bool:
        return self._done

    def error(self) -> BaseException | None:
        if self._cancelled:
            return asyncio.CancelledError("cancelled at shutdown")
        return self._error

    def cancel(self) -> bool:
        """End it as cancelled, unless it has ended; True if this call ended it."""
        return self._end(None, cancelled=True)

    def _end(self, error: BaseException | None, *, cancelled: bool = False) -> bool:
        with self._lock:
            if self._done:
                return False
            self._done, self._error, self._cancelled = True, error, cancelled
            callback, waiter = self._callback, self._waiter
            self._callback = None
        if waiter is not None:
            waiter.set()
        if callback is not None:
            callback()
        return True


class AsyncRunner:
    """Runs async handler calls on one event-loop thread.

    concurrency: the most calls running at once (`[consumer] async_concurrency`).
    """

    def __init__(self, concurrency: int = 256, name: str = "vod-events-async") -> None:
        self.concurrency = concurrency
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._places: asyncio.Semaphore | None = None  # made on the loop's thread
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._incoming: list[tuple[Callable[[], Coroutine[Any, Any, None]], Completion]] = []
        self._tasks: dict[Completion, asyncio.Task[None]] = {}  # changed on the loop only
        self._closed = False

    def submit(self, make: Callable[[], Coroutine[Any, Any, None]]) -> Completion:
        """Run `make()`'s coroutine on the loop once a place is free; how it ends.

        Submissions queue here and the loop is woken only by the first of a burst: waking it
        is a write to its self-pipe and a loop iteration, which per message would cost more
        than starting the call."""
        loop = self._started()
        completion = Completion()
        with self._lock:
            self._incoming.append((make, completion))
            wake = len(self._incoming) == 1
        if wake:
            loop.call_soon_threadsafe(self._start_incoming)
        return completion

    def run(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run `make()`'s coroutine on the loop and wait for it here, raising what it raised
        (a blocking caller: an HTTP callback's thread, or a sync handler that returned an
        awaitable)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("AsyncRunner.run called on its own loop: it would wait forever")
        completion = self.submit(make)
        completion.wait()
        if (error := completion.error()) is not None:
            raise error

    def limit(self, name: str, limit: int) -> asyncio.Semaphore:
        """The semaphore holding handler `name` to `limit` calls at once (on the loop only)."""
        semaphore = self._limits.get(name)
        if semaphore is None:
            semaphore = self._limits[name] = asyncio.Semaphore(limit)
        return semaphore

    def cancel_all(self) -> int:
        """Cancel every call not finished; how many there were. They end as cancelled at
        once; their coroutines get CancelledError on the loop."""
        with self._lock:
            pending = [c for _, c in self._incoming] + list(self._tasks)
            loop = self._loop
        cancelled = sum(1 for completion in pending if completion.cancel())
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._cancel_tasks)
        return cancelled

    def close(self, timeout: float = 5.0) -> None:
        """Cancel what is left, stop the loop and its thread."""
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        self.cancel_all()
        with contextlib.suppress(Exception):  # a loop blocked by a handler: give up on it
            asyncio.run_coroutine_threadsafe(self._cancelled(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        if not thread.is_alive():
            loop.close()

    # ------------------------------------------------------------------ the loop

    def _started(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._closed:
                raise RuntimeError("the async runner is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(
                    target=self._run_loop, args=(loop, ready), name=self.name, daemon=True
                )
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    def _run_loop(self, loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        self._places = asyncio.Semaphore(self.concurrency)
        loop.call_soon(self._watch_lag, loop, time.monotonic() + LAG_CHECK_SECONDS, False)
        ready.set()
        loop.run_forever()

    def _start_incoming(self) -> None:
        with self._lock:
            incoming, self._incoming = self._incoming, []
            for make, completion in incoming:
                if not completion.done():
                    self._tasks[completion] = asyncio.ensure_future(self._bounded(make, completion))

    def _cancel_tasks(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()

    async def _cancelled(self) -> None:
        """Cancel every task and wait until each has unwound (before the loop stops)."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _bounded(
        self, make: Callable[[], Coroutine[Any, Any, None]], completion: Completion
    ) -> None:
        assert self._places is not None  # set before the loop ran anything
        error: BaseException | None = None
        cancelled = False
        try:
            async with self._places:
                await make()
        except asyncio.CancelledError:
            cancelled = True
        except BaseException as exc:  # as a sync handler's: whatever the coroutine raised
            error = exc
        with self._lock:
            del self._tasks[completion]
        completion._end(error, cancelled=cancelled)

    def _watch_lag(self, loop: asyncio.AbstractEventLoop, due: float, blocked: bool) -> None:
        lag = time.monotonic() - due
        if lag >= LAG_WARNING_SECONDS and not blocked:
            log.warning(
                "an async handler blocked the event loop: every async handler waited; "
                "use await (or asyncio.to_thread) for blocking calls",
                blocked_s=round(lag, 2),
            )
        next_due = time.monotonic() + LAG_CHECK_SECONDS
        loop.call_at(
            loop.time() + LAG_CHECK_SECONDS,
            self._watch_lag,
            loop,
            next_due,
            lag >= LAG_WARNING_SECONDS,
        )
