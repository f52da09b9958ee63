"""Fault and latency injection of the local MNS server, seen through the SDK."""

from __future__ import annotations

import time
from typing import Any

import pytest
from mns.account import Account
from mns.mns_exception import MNSClientNetworkException, MNSServerException
from mns.queue import Message

from vod_events.mns_server import LocalMNSServer


def open_queue(server: LocalMNSServer) -> Any:
    queue = Account(server.endpoint, "id", "secret").get_queue("q")
    queue.set_encoding(False)
    return queue


def outcome_of_send(queue: Any, body: str) -> str:
    """ "ok", "InternalError" (a 500) or "dropped" (connection reset, no answer)."""
    try:
        queue.send_message(Message(body))
    except MNSServerException as error:
        return str(error.type)
    except MNSClientNetworkException as error:
        assert error.type == "NetWorkException"
        return "dropped"
    return "ok"


def outcomes(seed: int, fault_rate: float, count: int) -> list[str]:
    with LocalMNSServer(queues=("q",), fault_rate=fault_rate, seed=seed) as server:
        queue = open_queue(server)
        return [outcome_of_send(queue, f"m{i}") for i in range(count)]


def test_faults_are_half_errors_half_drops() -> None:
    seen = outcomes(seed=11, fault_rate=1.0, count=60)
    assert set(seen) == {"InternalError", "dropped"}
    assert 15 <= seen.count("dropped") <= 45  # about half of 60


def test_same_seed_same_faults() -> None:
    first = outcomes(seed=5, fault_rate=0.4, count=40)
    assert first == outcomes(seed=5, fault_rate=0.4, count=40)
    assert "ok" in first
    assert set(first) - {"ok"}  # and some faults too


def test_dropped_requests_were_carried_out_errors_were_not() -> None:
    with LocalMNSServer(queues=("q",), fault_rate=1.0, seed=3) as server:
        queue = open_queue(server)
        seen = [outcome_of_send(queue, f"m{i}") for i in range(30)]
        server.set_faults(fault_rate=0.0)
        # A dropped send happened (the client just never heard); a 500 did not.
        assert server.queue_info("q").active_messages == seen.count("dropped")


def test_set_faults_at_run_time() -> None:
    with LocalMNSServer(queues=("q",)) as server:
        queue = open_queue(server)
        assert outcome_of_send(queue, "before") == "ok"
        server.set_faults(fault_rate=1.0)
        assert outcome_of_send(queue, "during") in {"InternalError", "dropped"}
        server.set_faults(fault_rate=0.0)
        assert outcome_of_send(queue, "after") == "ok"
        with pytest.raises(ValueError, match="between 0 and 1"):
            server.set_faults(fault_rate=1.5)
        with pytest.raises(ValueError, match="negative"):
            server.set_faults(latency_ms=-1)


def test_latency_is_added_to_every_request() -> None:
    with LocalMNSServer(queues=("q",), latency_ms=150) as server:
        queue = open_queue(server)
        started = time.monotonic()
        for i in range(3):
            queue.send_message(Message(f"slow {i}"))
        # A lower bound only: injected latency is a minimum, never a promise of speed.
        assert time.monotonic() - started >= 3 * 0.15
        assert server.queue_info("q").active_messages == 3


def test_long_poll_cap_answers_at_once_with_message_not_exist() -> None:
    """As MNS does per IP: while `max_long_polls` receives wait, another long poll is
    answered at once with MessageNotExist; one that finds a message is not refused."""
    import threading

    with LocalMNSServer(queues=("q",), max_long_polls=1) as server:
        waiting, other = open_queue(server), open_queue(server)
        got: list[str] = []
        first = threading.Thread(
            target=lambda: got.append(waiting.receive_message(wait_seconds=10).message_body)
        )
        first.start()
        deadline = time.monotonic() + 5
        while server._api.long_polls < 1:  # the first long poll is waiting
            assert time.monotonic() < deadline
            time.sleep(0.01)
        started = time.monotonic()
        with pytest.raises(MNSServerException) as refused:
            other.receive_message(wait_seconds=10)
        assert refused.value.type == "MessageNotExist"
        assert time.monotonic() - started < 2  # at once, not after the wait
        other.send_message(Message("m1"))
        first.join(5)
        assert got == ["m1"]
        other.send_message(Message("m2"))  # a message is there: no wait, no refusal
        assert other.receive_message(wait_seconds=10).message_body == "m2"
        server.set_faults(max_long_polls=0)  # no cap: both may wait
        with pytest.raises(MNSServerException) as empty:
            other.receive_message(wait_seconds=1)
        assert empty.value.type == "MessageNotExist"
