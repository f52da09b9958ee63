"""A short run of the chaos suite (bench/chaos.py) in `make test`: real daemon processes at
the default settings, SIGKILLed at random moments and while slow handlers run, against a
local MNS server injecting faults. Nothing may be lost; no handler may run twice, unless its
first run's process was killed between the handler's return and the store recording it; a
crash is recovered within the queue's visibility timeout + 10 s and a concurrent duplicate
within 10 s of its first copy completing. With a transactional handler on the postgres
store, which inserts one row per call into a table without a unique constraint, the rows
must be exactly one per event.

The queue's VisibilityTimeout is 5 s here (30 s in `make chaos`), so that slow handlers -
longer than it - keep the run short; the daemons use whatever the queue has, as by default.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from dataclasses import MISSING, asdict, fields, replace
from pathlib import Path
from typing import Any

import pytest
from helpers import pg_query

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from chaos import (
    Call,
    Calls,
    ChaosReport,
    Effects,
    Kill,
    rollback_gaps,
    run_chaos,
    run_schema,
    split_ends,
)

BENCH = Path(__file__).resolve().parent.parent / "bench"
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


def test_sigkill_chaos_with_an_async_handler(tmp_path: Path) -> None:
    """The same run with an `async def` handler (chaos_handler.record_async), awaited on the
    daemon's event loop while its workers go on: the same guarantees, slow async calls kept
    by the heartbeat past the visibility timeout, SIGKILLs cutting short calls that no
    worker waits for."""
    report = short_run(tmp_path, async_handler=True)
    check(report)
    assert report.async_handler
    assert report.handler_calls_cut_short >= 1


def test_an_async_handler_cannot_be_transactional() -> None:
    with pytest.raises(ValueError, match="must be sync"):
        run_chaos(events=1, kills=0, dedupe="postgres", transactional=True, async_handler=True)
    flags = ["--dedupe", "postgres", "--transactional", "--async-handler"]
    refused = subprocess.run(
        [sys.executable, str(BENCH / "chaos.py"), *flags],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "a transactional handler must be sync" in refused.stderr


def test_sigkill_chaos_two_replicas_sharing_redis(tmp_path: Path, redis_url: str) -> None:
    report = short_run(tmp_path, replicas=2, dedupe="redis", redis_url=redis_url)
    check(report)
    # The run deleted its own keys, found under the names it rebuilt: one completed claim
    # per event at least, so those names are the ones the daemons wrote.
    assert report.redis_keys_deleted is not None
    assert report.redis_keys_deleted >= report.enqueued_events


def test_sigkill_chaos_two_replicas_transactional_postgres(
    tmp_path: Path, postgres_url: str
) -> None:
    with run_schema(postgres_url, transactional=True) as schema:
        report = short_run(
            tmp_path,
            replicas=2,
            dedupe="postgres",
            transactional=True,
            postgres_url=postgres_url,
            postgres_schema=schema,
        )
    check(report)
    # The rows of chaos_effects (no unique constraint), one per handler call that committed:
    # exactly one per event, though kills cut calls short mid-transaction and runs ran again.
    assert report.effects_rows == report.enqueued_events == report.handled_at_least_once
    assert report.effects_events == report.enqueued_events
    assert report.effects_jobs_with_several_rows == []
    assert report.effects_unknown_jobs == 0
    assert report.effects_without_end == 0
    assert report.duplicate_handler_runs == 0
    assert report.handler_calls_cut_short >= 1
    # The run's schema was its own, and is gone.
    assert report.postgres_schema is not None
    assert report.postgres_schema.startswith("chaos_")
    gone = "SELECT count(*) FROM pg_namespace WHERE nspname = %s"
    assert pg_query(postgres_url, gone, report.postgres_schema) == [(0,)]


def test_an_ended_run_without_its_row_is_a_rollback_not_a_duplicate() -> None:
    """The transactional accounting: an `end` line whose run has no row was rolled back (its
    process SIGKILLed before the commit); a second row for one job fails the run."""
    calls = Calls(Path("/nonexistent"))
    calls.all = [
        Call("start", "job-a", "m1", 1, 100, 10.0),
        Call("end", "job-a", "m1", 1, 100, 10.5),  # then pid 100 is killed: rolled back
        Call("start", "job-a", "m1", 2, 200, 50.0),
        Call("end", "job-a", "m1", 2, 200, 50.5),  # committed
        Call("start", "job-b", "m2", 1, 200, 51.0),
        Call("end", "job-b", "m2", 1, 200, 51.5),  # committed
    ]
    effects = Effects(
        rows=2,
        jobs=2,
        several=[],
        per_run=Counter({("job-a", "m1", 200): 1, ("job-b", "m2", 200): 1}),
    )
    committed, rolled_back, unaccounted = split_ends(calls, effects)
    assert sorted(c.pid for c in committed) == [200, 200]
    assert [(c.job, c.pid) for c in rolled_back] == [("job-a", 100)]
    assert unaccounted == 0
    kill = Kill(
        pid=100, log=Path("daemon-000.log"), at=10.52, during_slow_handler=False, cut_short=()
    )
    assert rollback_gaps(rolled_back, [kill]) == ([20], 0)
    assert rollback_gaps(rolled_back, []) == ([], 1)

    required: dict[str, Any] = {
        f.name: 0
        for f in fields(ChaosReport)
        if f.default is MISSING and f.default_factory is MISSING
    }
    report = ChaosReport(
        **{
            **required,
            "kill_window_ms": [],
            "final_exit_codes": [],
            "enqueued_events": 2,
            "handled_at_least_once": 2,
            "transactional": True,
            "effects_rows": 2,
            "effects_events": 2,
            "effects_unknown_jobs": 0,
            "effects_without_end": 0,
        }
    )
    assert report.effects_failures == []
    twice = replace(report, effects_rows=3, effects_jobs_with_several_rows=[("job-a", 2)])
    assert any("jobs with several rows" in f for f in twice.effects_failures)
    assert any("3 rows in chaos_effects for 2 events" in f for f in twice.failures)
