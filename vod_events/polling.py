"""How many long polls to keep going: `PollerPolicy`, decisions from what receives saw.

`[consumer] pollers = "auto"` (the default) starts `AUTO_MAX_POLLERS` poller threads, of which
only the first `PollerPolicy.active` poll; the others wait until the policy lets them. After
every receive, its poller reports what it saw (`observe`) and the policy moves `active`
within [1, maximum]:

- up by one when a receive came back with a full batch that the free slots allowed while
  the workers were about to run out of messages (fewer than a batch waiting for them): the
  queue has a backlog and the pollers are what holds it back, so another request in flight
  adds throughput. At most once per round trip (the receive's own duration), so that each
  new poller's effect is seen first;
- down by one when the pollers are ahead of the workers (the slots were short, or a batch
  per polling poller already waits for a worker: more polls only add threads and CPU, and
  on a CPU-bound host take it from the workers), or the queue ran dry (a partial batch, or
  a long poll that waited its whole `wait_seconds`). At most once per
  `SHRINK_EVERY_SECONDS`, and never below `IDLE_POLLERS` for these reasons: one long poll
  is always waiting while the other is on its way back, so a new message is picked up at
  once;
- down by one, to as few as 1, when the server answered a long poll at once with nothing
  (MNS's per-IP cap on concurrent long polls: MessageNotExist at once), and no growth for
  `REFUSAL_HOLD_SECONDS` after that.

The policy is pure: no threads, no I/O, time from the `clock` it is given. The consumer calls
it under a lock of its own.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

MAX_BATCH = 16  # MNS's limit for a batch receive
AUTO: Final = "auto"
AUTO_MAX_POLLERS = 16  # `pollers = "auto"`: long polls at most (50 ms away: ~2,000 msg/s)
IDLE_POLLERS = 2  # shrinking for lack of work stops here; only refusals go lower
SHRINK_EVERY_SECONDS = 1.0
REFUSAL_HOLD_SECONDS = 30.0
# Growth waits at least this long between steps, whatever the round trip.
MIN_GROW_GAP_SECONDS = 0.005


@dataclass(frozen=True, slots=True)
class Receipt:
    """What one receive saw."""

    wanted: int  # messages asked for (the free slots taken, at most 16)
    got: int  # messages received
    seconds: float  # from sending the request to its answer
    slots_short: bool = False  # the poller had to wait for free slots, or got fewer than 16
    waiting: int = 0  # messages received earlier and waiting for a worker when it came back


class PollerPolicy:
    """How many pollers poll now (`active`), from the receives' `Receipt`s.

    `pinned`: a fixed number (`pollers = N`): `active` is always N and `observe` changes
    nothing. Otherwise `active` adapts within [1, maximum], starting at `start`.
    """

    def __init__(
        self,
        maximum: int,
        wait_seconds: int,
        *,
        pinned: bool = False,
        start: int = IDLE_POLLERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.maximum = max(1, maximum)
        self.wait_seconds = wait_seconds
        self.pinned = pinned
        self.active = self.maximum if pinned else max(1, min(start, self.maximum))
        self._clock = clock
        self._last_grow = -math.inf
        self._last_shrink = -math.inf
        self._hold_until = -math.inf
        self.refusals = 0  # long polls answered at once with nothing, counted

    def refused(self, receipt: Receipt) -> bool:
        """True if the server answered a long poll at once with nothing: too many wait."""
        return (
            receipt.got == 0
            and self.wait_seconds > 0
            and receipt.seconds < min(1.0, self.wait_seconds / 2)
        )

    def observe(self, receipt: Receipt) -> int:
        """Take one receive into account; returns the new `active`."""
        if self.pinned:
            return self.active
        now = self._clock()
        if self.refused(receipt):
            self.refusals += 1
            self._hold_until = now + REFUSAL_HOLD_SECONDS
            self._shrink(now, floor=1, every=0.0)
        elif (
            receipt.slots_short
            or receipt.waiting >= MAX_BATCH * self.active
            or receipt.got < receipt.wanted
        ):
            # the pollers are ahead of the workers, or the queue ran dry (a partial batch,
            # or a long poll that found nothing)
            self._shrink(now, floor=IDLE_POLLERS)
        elif receipt.wanted >= MAX_BATCH and receipt.waiting < MAX_BATCH:
            # a full batch, room for it, and the workers about to run dry: poll more
            self._grow(now, gap=max(MIN_GROW_GAP_SECONDS, min(receipt.seconds, 1.0)))
        return self.active

    def _grow(self, now: float, gap: float) -> None:
        if self.active >= self.maximum or now < self._hold_until or now - self._last_grow < gap:
            return
        self.active += 1
        self._last_grow = now

    def _shrink(self, now: float, floor: int, every: float = SHRINK_EVERY_SECONDS) -> None:
        floor = min(floor, self.maximum)
        if self.active <= floor or now - self._last_shrink < every:
            return
        self.active -= 1
        self._last_shrink = now


def poller_threads(pollers: int | str) -> int:
    """Poller threads to start: the number pinned, else `AUTO_MAX_POLLERS` (the policy
    decides how many of them poll)."""
    return AUTO_MAX_POLLERS if pollers == AUTO else max(1, int(pollers))


def auto_prefetch(pollers: int | str) -> int:
    """`prefetch = "auto"`: a full batch for each poller thread, so that every long poll in
    flight has its free slots (slots are taken before the request is sent)."""
    return MAX_BATCH * poller_threads(pollers)


def auto_deleters(pollers: int | str) -> int:
    """`deleters = "auto"`: one per two poller threads, at least 2 (a deleter sends a batch
    per round trip, as a poller receives one; deletes are fewer: one per message)."""
    return max(2, math.ceil(poller_threads(pollers) / 2))


def auto_extenders(capacity: int) -> int:
    """Heartbeat threads for `capacity` messages in flight: each extension is one round trip
    and a whole capacity may fall due at once (received together): 2, plus one per 128
    messages, at most 16 (2,048 in flight at 20 ms: ~2.6 s to extend them all)."""
    return max(2, min(16, math.ceil(capacity / 128)))
