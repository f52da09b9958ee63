"""`OutcomeStatus`: the statuses users see in logs and dead-letter reasons keep their strings."""

from __future__ import annotations

from vod_events.processing import OutcomeStatus


def test_the_status_strings_are_unchanged() -> None:
    assert [s.value for s in OutcomeStatus] == [
        "handled",
        "unhandled",
        "duplicate",
        "dead_lettered",
        "retry",
        "deferred",
    ]


def test_a_status_formats_as_its_plain_value() -> None:
    status = OutcomeStatus.DEAD_LETTERED
    assert (str(status), f"{status}", f"({status}: x)") == (
        "dead_lettered",
        "dead_lettered",
        "(dead_lettered: x)",
    )
    assert status == "dead_lettered"
