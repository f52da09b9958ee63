"""Dead-letter policy of the local MNS server: messages received too often move to the
target queue with the service's DLQ system properties."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mns.account import Account
from mns.message_property import MessagePropertyValue
from mns.mns_exception import MNSServerException
from mns.queue import Message

from vod_events.mns_server import LocalMNSServer
from vod_events.mns_server.model import ACCOUNT_ID


@pytest.fixture
def server() -> Iterator[LocalMNSServer]:
    with LocalMNSServer(dead_letter=[("events", "events-dlq", 2)]) as srv:
        yield srv


def open_queue(server: LocalMNSServer, name: str) -> Any:
    queue = Account(server.endpoint, "id", "secret").get_queue(name)
    queue.set_encoding(False)
    return queue


def fail_once(queue: Any) -> Any:
    """Receive a message and give it back at once, as a failing handler would."""
    message = queue.receive_message(wait_seconds=1)
    queue.change_message_visibility(message.receipt_handle, 0)
    return message


def test_message_moves_after_max_receive_count(server: LocalMNSServer) -> None:
    events, dead = open_queue(server, "events"), open_queue(server, "events-dlq")
    original = Message("poison")
    original.add_user_property("job", MessagePropertyValue.create_string("j-9"))
    sent = events.send_message(original)

    assert fail_once(events).dequeue_count == 1
    assert fail_once(events).dequeue_count == 2  # the last receive allowed
    with pytest.raises(MNSServerException) as moved:
        events.receive_message(wait_seconds=0)
    assert moved.value.type == "MessageNotExist"

    dead_letter = dead.receive_message(wait_seconds=1)
    assert dead_letter.message_body == "poison"
    assert dead_letter.message_id != sent.message_id
    assert dead_letter.dequeue_count == 1
    assert dead_letter.user_properties["job"].get_raw_value() == "j-9"
    system = {k: v.get_raw_value() for k, v in dead_letter.system_properties.items()}
    assert system == {
        "DLQMessageType": "QUEUE",
        "DLQSourceArn": f"acs:mns:local:{ACCOUNT_ID}:/queues/events",
        "DLQOriginMessageId": sent.message_id,
    }


def test_message_deleted_in_time_never_moves(server: LocalMNSServer) -> None:
    events = open_queue(server, "events")
    events.send_message(Message("fine on the second try"))
    fail_once(events)
    second = events.receive_message(wait_seconds=1)
    events.delete_message(second.receipt_handle)
    assert server.queue_info("events-dlq").active_messages == 0


def test_move_happens_without_anyone_reading_the_source(server: LocalMNSServer) -> None:
    server.create_queue("events", visibility_timeout=1)
    events, dead = open_queue(server, "events"), open_queue(server, "events-dlq")
    events.send_message(Message("abandoned"))
    fail_once(events)
    events.receive_message(wait_seconds=1)  # second receive; then nobody touches "events"
    # When its visibility ends, the server's sweep moves it; the DLQ's long poll sees it.
    assert dead.receive_message(wait_seconds=5).message_body == "abandoned"


def test_dead_letter_binding_is_checked() -> None:
    with pytest.raises(ValueError, match="its own dead-letter queue"):
        LocalMNSServer(dead_letter=[("q", "q", 3)])
    with pytest.raises(ValueError, match="MaxReceiveCount"):
        LocalMNSServer(dead_letter=[("q", "dlq", 0)])
