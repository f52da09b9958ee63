"""Every queue operation of aliyun-mns-sdk 1.3.0 against the local MNS server, over HTTP."""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from mns.account import Account
from mns.message_property import MessagePropertyValue, MessageSystemPropertyValue
from mns.mns_exception import MNSServerException
from mns.mns_request import ListQueueRequest, ListQueueResponse
from mns.queue import Message, QueueMeta

from vod_events.mns_server import LocalMNSServer

# The SDK marks the message counts of QueueMeta deprecated; the service still returns them.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated:DeprecationWarning")

KEY_ID = "test-key-id"
KEY_SECRET = "test-key-secret"


@pytest.fixture
def server() -> Iterator[LocalMNSServer]:
    with LocalMNSServer(
        queues=("jobs",), access_key_id=KEY_ID, access_key_secret=KEY_SECRET
    ) as srv:
        yield srv


@pytest.fixture
def account(server: LocalMNSServer) -> Any:
    return Account(server.endpoint, KEY_ID, KEY_SECRET)


@pytest.fixture
def queue(account: Any) -> Any:
    q = account.get_queue("jobs")
    q.set_encoding(False)
    return q


def md5_upper(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest().upper()


def test_send_receive_delete_round_trip(queue: Any) -> None:
    sent = queue.send_message(Message('{"EventType":"AIVideoTagComplete"}'))
    assert sent.message_body_md5 == md5_upper('{"EventType":"AIVideoTagComplete"}')

    before = int(time.time() * 1000)
    received = queue.receive_message(wait_seconds=1)
    assert received.message_id == sent.message_id
    assert received.message_body == '{"EventType":"AIVideoTagComplete"}'
    assert received.message_body_md5 == sent.message_body_md5
    assert received.dequeue_count == 1
    assert received.priority == 8
    assert received.first_dequeue_time >= received.enqueue_time
    # Times are milliseconds; the default VisibilityTimeout is 30 s.
    assert before - 5000 <= received.enqueue_time <= before + 5000
    assert received.next_visible_time - received.first_dequeue_time == 30_000

    queue.delete_message(received.receipt_handle)
    with pytest.raises(MNSServerException) as empty:
        queue.receive_message(wait_seconds=0)
    assert empty.value.type == "MessageNotExist"


def test_body_with_markup_and_unicode_survives(queue: Any) -> None:
    body = "a & b <c> \"d\" 'e' ]]> 视频 \U0001f3ac"
    queue.send_message(Message(body))
    assert queue.receive_message(wait_seconds=0).message_body == body


def test_base64_encoding_round_trip(account: Any) -> None:
    encoded = account.get_queue("jobs")  # the SDK default: Base64 on the wire
    sent = encoded.send_message(Message("plain text"))
    assert sent.message_body_md5 == md5_upper(base64.b64encode(b"plain text").decode())
    assert encoded.receive_message(wait_seconds=0).message_body == b"plain text"


def test_create_get_set_list_delete_queue(account: Any, server: LocalMNSServer) -> None:
    created = account.get_queue("orders")
    url = created.create(QueueMeta(vis_timeout=5, polling_wait_sec=2, max_msg_size=2048))
    assert url == f"{server.endpoint}/queues/orders"
    # Creating again with the same attributes is fine (204), with others it is not (409).
    assert created.create(QueueMeta(vis_timeout=5, polling_wait_sec=2, max_msg_size=2048)) == url
    with pytest.raises(MNSServerException) as conflict:
        created.create(QueueMeta(vis_timeout=6))
    assert conflict.value.type == "QueueAlreadyExist"

    meta = created.get_attributes()
    assert (meta.queue_name, meta.visibility_timeout, meta.polling_wait_seconds) == ("orders", 5, 2)
    assert (meta.maximum_message_size, meta.message_retention_period) == (2048, 345600)
    assert (meta.delay_seconds, meta.logging_enabled) == (0, False)
    assert meta.create_time == meta.last_modify_time
    assert abs(meta.create_time - time.time()) < 5

    created.set_attributes(QueueMeta(vis_timeout=9, logging_enabled=True))
    meta = created.get_attributes()
    assert (meta.visibility_timeout, meta.polling_wait_seconds, meta.logging_enabled) == (
        9,
        2,
        True,
    )

    urls, marker = account.list_queue()
    assert urls == [f"{server.endpoint}/queues/jobs", f"{server.endpoint}/queues/orders"]
    assert marker == ""

    created.delete()
    with pytest.raises(MNSServerException) as gone:
        created.get_attributes()
    assert gone.value.type == "QueueNotExist"


def test_list_queue_pages_prefix_and_meta(account: Any, server: LocalMNSServer) -> None:
    for name in ("ev-a", "ev-b", "ev-c", "other"):
        account.get_queue(name).create(QueueMeta())
    first, marker = account.list_queue(prefix="ev-", ret_number=2)
    assert [u.rsplit("/", 1)[1] for u in first] == ["ev-a", "ev-b"]
    assert marker == "ev-c"
    rest, marker = account.list_queue(prefix="ev-", ret_number=2, marker=marker)
    assert [u.rsplit("/", 1)[1] for u in rest] == ["ev-c"]
    assert marker == ""

    # Account.list_queue cannot ask for meta; the client underneath can.
    request, response = ListQueueRequest("other", with_meta=True), ListQueueResponse()
    account.get_client().list_queue(request, response)
    assert response.queueurl_list == [f"{server.endpoint}/queues/other"]
    assert response.queuemeta_list[0]["QueueName"] == "other"
    assert response.queuemeta_list[0]["VisibilityTimeout"] == "30"


def test_message_counts_in_attributes(account: Any, queue: Any) -> None:
    queue.batch_send_message([Message("visible"), Message("later", delay_seconds=60)])
    queue.send_message(Message("taken"))
    queue.receive_message(wait_seconds=0)  # the first visible one: "visible"
    meta = queue.get_attributes()
    assert (meta.active_messages, meta.inactive_messages, meta.delay_messages) == (1, 1, 1)


def test_batch_send_receive_delete(queue: Any) -> None:
    sent = queue.batch_send_message([Message(f"m{i}") for i in range(16)])
    assert [m.message_body_md5 for m in sent] == [md5_upper(f"m{i}") for i in range(16)]
    assert len({m.message_id for m in sent}) == 16

    received = queue.batch_receive_message(16, wait_seconds=1)
    assert sorted(m.message_body for m in received) == sorted(f"m{i}" for i in range(16))
    assert {m.message_id for m in received} == {m.message_id for m in sent}

    queue.batch_delete_message([m.receipt_handle for m in received])
    assert queue.get_attributes().active_messages == 0
    assert queue.get_attributes().inactive_messages == 0


def test_peek_and_batch_peek_leave_messages_alone(queue: Any) -> None:
    queue.batch_send_message([Message("first"), Message("second")])
    peeked = queue.peek_message()
    assert peeked.message_body == "first"
    assert peeked.dequeue_count == 0
    assert peeked.first_dequeue_time == 0
    assert peeked.receipt_handle == ""  # a peek holds nothing

    both = queue.batch_peek_message(16)
    assert [m.message_body for m in both] == ["first", "second"]
    assert queue.receive_message(wait_seconds=0).message_body == "first"
    assert [m.message_body for m in queue.batch_peek_message(16)] == ["second"]


def test_priority_lower_number_first(queue: Any) -> None:
    queue.send_message(Message("normal"))
    queue.send_message(Message("urgent", priority=1))
    queue.send_message(Message("lazy", priority=16))
    received = queue.batch_receive_message(3, wait_seconds=0)
    assert [(m.message_body, m.priority) for m in received] == [
        ("urgent", 1),
        ("normal", 8),
        ("lazy", 16),
    ]


def test_delay_seconds_hides_message_until_due(queue: Any) -> None:
    queue.send_message(Message("delayed", delay_seconds=1))
    with pytest.raises(MNSServerException) as early:
        queue.receive_message(wait_seconds=0)
    assert early.value.type == "MessageNotExist"
    # A long poll is answered when the delay ends.
    assert queue.receive_message(wait_seconds=5).message_body == "delayed"


def test_user_and_system_properties_round_trip(queue: Any) -> None:
    message = Message("with properties")
    message.add_user_property("job", MessagePropertyValue.create_string("tag & <1>"))
    message.add_user_property("attempt", MessagePropertyValue.create_number(3))
    message.add_user_property("urgent", MessagePropertyValue.create_boolean(True))
    message.add_user_property("blob", MessagePropertyValue.create_binary(b"\x00\xffraw"))
    message.add_system_property("traceparent", MessageSystemPropertyValue.create_string("00-ab"))
    queue.send_message(message)

    received = queue.receive_message(wait_seconds=0)
    props = received.user_properties
    assert props["job"].get_raw_value() == "tag & <1>"
    assert props["attempt"].get_raw_value() == "3"
    assert props["urgent"].get_raw_value() == "true"
    assert props["blob"].get_raw_value() == b"\x00\xffraw"
    assert received.system_properties["traceparent"].get_raw_value() == "00-ab"


def test_message_group_id_round_trip(queue: Any) -> None:
    queue.send_message(Message("grouped", message_group_id="video-42"))
    assert queue.receive_message(wait_seconds=0).message_group_id == "video-42"


def test_change_visibility_rotates_handle(queue: Any) -> None:
    queue.send_message(Message("work"))
    received = queue.receive_message(wait_seconds=0)
    changed = queue.change_message_visibility(received.receipt_handle, 60)
    assert changed.receipt_handle != received.receipt_handle
    # The SDK hands NextVisibleTime of a visibility change over as the string it read.
    assert int(changed.next_visible_time) > received.next_visible_time

    # The old handle is dead for both delete and change-visibility.
    with pytest.raises(MNSServerException) as stale_delete:
        queue.delete_message(received.receipt_handle)
    assert stale_delete.value.type == "MessageNotExist"
    with pytest.raises(MNSServerException) as stale_change:
        queue.change_message_visibility(received.receipt_handle, 10)
    assert stale_change.value.type == "MessageNotExist"

    queue.delete_message(changed.receipt_handle)
    with pytest.raises(MNSServerException) as deleted:
        queue.delete_message(changed.receipt_handle)
    assert deleted.value.type == "MessageNotExist"


def test_change_visibility_zero_makes_message_visible_at_once(queue: Any) -> None:
    queue.send_message(Message("retry me"))
    first = queue.receive_message(wait_seconds=0)
    queue.change_message_visibility(first.receipt_handle, 0)
    again = queue.receive_message(wait_seconds=1)
    assert again.message_id == first.message_id
    assert again.dequeue_count == 2


def test_visibility_expiry_redelivers_with_new_handle(server: LocalMNSServer, account: Any) -> None:
    server.create_queue("short", visibility_timeout=1)
    short = account.get_queue("short")
    short.set_encoding(False)
    short.send_message(Message("flaky"))
    first = short.receive_message(wait_seconds=0)
    assert first.dequeue_count == 1
    # Waits out the visibility timeout: the long poll answers when the message is due.
    second = short.receive_message(wait_seconds=5)
    assert second.message_id == first.message_id
    assert second.dequeue_count == 2
    assert second.first_dequeue_time == first.first_dequeue_time
    assert second.receipt_handle != first.receipt_handle
    with pytest.raises(MNSServerException) as expired:
        short.delete_message(first.receipt_handle)
    assert expired.value.type == "MessageNotExist"
    short.delete_message(second.receipt_handle)


def test_polling_wait_seconds_applies_without_waitseconds(server: LocalMNSServer) -> None:
    server.create_queue("polled", polling_wait_seconds=3)
    result: dict[str, Any] = {}

    def receive() -> None:
        polled = Account(server.endpoint, KEY_ID, KEY_SECRET).get_queue("polled")
        polled.set_encoding(False)
        result["message"] = polled.receive_message()  # no waitseconds: queue's 3 s apply

    receiver = threading.Thread(target=receive)
    receiver.start()
    time.sleep(0.3)
    sender = Account(server.endpoint, KEY_ID, KEY_SECRET).get_queue("polled")
    sender.set_encoding(False)
    sender.send_message(Message("arrived while polling"))
    receiver.join(5)
    assert result["message"].message_body == "arrived while polling"


def test_long_poll_wakes_when_a_message_arrives(server: LocalMNSServer) -> None:
    result: dict[str, Any] = {}

    def receive() -> None:
        receiver = Account(server.endpoint, KEY_ID, KEY_SECRET).get_queue("jobs")
        receiver.set_encoding(False)
        started = time.monotonic()
        result["message"] = receiver.batch_receive_message(16, wait_seconds=20)
        result["waited"] = time.monotonic() - started

    thread = threading.Thread(target=receive)
    thread.start()
    time.sleep(0.3)
    sender = Account(server.endpoint, KEY_ID, KEY_SECRET).get_queue("jobs")
    sender.set_encoding(False)
    sender.send_message(Message("wake up"))
    thread.join(10)
    assert not thread.is_alive()
    assert [m.message_body for m in result["message"]] == ["wake up"]
    assert result["waited"] < 5  # far below the 20 s it would otherwise wait


def test_two_clients_never_hold_the_same_message(server: LocalMNSServer) -> None:
    count = 200
    sender = Account(server.endpoint, KEY_ID, KEY_SECRET).get_queue("jobs")
    sender.set_encoding(False)
    for start in range(0, count, 16):
        sender.batch_send_message([Message(f"n{i}") for i in range(start, min(start + 16, count))])

    held: list[list[str]] = [[] for _ in range(4)]

    def consume(index: int) -> None:
        # One Account per thread: the SDK's connection is not thread-safe.
        q = Account(server.endpoint, KEY_ID, KEY_SECRET).get_queue("jobs")
        q.set_encoding(False)
        while True:
            try:
                batch = q.batch_receive_message(3, wait_seconds=1)
            except MNSServerException:
                return
            held[index] += [m.message_id for m in batch]
            q.batch_delete_message([m.receipt_handle for m in batch])

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    every = [message_id for ids in held for message_id in ids]
    assert len(every) == count
    assert len(set(every)) == count  # nobody was handed a message another client held


def test_account_attributes(account: Any) -> None:
    from mns.account import AccountMeta

    assert account.get_attributes().logging_bucket == ""
    account.set_attributes(AccountMeta(logging_bucket="my-bucket"))
    assert account.get_attributes().logging_bucket == "my-bucket"


def test_long_poll_of_a_client_that_left_takes_no_message() -> None:
    with LocalMNSServer(queues=("q",)) as srv:
        host, port = srv.endpoint.removeprefix("http://").split(":")
        date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())
        long_poll = (
            "GET /queues/q/messages?waitseconds=20 HTTP/1.1\r\n"
            f"Host: {host}:{port}\r\nx-mns-version: 2015-06-06\r\nDate: {date}\r\n"
            "Authorization: MNS id:c2lnbmF0dXJl\r\n\r\n"
        )
        with socket.create_connection((host, int(port))) as client:
            client.sendall(long_poll.encode())
            time.sleep(0.3)  # the server is now waiting for a message on our behalf
        time.sleep(0.3)  # we hung up; give the server a moment to notice
        queue = Account(srv.endpoint, "id", "secret").get_queue("q")
        queue.set_encoding(False)
        queue.send_message(Message("for whoever is still here"))
        received = queue.receive_message(wait_seconds=1)
        assert received.message_body == "for whoever is still here"
        assert received.dequeue_count == 1  # the departed long poll never took it
