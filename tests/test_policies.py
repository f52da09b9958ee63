"""The small policy objects: handler retry and the backoffs."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import pytest

from vod_events.backoff import ExponentialBackoff, RedeliveryBackoff
from vod_events.errors import PermanentError
from vod_events.retry import RetryPolicy

FAST = RetryPolicy(attempts=4, max_seconds=30, initial_wait=0.001, max_wait=0.002)


def flaky(failures: int, calls: list[int]) -> Callable[[], str]:
    def call() -> str:
        calls.append(1)
        if len(calls) <= failures:
            raise ConnectionError(f"failure {len(calls)}")
        return "done"

    return call


def test_first_try_success_needs_no_retry() -> None:
    calls: list[int] = []
    retried: list[int] = []
    result = FAST.call(
        flaky(0, calls), stopping=threading.Event(), on_retry=lambda n, e: retried.append(n)
    )
    assert (result, calls, retried) == ("done", [1], [])


def test_failures_are_retried_and_reported_in_order() -> None:
    calls: list[int] = []
    retried: list[tuple[int, str]] = []
    result = FAST.call(
        flaky(2, calls),
        stopping=threading.Event(),
        on_retry=lambda n, e: retried.append((n, str(e))),
    )
    assert result == "done"
    assert len(calls) == 3
    assert retried == [(1, "failure 1"), (2, "failure 2")]


def test_attempts_bound_the_calls_and_the_last_error_is_raised() -> None:
    calls: list[int] = []
    with pytest.raises(ConnectionError, match="failure 4"):
        FAST.call(flaky(99, calls), stopping=threading.Event())
    assert len(calls) == 4


def test_permanent_error_is_never_retried() -> None:
    calls: list[int] = []

    def refuse() -> None:
        calls.append(1)
        raise PermanentError("no")

    with pytest.raises(PermanentError):
        FAST.call(refuse, stopping=threading.Event())
    assert calls == [1]


def test_time_bound_counts_from_the_first_try() -> None:
    calls: list[int] = []

    def slow_failure() -> None:
        calls.append(1)
        time.sleep(0.3)
        raise TimeoutError("slow")

    policy = RetryPolicy(attempts=10, max_seconds=0.5, initial_wait=0.001, max_wait=0.001)
    with pytest.raises(TimeoutError):
        policy.call(slow_failure, stopping=threading.Event())
    assert len(calls) == 2  # 0.3 s, then 0.6 s: past the bound


def test_shutdown_cuts_retries_short() -> None:
    calls: list[int] = []
    stopping = threading.Event()
    stopping.set()
    policy = RetryPolicy(attempts=10, initial_wait=5, max_wait=5)
    with pytest.raises(ConnectionError):
        policy.call(flaky(99, calls), stopping=stopping)
    assert len(calls) == 1


def test_exponential_backoff_grows_caps_and_jitters() -> None:
    exact = ExponentialBackoff(initial=1, maximum=10, jitter=0)
    assert [exact.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    jittered = ExponentialBackoff(initial=1, maximum=10, jitter=0.5, rng=random.Random(1))
    delays = [jittered.delay(3) for _ in range(50)]
    assert all(2 <= d <= 4 for d in delays)
    assert len(set(delays)) > 1


def test_redelivery_backoff_follows_the_dequeue_count_within_mns_limits() -> None:
    policy = RedeliveryBackoff(initial=10, maximum=3600)
    assert 5 <= policy.visibility_for(1) <= 10
    assert 40 <= policy.visibility_for(4) <= 80
    assert 1800 <= policy.visibility_for(50) <= 3600
    assert RedeliveryBackoff(initial=1, maximum=1).visibility_for(1) == 1
