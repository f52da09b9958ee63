"""Claims taken ahead: a received batch is decoded and its idempotency keys claimed in one
store call (`Processor.claim_ahead`), the run of each delivery takes its claims over, and
what a run does not use - or a delivery that never runs - is released at once.

Through a real Processor on a real SQLite store; "another process" is a second store on the
same file, as a second daemon on the host would be.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from helpers import idempotency_key as key
from helpers import processor, received

from vod_events.deadletter import DirectorySink
from vod_events.dedupe import Claim, ClaimState, SQLiteStore
from vod_events.events import VodEvent
from vod_events.processing import OutcomeStatus
from vod_events.retry import RetryPolicy
from vod_events.router import HandlerContext, Router


class CountingStore(SQLiteStore):
    """A SQLite store counting its claim calls."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batch_claims: list[list[str]] = []
        self.single_claims: list[str] = []

    def claim_many(self, keys: Sequence[str]) -> dict[str, Claim]:
        self.batch_claims.append(list(keys))
        return super().claim_many(keys)

    def claim(self, key: str) -> Claim:
        self.single_claims.append(key)
        return super().claim(key)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CountingStore]:
    store = CountingStore(tmp_path / "d.sqlite3")
    yield store
    store.close()


@pytest.fixture
def other(tmp_path: Path) -> Iterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "d.sqlite3")
    yield store
    store.close()


def recording(router: Router, name: str, calls: list[str], fail: bool = False) -> None:
    def handler(event: VodEvent, ctx: HandlerContext) -> None:
        calls.append(str(event.job_id))
        if fail:
            raise RuntimeError("down")

    router.add(handler, name=name)


def test_a_batch_is_claimed_in_one_call_and_each_run_takes_its_claims_over(
    store: CountingStore, other: SQLiteStore
) -> None:
    router, calls = Router(), list[str]()
    recording(router, "record", calls)
    p = processor(router, store=store)
    batch = [received(f"job-{i}") for i in range(5)]
    aheads = p.claim_ahead(batch)
    assert len(store.batch_claims) == 1
    # Claimed for this process now: another process's duplicate is deferred meanwhile.
    assert other.claim(key("job-0", "record")).state is ClaimState.IN_PROGRESS
    outcomes = [p.process(m, a) for m, a in zip(batch, aheads, strict=True)]
    assert [o.status for o in outcomes] == [OutcomeStatus.HANDLED] * 5
    assert store.single_claims == []  # every run used the claim taken ahead
    assert calls == [f"job-{i}" for i in range(5)]
    assert other.claim(key("job-3", "record")).state is ClaimState.COMPLETED


def test_the_same_event_twice_in_a_batch_runs_its_handler_once(store: CountingStore) -> None:
    router, calls = Router(), list[str]()
    recording(router, "record", calls)
    p = processor(router, store=store)
    first, second = received("job-1"), received("job-1")
    aheads = p.claim_ahead([first, second])
    assert aheads[1].claims == {}  # claimed for the first copy only
    assert p.process(first, aheads[0]).status is OutcomeStatus.HANDLED
    assert p.process(second, aheads[1]).status is OutcomeStatus.DUPLICATE
    assert calls == ["job-1"]


def test_keys_completed_before_are_known_ahead_and_skipped(store: CountingStore) -> None:
    router, calls = Router(), list[str]()
    recording(router, "record", calls)
    p = processor(router, store=store)
    p.process(received("job-1"))
    again = received("job-1", dequeue_count=2)  # redelivered after its handler completed
    [ahead] = p.claim_ahead([again])
    assert ahead.claims[key("job-1", "record")].state is ClaimState.COMPLETED
    claims_before = len(store.single_claims)
    assert p.process(again, ahead).status is OutcomeStatus.DUPLICATE
    assert len(store.single_claims) == claims_before
    assert calls == ["job-1"]


def test_claims_a_run_did_not_reach_are_released_when_it_ends(
    store: CountingStore, other: SQLiteStore
) -> None:
    router, first_calls, second_calls = Router(), list[str](), list[str]()
    recording(router, "first", first_calls, fail=True)  # fails: the second never runs
    recording(router, "second", second_calls)
    p = processor(router, store=store, retry=RetryPolicy(attempts=1))
    message = received("job-1")
    [ahead] = p.claim_ahead([message])
    assert set(ahead.claims) == {key("job-1", "first"), key("job-1", "second")}
    assert p.process(message, ahead).status is OutcomeStatus.RETRY
    assert second_calls == []
    # Both keys are free again at once, not after their lease.
    assert other.claim(key("job-1", "first")).state is ClaimState.CLAIMED
    assert other.claim(key("job-1", "second")).state is ClaimState.CLAIMED


def test_forget_releases_the_claims_of_a_delivery_that_never_runs(
    store: CountingStore, other: SQLiteStore
) -> None:
    p = processor(Router(), store=store)
    p.router.add(lambda event, ctx: None, name="record")
    [ahead] = p.claim_ahead([received("job-1")])
    p.forget(ahead)  # handed back unstarted at shutdown
    assert other.claim(key("job-1", "record")).state is ClaimState.CLAIMED
    p.forget(None)  # nothing taken ahead: nothing to do


def test_an_undecodable_body_in_a_batch_is_still_dead_lettered_with_its_reason(
    store: CountingStore, tmp_path: Path
) -> None:
    router, calls = Router(), list[str]()
    recording(router, "record", calls)
    p = processor(router, store=store, dead_letters=DirectorySink(tmp_path / "dead"))
    bad, good = received("bad", body="{not json"), received("job-1")
    aheads = p.claim_ahead([bad, good])
    assert aheads[0].event is None
    outcome = p.process(bad, aheads[0])
    assert outcome.status is OutcomeStatus.DEAD_LETTERED
    assert "undecodable" in outcome.reason
    assert p.process(good, aheads[1]).status is OutcomeStatus.HANDLED
    assert calls == ["job-1"]


def test_a_failed_batch_claim_leaves_every_claim_to_the_run(
    store: CountingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    router, calls = Router(), list[str]()
    recording(router, "record", calls)
    p = processor(router, store=store)

    def down(keys: Sequence[str]) -> dict[str, Claim]:
        raise OSError("disk I/O error")

    monkeypatch.setattr(store, "claim_many", down)
    message = received("job-1")
    [ahead] = p.claim_ahead([message])
    assert ahead.claims == {}
    assert p.process(message, ahead).status is OutcomeStatus.HANDLED
    assert store.single_claims == [key("job-1", "record")]
