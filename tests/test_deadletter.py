"""Dead letters: the directory and queue targets, the `dlq` command, a failing target, and
the whole pipeline fuzzed with random bodies (every one dead-lettered, never a crash)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import event_body, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vod_events import cli
from vod_events.deadletter import DeadLetter, DirectorySink, QueueSink
from vod_events.mns_server import LocalMNSServer
from vod_events.processing import OutcomeStatus, Processor
from vod_events.router import Router
from vod_events.stats import Stats
from vod_events.transports import ReceivedMessage
from vod_events.transports.mns import MNSTransport

KEY_ID, SECRET = "dlq-key", "dlq-secret"


def message(body: str, message_id: str = "M1", dequeue_count: int = 1) -> ReceivedMessage:
    return ReceivedMessage(
        message_id=message_id,
        receipt_handle="h",
        body=body,
        dequeue_count=dequeue_count,
        enqueue_time_ms=1_700_000_000_000,
        first_dequeue_time_ms=1_700_000_001_000,
        next_visible_time_ms=0,
    )


def processor(sink: object, router: Router | None = None) -> Processor:
    return Processor(
        router or Router(),
        stats=Stats(),
        stopping=threading.Event(),
        source="events",
        dead_letters=sink,  # type: ignore[arg-type]
    )


def letter(body: str, reason: str, message_id: str) -> DeadLetter:
    return DeadLetter(
        body=body,
        reason=reason,
        source_queue="events",
        message_id=message_id,
        dequeue_count=2,
        enqueue_time="2026-11-22T00:00:00.000+00:00",
        first_failure="2026-11-22T00:00:01.000+00:00",
        last_failure="2026-11-22T00:00:02.000+00:00",
    )


def test_directory_sink_writes_atomically_and_reads_back(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path / "dl")
    sink.put(letter('{"x": 1}', "undecodable: no EventType", "M1"))
    files = list((tmp_path / "dl").iterdir())
    assert len(files) == 1 and not files[0].name.startswith(".tmp")
    [back] = list(sink.list())
    assert back.body == '{"x": 1}'
    assert back.reason == "undecodable: no EventType"
    assert back.letter_id == files[0].name
    sink.remove(back.letter_id)
    assert list(sink.list()) == []


class _Broken:
    def put(self, letter: DeadLetter) -> None:
        raise OSError("disk full")


def test_failed_dead_letter_write_keeps_the_message_in_the_queue() -> None:
    outcome = processor(_Broken()).process(message("garbage"))
    assert outcome.delete is False
    assert outcome.status is OutcomeStatus.RETRY
    assert "dead-letter write failed: disk full" in outcome.reason


class _Collect:
    def __init__(self) -> None:
        self.letters: list[DeadLetter] = []

    def put(self, letter: DeadLetter) -> None:
        self.letters.append(letter)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=st.text(max_size=300) | st.binary(max_size=300).map(lambda b: b.hex()))
def test_fuzzed_bodies_are_dead_lettered_never_crash(body: str) -> None:
    sink = _Collect()
    router = Router()
    router.add(lambda event, ctx: None)
    outcome = processor(sink, router).process(message(body))
    assert outcome.delete is True
    if outcome.status is OutcomeStatus.DEAD_LETTERED:
        assert sink.letters[0].body == body
        assert sink.letters[0].reason.startswith("undecodable: ")
    else:  # hypothesis found a body that really is an event
        assert outcome.status is OutcomeStatus.HANDLED


@pytest.fixture
def server() -> Iterator[LocalMNSServer]:
    with LocalMNSServer(
        queues=("events", "events-dlq"), access_key_id=KEY_ID, access_key_secret=SECRET
    ) as srv:
        yield srv


def transport(server: LocalMNSServer, queue: str) -> MNSTransport:
    return MNSTransport(server.endpoint, queue, access_key_id=KEY_ID, access_key_secret=SECRET)


def write_config(tmp_path: Path, server: LocalMNSServer, dead_letter: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(
        f'[mns]\nendpoint = "{server.endpoint}"\nqueue = "events"\n'
        f'access_key_id = "{KEY_ID}"\naccess_key_secret = "{SECRET}"\n'
        f'[state]\ndir = "{tmp_path / "state"}"\n[dead_letter]\n{dead_letter}\n'
    )
    path.chmod(0o600)
    return path


def test_dlq_list_and_replay_from_a_directory(
    tmp_path: Path, server: LocalMNSServer, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "dl"
    config = write_config(tmp_path, server, f'dir = "{directory}"')
    sink = DirectorySink(directory)
    sink.put(letter(event_body("a"), "handler: permanent failure: bad media", "M-A"))
    sink.put(letter("not json", "undecodable: not JSON", "M-B"))

    assert cli.main(["dlq", "--config", str(config), "list"]) == 0
    out = capsys.readouterr().out
    assert "reason:   handler: permanent failure: bad media" in out
    assert "reason:   undecodable: not JSON" in out
    assert "2 dead letter(s)" in out

    [first] = [h for h in sink.list() if h.message_id == "M-A"]
    assert cli.main(["dlq", "--config", str(config), "replay", "--id", first.letter_id]) == 0
    [back] = transport(server, "events").receive(16, 1)
    assert back.body == event_body("a")  # unchanged
    assert [h.message_id for h in sink.list()] == ["M-B"]  # only the replayed one removed


def test_dlq_replay_failure_keeps_the_letter(
    tmp_path: Path, server: LocalMNSServer, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "dl"
    config = write_config(tmp_path, server, f'dir = "{directory}"')
    orphan = letter("x", "reason", "M-C")
    DirectorySink(directory).put(
        DeadLetter(**{**orphan.to_json(), "source_queue": "queue-that-is-gone"})
    )
    assert cli.main(["dlq", "--config", str(config), "replay", "--all"]) == 1
    assert "QueueNotExist" in capsys.readouterr().err
    assert len(list(DirectorySink(directory).list())) == 1


def test_dlq_on_a_queue_keeps_reasons_and_replays(
    tmp_path: Path, server: LocalMNSServer, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, server, 'queue = "events-dlq"')
    sink = QueueSink(lambda: transport(server, "events-dlq"))
    body = event_body("q")
    router = Router()
    router.add(lambda event, ctx: None, name="never-reached")
    proc = processor(sink, router)
    outcome = proc.process(message(body, "ORIG-1", dequeue_count=11))
    assert outcome.status is OutcomeStatus.DEAD_LETTERED

    assert cli.main(["dlq", "--config", str(config), "list", "--json"]) == 0
    [row] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert row["body"] == body
    assert row["message_id"] == "ORIG-1"
    assert row["source_queue"] == "events"
    assert row["dequeue_count"] == 11
    assert row["reason"] == "delivered 11 times (0 deferred), more than max_deliveries=10"
    assert row["first_failure"] == "2023-11-14T22:13:21.000+00:00"

    # listing handed it back; replay sends it to the source queue and removes it
    dlq = transport(server, "events-dlq")
    wait_for(lambda: dlq.queue_info().active_messages == 1, what="listed letter back in view")
    assert cli.main(["dlq", "--config", str(config), "replay", "--all"]) == 0
    [back] = transport(server, "events").receive(16, 1)
    assert back.body == body
    assert transport(server, "events-dlq").receive(16, 2) == []
