"""A short run of the chaos suite (bench/chaos.py) in CI: real daemon processes SIGKILLed at
random moments against a local MNS server injecting faults; nothing may be lost."""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))

from chaos import ChaosReport, run_chaos


def check(report: ChaosReport) -> None:
    print(asdict(report))
    assert report.lost == 0
    assert report.handled_at_least_once == report.enqueued_events
    assert report.dead_lettered_poison == report.enqueued_poison
    assert report.poison_without_reason == 0
    assert report.dead_lettered_events == 0
    assert report.queue_left == 0
    assert set(report.final_exit_codes) == {0}
    # A duplicate needs a kill between a handler's return and its completion record.
    assert report.duplicate_handler_runs <= report.kills


def test_sigkill_chaos_with_sqlite_dedupe(tmp_path: Path) -> None:
    check(run_chaos(events=400, kills=5, fault_rate=0.1, work=tmp_path, drain_timeout=90))


@pytest.mark.parametrize("replicas", [2])
def test_sigkill_chaos_two_replicas_sharing_redis(tmp_path: Path, replicas: int) -> None:
    check(
        run_chaos(
            events=400,
            kills=4,
            replicas=replicas,
            dedupe="redis",
            fault_rate=0.1,
            work=tmp_path,
            drain_timeout=90,
        )
    )
