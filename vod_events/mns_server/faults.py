"""Fault and latency injection: how the local server imitates an unreliable network.

For each request, with probability `fault_rate`, one of two faults happens, equally often:

* ERROR - the request is not carried out; the answer is 500 InternalError (proper XML);
* DROP  - the request IS carried out, then the connection is reset without an answer, like a
          response lost on the way. The SDK reports a NetWorkException, and the client cannot
          know whether its send, receive or delete happened.

`latency_ms` is added to every request, half before it is carried out and half after, like
the two halves of a network round trip. `max_long_polls` (0: no cap) imitates MNS's cap on
concurrent long polls from one IP: a receive that would wait while that many wait already is
answered at once with MessageNotExist (locally, every client counts as the same IP). A `seed`
makes the sequence of faults reproducible (for a given order of requests).
"""

from __future__ import annotations

import enum
import random


class Fault(enum.Enum):
    """What goes wrong with one request."""

    ERROR = "error"
    DROP = "drop"


class FaultInjector:
    """The current fault rate and latency, adjustable while the server runs.

    `set` may be called from any thread; `draw` only from the event loop's thread.
    """

    def __init__(
        self,
        fault_rate: float = 0.0,
        latency_ms: float = 0.0,
        seed: int | None = None,
        max_long_polls: int = 0,
    ):
        self._random = random.Random(seed)
        self.fault_rate = 0.0
        self.latency_ms = 0.0
        self.max_long_polls = 0
        self.set(fault_rate=fault_rate, latency_ms=latency_ms, max_long_polls=max_long_polls)

    def set(
        self,
        fault_rate: float | None = None,
        latency_ms: float | None = None,
        max_long_polls: int | None = None,
    ) -> None:
        """Change the fault rate, the latency and/or the long-poll cap (None leaves a value
        as it is)."""
        if fault_rate is not None:
            if not 0.0 <= fault_rate <= 1.0:
                raise ValueError(f"fault rate must be between 0 and 1, not {fault_rate}")
            self.fault_rate = fault_rate
        if latency_ms is not None:
            if latency_ms < 0:
                raise ValueError(f"latency must not be negative, not {latency_ms} ms")
            self.latency_ms = latency_ms
        if max_long_polls is not None:
            if max_long_polls < 0:
                raise ValueError(f"long-poll cap must not be negative, not {max_long_polls}")
            self.max_long_polls = max_long_polls

    def draw(self) -> Fault | None:
        """The fault for the next request, or None."""
        if self.fault_rate <= 0.0 or self._random.random() >= self.fault_rate:
            return None
        return Fault.ERROR if self._random.random() < 0.5 else Fault.DROP
