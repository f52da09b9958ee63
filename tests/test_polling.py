"""`PollerPolicy`: how many long polls to keep going, from what the receives saw."""

from __future__ import annotations

from helpers import ManualClock

from vod_events.polling import (
    AUTO_MAX_POLLERS,
    IDLE_POLLERS,
    REFUSAL_HOLD_SECONDS,
    SHRINK_EVERY_SECONDS,
    PollerPolicy,
    Receipt,
    auto_deleters,
    auto_extenders,
    auto_prefetch,
    poller_threads,
)

FULL = Receipt(wanted=16, got=16, seconds=0.01)
PARTIAL = Receipt(wanted=16, got=3, seconds=0.01)
TIMED_OUT = Receipt(wanted=16, got=0, seconds=20.0)  # a long poll that waited it out
REFUSED = Receipt(wanted=16, got=0, seconds=0.01)  # nothing, at once: too many long polls
SHORT = Receipt(wanted=16, got=16, seconds=0.01, slots_short=True)


def policy(maximum: int = 8, **kwargs: object) -> tuple[PollerPolicy, ManualClock]:
    clock = ManualClock()
    return PollerPolicy(maximum, wait_seconds=20, clock=clock, **kwargs), clock  # type: ignore[arg-type]


def test_starts_with_two_and_grows_one_per_round_trip_on_full_batches() -> None:
    p, clock = policy()
    assert p.active == IDLE_POLLERS
    assert p.observe(FULL) == 3
    assert p.observe(FULL) == 3  # the same round trip: the new poller's effect comes first
    clock.advance(0.01)
    assert p.observe(FULL) == 4


def test_growth_stops_at_the_maximum() -> None:
    p, clock = policy(maximum=5)
    for _ in range(20):
        clock.advance(0.02)
        p.observe(FULL)
    assert p.active == 5


def test_no_growth_when_slots_are_short_and_shrinks_slowly() -> None:
    p, clock = policy(start=6)
    assert p.observe(SHORT) == 5  # the workers are the bottleneck
    assert p.observe(SHORT) == 5  # at most once per SHRINK_EVERY_SECONDS
    clock.advance(SHRINK_EVERY_SECONDS)
    assert p.observe(SHORT) == 4


def test_a_partial_batch_or_an_empty_long_poll_shrinks_down_to_two() -> None:
    p, clock = policy(start=4)
    assert p.observe(PARTIAL) == 3
    clock.advance(SHRINK_EVERY_SECONDS)
    assert p.observe(TIMED_OUT) == 2
    for _ in range(5):
        clock.advance(SHRINK_EVERY_SECONDS)
        p.observe(TIMED_OUT)
    assert p.active == IDLE_POLLERS  # one always waiting while the other comes back


def test_a_smaller_batch_asked_for_and_filled_does_not_grow() -> None:
    p, _ = policy()
    assert p.observe(Receipt(wanted=4, got=4, seconds=0.01)) == 2


def test_refusals_back_off_to_one_and_hold_growth() -> None:
    p, clock = policy(start=6)
    assert p.refused(REFUSED) and not p.refused(TIMED_OUT) and not p.refused(PARTIAL)
    for expected in (5, 4, 3, 2, 1, 1):  # each refusal: one fewer, without waiting
        assert p.observe(REFUSED) == expected
    assert p.refusals == 6
    clock.advance(REFUSAL_HOLD_SECONDS - 1)
    assert p.observe(FULL) == 1  # held: growing would only be refused again
    clock.advance(1)
    assert p.observe(FULL) == 2  # the hold is over: probe again


def test_wait_seconds_zero_never_counts_as_a_refusal() -> None:
    p = PollerPolicy(8, wait_seconds=0, clock=ManualClock())
    assert not p.refused(REFUSED)


def test_pinned_never_moves() -> None:
    p, clock = policy(maximum=3, pinned=True)
    assert p.active == 3
    for receipt in (REFUSED, PARTIAL, SHORT, FULL):
        clock.advance(60)
        assert p.observe(receipt) == 3


def test_derived_counts() -> None:
    assert poller_threads("auto") == AUTO_MAX_POLLERS
    assert poller_threads(3) == 3
    assert auto_prefetch("auto") == 16 * AUTO_MAX_POLLERS
    assert auto_prefetch(1) == 16
    assert auto_deleters(1) == 2
    assert auto_deleters(6) == 3
    assert auto_deleters("auto") == AUTO_MAX_POLLERS // 2
    assert auto_extenders(32) == 2
    assert auto_extenders(272) == 3
    assert auto_extenders(2048) == 16
    assert auto_extenders(100_000) == 16


def test_no_growth_while_a_batch_waits_for_workers_and_shrink_when_a_batch_per_poller_waits() -> (
    None
):
    p, clock = policy(start=3)
    assert p.observe(Receipt(wanted=16, got=16, seconds=0.01, waiting=16)) == 3  # fed enough
    clock.advance(0.02)
    assert p.observe(Receipt(wanted=16, got=16, seconds=0.01, waiting=15)) == 4  # running dry
    clock.advance(SHRINK_EVERY_SECONDS)
    assert p.observe(Receipt(wanted=16, got=16, seconds=0.01, waiting=64)) == 3  # ahead
