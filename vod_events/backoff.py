"""Backoff policies: how long to wait before trying again.

Small value objects so the consumer's loops read as "wait `policy.delay(n)`" and tests can pin
the numbers. All use "full jitter" (a random fraction of the exponential step) so that a fleet
of consumers that failed together does not retry together.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class ExponentialBackoff:
    """`initial * factor**(attempt-1)` capped at `maximum`, then jittered.

    `jitter` is the fraction of the delay that is random: 0 gives exact delays (tests),
    1 gives full jitter in [0, delay]. The default keeps at least half the delay so a backoff
    is never close to zero.
    """

    initial: float
    maximum: float
    factor: float = 2.0
    jitter: float = 0.5
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt + 1` (`attempt` counts from 1)."""
        exponent = min(max(attempt, 1) - 1, 64)  # the cap makes larger exponents pointless
        base = min(self.maximum, self.initial * self.factor**exponent)
        return base * (1.0 - self.jitter * self.rng.random())


@dataclass(frozen=True, slots=True)
class RedeliveryBackoff:
    """Visibility timeout for a message whose in-process retries are exhausted.

    Computed from the message's DequeueCount, which the queue keeps across crashes and
    restarts: a crash loop cannot reset it (docs/design.md rule 6). MNS accepts 1..43200 s.
    """

    initial: int = 10
    maximum: int = 3600
    policy: ExponentialBackoff = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "policy", ExponentialBackoff(float(self.initial), float(self.maximum))
        )

    def visibility_for(self, dequeue_count: int) -> int:
        return max(1, min(43200, round(self.policy.delay(dequeue_count))))
