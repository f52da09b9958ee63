"""The service's error codes as aliyun-mns-sdk 1.3.0 surfaces them from the local server."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Message, QueueMeta

from vod_events.mns_server import LocalMNSServer


@pytest.fixture
def server() -> Iterator[LocalMNSServer]:
    with LocalMNSServer(queues=("q",)) as srv:
        yield srv


@pytest.fixture
def account(server: LocalMNSServer) -> Any:
    return Account(server.endpoint, "id", "secret")


@pytest.fixture
def queue(account: Any) -> Any:
    q = account.get_queue("q")
    q.set_encoding(False)
    return q


def error_of(call: Callable[[], object]) -> MNSServerException:
    with pytest.raises(MNSServerException) as raised:
        call()
    return raised.value


def test_queue_not_exist_for_every_queue_operation(account: Any) -> None:
    missing = account.get_queue("missing")
    missing.set_encoding(False)
    calls: list[Callable[[], object]] = [
        missing.get_attributes,
        lambda: missing.set_attributes(QueueMeta(vis_timeout=5)),
        missing.delete,
        lambda: missing.send_message(Message("x")),
        lambda: missing.batch_send_message([Message("x")]),
        lambda: missing.receive_message(wait_seconds=0),
        lambda: missing.batch_receive_message(2, wait_seconds=0),
        missing.peek_message,
        lambda: missing.batch_peek_message(2),
        lambda: missing.delete_message("1-" + "A" * 24),
        lambda: missing.batch_delete_message(["1-" + "A" * 24]),
        lambda: missing.change_message_visibility("1-" + "A" * 24, 10),
    ]
    for call in calls:
        error = error_of(call)
        assert error.type == "QueueNotExist"
        assert len(error.request_id) == 24


def test_invalid_queue_names(account: Any) -> None:
    assert error_of(lambda: account.get_queue("9lives").create(QueueMeta())).type == (
        "InvalidQueueName"
    )
    assert error_of(lambda: account.get_queue("under_score").create(QueueMeta())).type == (
        "InvalidQueueName"
    )
    assert error_of(lambda: account.get_queue("a" * 257).create(QueueMeta())).type == (
        "QueueNameLengthError"
    )


@pytest.mark.parametrize(
    "meta",
    [
        QueueMeta(vis_timeout=43201),
        QueueMeta(max_msg_size=1023),
        QueueMeta(max_msg_size=65537),
        QueueMeta(msg_ttl=59),
        QueueMeta(msg_ttl=604801),
        QueueMeta(delay_sec=604801),
        QueueMeta(polling_wait_sec=31),
    ],
)
def test_queue_attributes_out_of_range(account: Any, meta: Any) -> None:
    error = error_of(lambda: account.get_queue("ranged").create(meta))
    assert error.type == "InvalidArgument"
    assert "should between" in error.message


def test_message_not_exist_when_empty_and_for_peek(queue: Any) -> None:
    assert error_of(lambda: queue.receive_message(wait_seconds=0)).type == "MessageNotExist"
    assert error_of(lambda: queue.batch_receive_message(16, 0)).type == "MessageNotExist"
    assert error_of(queue.peek_message).type == "MessageNotExist"
    assert error_of(lambda: queue.batch_peek_message(16)).type == "MessageNotExist"


def test_receipt_handle_error_for_malformed_handles(queue: Any) -> None:
    assert error_of(lambda: queue.delete_message("not-a-handle")).type == "ReceiptHandleError"
    error = error_of(lambda: queue.change_message_visibility("not-a-handle", 10))
    assert error.type == "ReceiptHandleError"


def test_more_than_16_messages_in_a_batch(queue: Any) -> None:
    error = error_of(lambda: queue.batch_send_message([Message(f"m{i}") for i in range(17)]))
    assert error.type == "InvalidArgument"
    assert error_of(lambda: queue.batch_receive_message(17, 0)).type == "InvalidArgument"
    assert error_of(lambda: queue.batch_peek_message(17)).type == "InvalidArgument"
    handles = ["1-" + "A" * 24] * 17
    assert error_of(lambda: queue.batch_delete_message(handles)).type == "InvalidArgument"


def test_message_larger_than_maximum_message_size(server: LocalMNSServer, queue: Any) -> None:
    server.create_queue("small", maximum_message_size=1024)
    small = Account(server.endpoint, "id", "secret").get_queue("small")
    small.set_encoding(False)
    small.send_message(Message("x" * 1024))  # exactly the limit is fine
    error = error_of(lambda: small.send_message(Message("x" * 1025)))
    assert error.type == "InvalidArgument"
    # Bytes count, not characters: 342 three-byte characters are 1026 bytes.
    assert error_of(lambda: small.send_message(Message("视" * 342))).type == "InvalidArgument"
    # One oversized message fails the whole batch; nothing of it is stored.
    batch = [Message("fine"), Message("y" * 2000)]
    assert error_of(lambda: small.batch_send_message(batch)).type == "InvalidArgument"
    assert server.queue_info("small").active_messages == 1


@pytest.mark.parametrize(
    "message",
    [Message("x", priority=17), Message("x", priority=0), Message("x", delay_seconds=604801)],
)
def test_message_attributes_out_of_range(queue: Any, message: Any) -> None:
    assert error_of(lambda: queue.send_message(message)).type == "InvalidArgument"


def test_wait_seconds_over_30(queue: Any) -> None:
    assert error_of(lambda: queue.receive_message(wait_seconds=31)).type == "InvalidArgument"


def test_batch_delete_reports_every_failed_handle(queue: Any) -> None:
    queue.batch_send_message([Message("a"), Message("b")])
    received = queue.batch_receive_message(2, wait_seconds=0)
    stale = "1-" + "B" * 24
    handles = [received[0].receipt_handle, stale, "garbage", received[1].receipt_handle]
    error = error_of(lambda: queue.batch_delete_message(handles))
    assert error.type == "MessageNotExist"  # the first failure's code
    assert error.sub_errors == [
        {
            "ErrorCode": "MessageNotExist",
            "ErrorMessage": "Message not exist.",
            "ReceiptHandle": stale,
        },
        {
            "ErrorCode": "ReceiptHandleError",
            "ErrorMessage": "The receipt handle you provided is not valid.",
            "ReceiptHandle": "garbage",
        },
    ]
    assert len(error.request_id) == 24  # from the header: the <Errors> body has none
    # The good handles were used: both messages are gone.
    assert error_of(lambda: queue.receive_message(wait_seconds=0)).type == "MessageNotExist"
    assert error_of(lambda: queue.delete_message(received[0].receipt_handle)).type == (
        "MessageNotExist"
    )


def test_deleting_a_queue_wakes_its_long_polls(server: LocalMNSServer) -> None:
    outcome: dict[str, Any] = {}

    def receive() -> None:
        q = Account(server.endpoint, "id", "secret").get_queue("q")
        started = time.monotonic()
        try:
            q.receive_message(wait_seconds=20)
        except MNSServerException as error:
            outcome["type"] = error.type
        outcome["waited"] = time.monotonic() - started

    thread = threading.Thread(target=receive)
    thread.start()
    time.sleep(0.3)
    Account(server.endpoint, "id", "secret").get_queue("q").delete()
    thread.join(10)
    assert outcome["type"] == "QueueNotExist"
    assert outcome["waited"] < 10
