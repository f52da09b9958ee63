"""A short run of the chaos suite (bench/chaos.py) in `make test`: real daemon processes at
the default settings, SIGKILLed at random moments and while slow handlers run, against a
local MNS server injecting faults. Nothing may be lost; no handler may run twice, unless its
first run's process was killed between the handler's return and the store recording it; a
crash is recovered within the queue's visibility timeout + 10 s and a concurrent duplicate
within 10 s of its first copy completing.

The queue's VisibilityTimeout is 5 s here (30 s in `make chaos`), so that slow handlers -
longer than it - keep the run short; the daemons use whatever the queue has, as by default.
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from chaos import ChaosReport, run_chaos

KILLS = 6


def short_run(work: Path, **extra: Any) -> ChaosReport:
    return run_chaos(
        events=400,
        kills=KILLS,
        fault_rate=0.1,
        visibility_timeout=5,
        slow_events=2,
        final_duplicates=6,
        drain_timeout=120.0,
        work=work,
        **extra,
    )


def check(report: ChaosReport) -> None:
    print(asdict(report))
    assert report.lost == 0
    assert report.handled_at_least_once == report.enqueued_events
    # A second run of one event's handler is allowed only where the first one's process was
    # SIGKILLed in the milliseconds between the handler's return and the store recording it
    # (at least once, by design); any other would be the engine's fault.
    assert report.duplicate_handler_runs == report.duplicate_runs_in_kill_window
    assert report.dead_lettered_poison == report.enqueued_poison
    assert report.poison_without_reason == 0
    assert report.dead_lettered_events == 0
    assert report.queue_left == 0
    assert set(report.final_exit_codes) == {0}
    assert report.kills == KILLS
    assert report.kills_during_slow_handlers >= 1
    assert report.slow_runs_completed >= 1
    assert report.crash_recovery_max is not None
    assert report.crash_recovery_max <= report.visibility_timeout + 10
    assert report.duplicate_resolved_max is not None
    assert report.duplicate_resolved_max <= 10
    assert not report.failures, report.failures


def test_sigkill_chaos_with_sqlite_dedupe(tmp_path: Path) -> None:
    check(short_run(tmp_path))


def test_sigkill_chaos_two_replicas_sharing_redis(tmp_path: Path, redis_url: str) -> None:
    report = short_run(tmp_path, replicas=2, dedupe="redis", redis_url=redis_url)
    check(report)
    # The run deleted its own keys, found under the names it rebuilt: one completed claim
    # per event at least, so those names are the ones the daemons wrote.
    assert report.redis_keys_deleted is not None
    assert report.redis_keys_deleted >= report.enqueued_events
