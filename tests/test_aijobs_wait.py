"""wait_for_jobs: polling ListAIJob until the jobs finish, through the real VOD SDK against the
local fake endpoint (tests/fake_vod.py) over HTTP. Time is a fake clock that only the injected
sleep moves, so the waits are asserted exactly without any test taking them.

The commands' `--wait` (exit codes, terminal output) are in tests/test_aijobs_wait_cli.py."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from fake_vod import NEVER, AIJobBook, FakeVod, Fault, throttling

from vod_events.aijobs import (
    AIJobInputError,
    Credentials,
    PollPolicy,
    VodApiError,
    WaitResult,
    list_ai_jobs,
    wait_for_jobs,
)
from vod_events.backoff import ExponentialBackoff
from vod_events.results import MediaDnaResult, VideoTagResult

CREDENTIALS = Credentials("LTAI-test-key-id", "test-secret")
# Exact delays: no jitter on the throttling backoff.
POLICY = PollPolicy(
    first_interval=2.0,
    factor=1.5,
    max_interval=5.0,
    call_spacing=0.5,
    throttle=ExponentialBackoff(initial=1.0, maximum=8.0, jitter=0.0),
)


@dataclass
class FakeTime:
    """A monotonic clock moved only by ``sleep``, which records every wait."""

    now: float = 500.0
    sleeps: list[float] = field(default_factory=list)

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


def wait(
    vod: FakeVod,
    fake_time: FakeTime,
    ids: list[str],
    timeout: float = 60.0,
    on_progress: Callable[[WaitResult], None] | None = None,
) -> WaitResult:
    return wait_for_jobs(
        ids,
        timeout=timeout,
        endpoint=vod.endpoint,
        credentials=CREDENTIALS,
        policy=POLICY,
        clock=fake_time.clock,
        sleep=fake_time.sleep,
        on_progress=on_progress,
    )


def test_jobs_that_finish_after_some_polls_give_typed_results(
    vod: FakeVod, book: AIJobBook, fake_time: FakeTime
) -> None:
    book.add("tag-1", type="AIVideoTag", polls=3)
    book.add("dna-1", type="AIMediaDNA", polls=1)

    done = wait(vod, fake_time, ["tag-1", "dna-1"])

    assert [(j.job_id, j.status) for j in done.jobs] == [("tag-1", "success"), ("dna-1", "success")]
    assert (done.timed_out, done.failed, done.running, done.not_found) == (False, [], [], [])
    assert done.all_succeeded
    assert isinstance(done.results["tag-1"], VideoTagResult)
    assert isinstance(done.results["dna-1"], MediaDnaResult)
    assert done.results["tag-1"].keyword[0].tag == "Cushion"  # the sample's data, decoded
    # Round 1 asks about both; a finished job is not asked about again.
    assert vod.job_ids_asked() == [["tag-1", "dna-1"], ["tag-1", "dna-1"], ["tag-1"], ["tag-1"]]
    # Rounds 2 s apart, then 1.5 times longer each time.
    assert fake_time.sleeps == [2.0, 3.0, 4.5]
    assert done.elapsed == pytest.approx(9.5)


def test_a_failed_job_is_reported_and_the_others_are_still_waited_for(
    vod: FakeVod, book: AIJobBook, fake_time: FakeTime
) -> None:
    book.add("bad-1", outcome="fail", code="InvalidMedia.NoVideoStream", message="No video.")
    book.add("tag-1", polls=2)

    done = wait(vod, fake_time, ["bad-1", "tag-1"])

    [failed] = done.failed
    assert (failed.job_id, failed.code, failed.message) == (
        "bad-1",
        "InvalidMedia.NoVideoStream",
        "No video.",
    )
    assert failed.result is None
    assert [j.job_id for j in done.succeeded] == ["tag-1"]
    assert not done.all_succeeded
    assert not done.timed_out
    assert vod.job_ids_asked() == [["bad-1", "tag-1"], ["tag-1"], ["tag-1"]]


def test_a_job_that_never_finishes_times_out_after_a_last_poll_at_the_deadline(
    vod: FakeVod, book: AIJobBook, fake_time: FakeTime
) -> None:
    book.add("tag-1", polls=1)
    book.add("stuck-1", outcome=NEVER)

    done = wait(vod, fake_time, ["tag-1", "stuck-1"], timeout=20.0)

    assert done.timed_out
    assert [(j.job_id, j.status) for j in done.running] == [("stuck-1", "processing")]
    assert [j.job_id for j in done.succeeded] == ["tag-1"]
    # 2 + 3 + 4.5 + 5 + 5 = 19.5, then the 0.5 s left: the last round is at the deadline.
    assert fake_time.sleeps == [2.0, 3.0, 4.5, 5.0, 5.0, 0.5]
    assert done.elapsed == pytest.approx(20.0)
    assert len(vod.job_ids_asked()) == 7
    assert vod.job_ids_asked()[-1] == ["stuck-1"]


def test_throttling_answers_are_backed_off_then_the_call_is_made_again(
    vod: FakeVod, book: AIJobBook, fake_time: FakeTime
) -> None:
    book.add("tag-1")
    vod.faults += [
        throttling("Throttling.User", 400),
        throttling("Throttling", 503),
        throttling("ServiceUnavailable", 503),
    ]

    done = wait(vod, fake_time, ["tag-1"])

    assert done.all_succeeded
    assert vod.actions() == ["ListAIJob"] * 4
    # 1, 2, 4 s for the 1st, 2nd and 3rd answer in a row.
    assert fake_time.sleeps == [1.0, 2.0, 4.0]


def test_the_wait_the_service_asks_for_is_respected(
    vod: FakeVod, book: AIJobBook, fake_time: FakeTime
) -> None:
    book.add("tag-1")
    vod.faults.append(throttling(retry_after_ms=6500))  # x-acs-retry-after, as the SDK reads it

    done = wait(vod, fake_time, ["tag-1"])

    assert done.all_succeeded
    assert fake_time.sleeps == [6.5]  # longer than the backoff's 1 s


def test_the_throttling_count_starts_again_after_an_answer(
    vod: FakeVod, book: AIJobBook, fake_time: FakeTime
) -> None:
    book.add("tag-1", polls=1)
    vod.faults += [throttling(at_call=1), throttling(at_call=3)]

    done = wait(vod, fake_time, ["tag-1"])

    assert done.all_succeeded
    assert vod.actions() == ["ListAIJob"] * 4
    # backoff 1 s, the answer (init), the round interval, then 1 s again rather than 2
    assert fake_time.sleeps == [1.0, 2.0, 1.0]


def test_throttled_until_the_deadline_is_a_timeout(
    vod: FakeVod, book: AIJobBook, fake_time: FakeTime
) -> None:
    book.add("tag-1")
    vod.faults += [throttling() for _ in range(10)]

    done = wait(vod, fake_time, ["tag-1"], timeout=10.0)

    assert done.timed_out
    assert [(j.job_id, j.status) for j in done.running] == [("tag-1", "unknown")]
    assert fake_time.sleeps == [1.0, 2.0, 4.0, 3.0]  # the next 8 s would pass the deadline
    assert done.elapsed == pytest.approx(10.0)


def test_other_service_errors_surface_at_once(
    vod: FakeVod, book: AIJobBook, fake_time: FakeTime
) -> None:
    book.add("tag-1", polls=5)
    vod.faults.append(
        Fault(403, {"Code": "Forbidden.RAM", "Message": "Not authorized.", "RequestId": "r-403"})
    )

    with pytest.raises(VodApiError) as caught:
        wait(vod, fake_time, ["tag-1"])

    assert (caught.value.code, caught.value.status_code, caught.value.throttled) == (
        "Forbidden.RAM",
        403,
        False,
    )
    assert vod.actions() == ["ListAIJob"]
    assert fake_time.sleeps == []


def test_a_server_error_that_is_not_throttling_surfaces(
    vod: FakeVod, book: AIJobBook, fake_time: FakeTime
) -> None:
    book.add("tag-1")
    vod.faults.append(Fault(500, {"Code": "InternalError", "RequestId": "r-500"}))
    with pytest.raises(VodApiError, match="InternalError"):
        wait(vod, fake_time, ["tag-1"])
    assert vod.actions() == ["ListAIJob"]


def test_an_unknown_id_stops_the_wait_after_the_round(
    vod: FakeVod, book: AIJobBook, fake_time: FakeTime
) -> None:
    book.add("tag-1", polls=1)
    book.add("tag-2")

    done = wait(vod, fake_time, ["tag-1", "nope-1", "tag-2"])

    assert [(j.job_id, j.status) for j in done.jobs] == [
        ("tag-1", "init"),
        ("nope-1", "not_found"),
        ("tag-2", "success"),
    ]
    assert [j.job_id for j in done.not_found] == ["nope-1"]
    assert [j.job_id for j in done.running] == ["tag-1"]
    assert not done.timed_out
    assert len(vod.job_ids_asked()) == 1
    assert fake_time.sleeps == []


def test_more_than_ten_ids_are_asked_ten_at_a_time_with_calls_spaced(
    vod: FakeVod, book: AIJobBook, fake_time: FakeTime
) -> None:
    ids = [f"tag-{i:02d}" for i in range(23)]
    for i, job_id in enumerate(ids):
        book.add(job_id, polls=1 if i % 2 else 0)  # the odd ones need a second round

    done = wait(vod, fake_time, ids)

    assert done.all_succeeded
    odd = ids[1::2]
    assert vod.job_ids_asked() == [ids[:10], ids[10:20], ids[20:], odd[:10], odd[10:]]
    # 0.5 s between two calls of a round; 2 s from the end of a round to the next.
    assert fake_time.sleeps == [0.5, 0.5, 2.0, 0.5]


def test_progress_is_reported_after_every_answer(
    vod: FakeVod, book: AIJobBook, fake_time: FakeTime
) -> None:
    book.add("tag-1", polls=1)
    seen: list[tuple[str, ...]] = []

    wait(
        vod,
        fake_time,
        ["tag-1"],
        on_progress=lambda s: seen.append(tuple(j.status for j in s.jobs)),
    )

    assert seen == [("init",), ("success",)]


def test_jobs_already_finished_take_one_call(
    vod: FakeVod, book: AIJobBook, fake_time: FakeTime
) -> None:
    book.add("tag-1")
    done = wait(vod, fake_time, ["tag-1", " ", "tag-1"])
    assert [j.job_id for j in done.jobs] == ["tag-1"]
    assert vod.job_ids_asked() == [["tag-1"]]
    assert fake_time.sleeps == []


@pytest.mark.parametrize("timeout", [0.0, -5.0, math.nan, math.inf])
def test_a_timeout_that_is_not_a_positive_number_is_an_input_error(
    vod: FakeVod, book: AIJobBook, fake_time: FakeTime, timeout: float
) -> None:
    with pytest.raises(AIJobInputError, match="timeout must be a positive number"):
        wait(vod, fake_time, ["tag-1"], timeout=timeout)
    assert vod.calls == []


def test_no_job_id_is_an_input_error(vod: FakeVod, fake_time: FakeTime) -> None:
    with pytest.raises(AIJobInputError, match="at least one job id"):
        wait(vod, fake_time, [])
    assert vod.calls == []


def test_list_ai_jobs_reads_the_fake_book_the_same_way(vod: FakeVod, book: AIJobBook) -> None:
    book.add("bad-1", outcome="fail")
    [job] = list_ai_jobs(["bad-1"], endpoint=vod.endpoint, credentials=CREDENTIALS)
    assert (job.status, job.finished, job.failed, job.code) == (
        "fail",
        True,
        True,
        "InvalidMedia.NoVideoStream",
    )
