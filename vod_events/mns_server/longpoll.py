"""Wake-ups for long-polling receives: one future per waiting request, no thread per wait.

A receive that finds its queue empty calls `wait(queue, timeout)`; the queue store calls
`wake(queue, n)` when n messages become visible there, which resolves the n oldest waits.
A woken receiver retries and may still find nothing (another receiver was quicker); it
then waits again. A receiver cancelled after being woken passes its wake-up on, so a
message never sits unseen while someone else is still waiting for it.

Must be used from the event loop's thread only.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class ArrivalSignals:
    """Per-queue FIFO of waiting receivers."""

    def __init__(self) -> None:
        self._waiting: dict[str, deque[asyncio.Future[bool]]] = {}

    def wake(self, queue: str, count: int) -> None:
        """Wake up to `count` receivers waiting on `queue`, oldest first."""
        waiting = self._waiting.get(queue)
        while waiting and count > 0:
            future = waiting.popleft()
            if not future.done():
                future.set_result(True)
                count -= 1
        if waiting is not None and not waiting:
            del self._waiting[queue]

    def waiting(self, queue: str) -> int:
        """How many receivers wait on `queue` now."""
        return len(self._waiting.get(queue, ()))

    async def wait(
        self, queue: str, timeout: float, abandon: asyncio.Future[None] | None = None
    ) -> bool:
        """Wait until woken (True), or until `timeout` seconds have passed or `abandon` is
        done (False). A wake-up that arrives for a waiter about to give up is passed on."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiting.setdefault(queue, deque()).append(future)
        timer = loop.call_later(max(timeout, 0.0), _expire, future)

        def give_up(_: asyncio.Future[None]) -> None:
            _expire(future)

        if abandon is not None:
            abandon.add_done_callback(give_up)
        try:
            woken = await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.result():
                self.wake(queue, 1)  # we were woken but will not look: pass it on
            raise
        finally:
            timer.cancel()
            if abandon is not None:
                abandon.remove_done_callback(give_up)
            self._forget(queue, future)
        if woken and abandon is not None and abandon.done():
            self.wake(queue, 1)
            return False
        return woken

    def _forget(self, queue: str, future: asyncio.Future[bool]) -> None:
        waiting = self._waiting.get(queue)
        if waiting is None:
            return
        with contextlib.suppress(ValueError):  # already taken off by wake()
            waiting.remove(future)
        if not waiting:
            del self._waiting[queue]


def _expire(future: asyncio.Future[bool]) -> None:
    if not future.done():
        future.set_result(False)
