"""The `Transport` contract (vod_events/transports/__init__.py), one suite for every transport.

Each test runs against `MemoryTransport` (the fake the consumer's unit tests use) and against
`MNSTransport` through the real aliyun-mns-sdk talking to `LocalMNSServer`. A test passing for
both is what lets the consumer's unit tests on the fake stand for the real service.

Where the two disagree today, the test states what the real service does and is marked, in
`DIFFERENCES`, as an expected failure for the transport that differs (strict: the mark must
go when the difference does).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from vod_events.mns_server import LocalMNSServer
from vod_events.transports import (
    DeleteFailure,
    FatalTransportError,
    MessageGone,
    ReceivedMessage,
    Transport,
    TransportError,
)
from vod_events.transports.memory import MemoryBroker, MemoryTransport
from vod_events.transports.mns import MNSTransport

QUEUE = "contract"
VISIBILITY = 2  # the queue's VisibilityTimeout, seconds (the service's minimum is 1)
KEY_ID, SECRET = "contract-key", "contract-secret"
# Clock slack between a test's own readings and the times a transport reports (ms).
SLACK_MS = 250
NO_SUCH_HANDLE = "no-such-handle"

# (test function, transport) -> how that transport differs from the contract the test states.
DIFFERENCES: dict[tuple[str, str], str] = {
    (
        "test_an_empty_property_value_round_trips",
        "mns",
    ): "the SDK's reply decoder drops a user property whose <Value> is empty",
}


@dataclass
class QueueUnderTest:
    """One queue of one transport kind; `transport()` makes a connection (one per thread)."""

    kind: str
    connect: Callable[[str], Transport]
    name: str = QUEUE
    visibility_timeout: int = VISIBILITY
    made: list[Transport] = field(default_factory=list)

    def transport(self, name: str | None = None) -> Transport:
        made = self.connect(name or self.name)
        self.made.append(made)
        return made

    def close(self) -> None:
        for transport in self.made:
            transport.close()


@pytest.fixture(params=["memory", "mns"])
def queue(request: pytest.FixtureRequest) -> Iterator[QueueUnderTest]:
    """A queue with VisibilityTimeout = VISIBILITY, on each transport in turn."""
    kind: str = request.param
    difference = DIFFERENCES.get((request.node.originalname, kind))
    if difference is not None:
        request.node.add_marker(
            pytest.mark.xfail(strict=True, raises=AssertionError, reason=difference)
        )
    if kind == "memory":
        broker = MemoryBroker()
        broker.create_queue(QUEUE, visibility_timeout=VISIBILITY)
        under_test = QueueUnderTest(kind, lambda name: MemoryTransport(broker, name))
        yield under_test
        under_test.close()
        return
    with LocalMNSServer(access_key_id=KEY_ID, access_key_secret=SECRET) as server:
        server.create_queue(QUEUE, visibility_timeout=VISIBILITY)
        under_test = QueueUnderTest(
            kind,
            lambda name: MNSTransport(
                server.endpoint, name, access_key_id=KEY_ID, access_key_secret=SECRET
            ),
        )
        yield under_test
        under_test.close()


def now_ms() -> int:
    return int(time.time() * 1000)


def error_of(call: Callable[[], object]) -> BaseException | None:
    """The exception `call` raised, or None (so that a difference fails on an assert)."""
    try:
        call()
    except Exception as exc:
        return exc
    return None


def receive_all(transport: Transport, count: int) -> list[ReceivedMessage]:
    """Receive until `count` messages came, without waiting for more."""
    received: list[ReceivedMessage] = []
    while len(received) < count:
        batch = transport.receive(16, 0)
        assert batch, f"only {len(received)} of {count} messages could be received"
        received += batch
    return received


def counts(transport: Transport) -> tuple[int, int, int]:
    info = transport.queue_info()
    return info.active_messages, info.inactive_messages, info.delay_messages


def handles(failures: Sequence[DeleteFailure]) -> list[str]:
    return [failure.receipt_handle for failure in failures]


class Blocked:
    """Runs `transport.receive(max_messages, wait_seconds)` in a thread of its own."""

    def __init__(self, transport: Transport, max_messages: int, wait_seconds: int) -> None:
        self.result: list[ReceivedMessage] | None = None
        self.error: BaseException | None = None
        self.started = time.monotonic()
        self.returned = 0.0
        self._thread = threading.Thread(
            target=self._run, args=(transport, max_messages, wait_seconds), daemon=True
        )
        self._thread.start()

    def _run(self, transport: Transport, max_messages: int, wait_seconds: int) -> None:
        try:
            self.result = transport.receive(max_messages, wait_seconds)
        except Exception as exc:
            self.error = exc
        finally:
            self.returned = time.monotonic()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"receive still blocked after {timeout} s"


# ---------------------------------------------------------------------------- receive


def test_an_empty_queue_gives_an_empty_list(queue: QueueUnderTest) -> None:
    transport = queue.transport()
    started = time.monotonic()
    assert transport.receive(16, 0) == []
    assert time.monotonic() - started < 1.0


def test_a_long_poll_of_an_empty_queue_waits_then_gives_an_empty_list(
    queue: QueueUnderTest,
) -> None:
    started = time.monotonic()
    assert queue.transport().receive(16, 1) == []
    assert 0.9 <= time.monotonic() - started < 3.0


def test_receive_returns_at_most_max_messages(queue: QueueUnderTest) -> None:
    transport = queue.transport()
    sent = {transport.send(f"message {i}") for i in range(5)}
    first = transport.receive(3, 0)
    assert len(first) == 3
    rest = transport.receive(16, 0)
    assert len(rest) == 2
    assert {m.message_id for m in first + rest} == sent
    assert len({m.receipt_handle for m in first + rest}) == 5
    assert transport.receive(16, 0) == []


def test_a_received_message_carries_its_delivery_fields(queue: QueueUnderTest) -> None:
    transport = queue.transport()
    before_send = now_ms()
    message_id = transport.send("the body", {"Reason": "test", "Count": "3"})
    after_send = now_ms()
    [message] = transport.receive(16, 0)
    after_receive = now_ms()
    assert message.message_id == message_id
    assert message.body == "the body"
    assert dict(message.user_properties) == {"Reason": "test", "Count": "3"}
    assert message.dequeue_count == 1
    assert message.priority == 8  # the service's default
    assert before_send - SLACK_MS <= message.enqueue_time_ms <= after_send + SLACK_MS
    assert message.enqueue_time_ms <= message.first_dequeue_time_ms <= after_receive + SLACK_MS
    visible_again = message.first_dequeue_time_ms + VISIBILITY * 1000
    assert abs(message.next_visible_time_ms - visible_again) <= SLACK_MS


def test_a_message_sent_without_properties_has_none(queue: QueueUnderTest) -> None:
    transport = queue.transport()
    transport.send("plain")
    [message] = transport.receive(16, 0)
    assert dict(message.user_properties) == {}


def test_a_received_message_is_invisible_until_its_visibility_timeout(
    queue: QueueUnderTest,
) -> None:
    first, second = queue.transport(), queue.transport()
    message_id = first.send("hide me")
    [taken] = first.receive(16, 0)
    received_at = time.monotonic()
    assert second.receive(16, 0) == []  # not for anyone else, this consumer included
    assert first.receive(16, 0) == []
    assert counts(second) == (0, 1, 0)
    # A long poll wakes when the visibility timeout lapses, not at the end of its wait.
    [again] = second.receive(16, VISIBILITY + 5)
    waited = time.monotonic() - received_at
    assert VISIBILITY - 0.5 <= waited < VISIBILITY + 2.0
    assert again.message_id == message_id
    assert again.dequeue_count == 2
    assert again.receipt_handle != taken.receipt_handle
    assert again.enqueue_time_ms == taken.enqueue_time_ms
    assert again.first_dequeue_time_ms == taken.first_dequeue_time_ms
    # The first delivery's handle died when the message was handed out again.
    [failure] = first.delete([taken.receipt_handle])
    assert failure.receipt_handle == taken.receipt_handle
    assert failure.gone
    assert second.delete([again.receipt_handle]) == []
    assert counts(second) == (0, 0, 0)


def test_a_handle_whose_visibility_lapsed_is_dead_though_nobody_took_the_message(
    queue: QueueUnderTest,
) -> None:
    transport = queue.transport()
    transport.send("lapse")
    [taken] = transport.receive(16, 0)
    time.sleep(VISIBILITY + 0.3)
    with pytest.raises(MessageGone):
        transport.change_visibility(taken.receipt_handle, 30)
    [failure] = transport.delete([taken.receipt_handle])
    assert failure.gone
    [again] = transport.receive(16, 0)  # not deleted: delivered again
    assert again.message_id == taken.message_id
    assert again.dequeue_count == 2


# ---------------------------------------------------------------------- receipt handles


def test_change_visibility_issues_a_new_handle_and_kills_the_old(queue: QueueUnderTest) -> None:
    transport = queue.transport()
    transport.send("rotate")
    [taken] = transport.receive(16, 0)
    before = now_ms()
    new_handle, next_visible_ms = transport.change_visibility(taken.receipt_handle, 10)
    after = now_ms()
    assert new_handle != taken.receipt_handle
    assert before + 10_000 - SLACK_MS <= next_visible_ms <= after + 10_000 + SLACK_MS
    with pytest.raises(MessageGone):
        transport.change_visibility(taken.receipt_handle, 10)
    [failure] = transport.delete([taken.receipt_handle])
    assert failure.gone
    assert counts(transport) == (0, 1, 0)  # the dead handle deleted nothing
    newest, _ = transport.change_visibility(new_handle, 10)  # the new one works, once
    assert newest not in (new_handle, taken.receipt_handle)
    assert transport.delete([newest]) == []
    assert counts(transport) == (0, 0, 0)


def test_change_visibility_sets_when_the_message_is_visible_again(
    queue: QueueUnderTest,
) -> None:
    transport = queue.transport()
    transport.send("longer")
    [taken] = transport.receive(16, 0)
    handle, _ = transport.change_visibility(taken.receipt_handle, VISIBILITY + 3)
    time.sleep(VISIBILITY + 0.5)
    assert transport.receive(16, 0) == []  # the queue's own timeout is overridden
    handle, _ = transport.change_visibility(handle, 0)  # 0: visible again at once
    [again] = transport.receive(16, 0)
    assert again.message_id == taken.message_id
    assert again.dequeue_count == 2
    with pytest.raises(MessageGone):
        transport.change_visibility(handle, 10)


def test_a_deleted_or_unknown_handle_is_message_gone(queue: QueueUnderTest) -> None:
    transport = queue.transport()
    transport.send("once")
    [taken] = transport.receive(16, 0)
    assert transport.delete([taken.receipt_handle]) == []
    for handle in (taken.receipt_handle, NO_SUCH_HANDLE):
        with pytest.raises(MessageGone) as caught:
            transport.change_visibility(handle, 10)
        assert not isinstance(caught.value, FatalTransportError)
        assert caught.value.code in {"MessageNotExist", "ReceiptHandleError"}


def test_a_batch_delete_reports_each_failed_handle_and_deletes_the_rest(
    queue: QueueUnderTest,
) -> None:
    transport = queue.transport()
    for i in range(3):
        transport.send(f"batch {i}")
    a, b, c = (m.receipt_handle for m in receive_all(transport, 3))
    assert transport.delete([a]) == []
    failures = transport.delete([a, b, NO_SUCH_HANDLE, c])
    assert sorted(handles(failures)) == sorted([a, NO_SUCH_HANDLE])
    assert all(failure.gone for failure in failures)
    assert all(failure.code and failure.message for failure in failures)
    assert counts(transport) == (0, 0, 0)  # b and c went
    assert transport.receive(16, 0) == []


# ------------------------------------------------------------- long polls and interrupt


def test_a_long_poll_wakes_when_a_message_arrives(queue: QueueUnderTest) -> None:
    receiver, sender = queue.transport(), queue.transport()
    poll = Blocked(receiver, 16, 20)
    time.sleep(0.5)  # the receive is blocked in its long poll by now
    sent_at = time.monotonic()
    message_id = sender.send("wake up")
    poll.join(10)
    assert poll.error is None
    assert poll.result is not None
    assert [m.message_id for m in poll.result] == [message_id]
    assert poll.returned - poll.started >= 0.4  # it was waiting: the message woke it
    assert poll.returned - sent_at < 2.0  # promptly, not at the end of the 20 s


def test_interrupt_aborts_a_long_poll_from_another_thread(queue: QueueUnderTest) -> None:
    receiver = queue.transport()
    poll = Blocked(receiver, 16, 20)
    time.sleep(0.5)
    interrupted_at = time.monotonic()
    receiver.interrupt()
    poll.join(10)
    assert poll.returned - interrupted_at < 3.0
    assert poll.result is None
    assert isinstance(poll.error, TransportError)
    assert not isinstance(poll.error, FatalTransportError)  # shutdown, not a bad setup
    # The aborted long poll took nothing: a message sent now goes to the next consumer.
    sender, other = queue.transport(), queue.transport()
    message_id = sender.send("after the interrupt")
    [message] = other.receive(16, 2)
    assert message.message_id == message_id
    assert message.dequeue_count == 1


def test_an_interrupted_transport_refuses_to_receive(queue: QueueUnderTest) -> None:
    transport = queue.transport()
    queue.transport().send("not for an interrupted transport")
    transport.interrupt()
    with pytest.raises(TransportError):
        transport.receive(16, 0)
    assert counts(queue.transport()) == (1, 0, 0)


def test_an_interrupted_transport_refuses_every_later_call(queue: QueueUnderTest) -> None:
    other = queue.transport()
    other.send("held")
    [taken] = other.receive(16, 0)
    transport = queue.transport()
    transport.interrupt()
    calls: dict[str, Callable[[], object]] = {
        "send": lambda: transport.send("after the interrupt"),
        "delete": lambda: transport.delete([taken.receipt_handle]),
        "change_visibility": lambda: transport.change_visibility(taken.receipt_handle, 10),
        "queue_info": transport.queue_info,
    }
    outcomes = {name: error_of(call) for name, call in calls.items()}
    assert all(isinstance(error, TransportError) for error in outcomes.values()), outcomes


# ------------------------------------------------------------------ queue_info and send


def test_queue_info_reports_the_attributes_and_the_counts(queue: QueueUnderTest) -> None:
    transport = queue.transport()
    info = transport.queue_info()
    assert info.name == QUEUE
    assert info.visibility_timeout == VISIBILITY
    # A queue created with the service's defaults.
    assert info.maximum_message_size == 65536
    assert info.message_retention_period == 345600
    assert info.polling_wait_seconds == 0
    assert counts(transport) == (0, 0, 0)
    for i in range(3):
        transport.send(f"count {i}")
    assert counts(transport) == (3, 0, 0)
    [taken] = transport.receive(1, 0)
    assert counts(transport) == (2, 1, 0)
    assert transport.delete([taken.receipt_handle]) == []
    assert counts(transport) == (2, 0, 0)


def test_a_missing_queue_is_fatal(queue: QueueUnderTest) -> None:
    transport = queue.transport("no-such-queue")
    calls: list[Callable[[], object]] = [
        transport.queue_info,
        lambda: transport.receive(16, 0),
        lambda: transport.send("nowhere"),
    ]
    for call in calls:
        with pytest.raises(FatalTransportError) as caught:
            call()
        assert caught.value.code == "QueueNotExist"


TRICKY_BODIES = [
    '{"EventType": "FileUploadComplete", "VideoId": "a&b<c>d\'e\\"f"}',
    "]]> <![CDATA[ not a section ]]>",
    "line one\nline two\ttabbed",
    "  leading and trailing spaces  ",
    "unicode: 视频点播 \u2028 separator, emoji \U0001f3ac",
    "x" * 60_000,
]


def test_send_returns_the_id_and_bodies_round_trip_exactly(queue: QueueUnderTest) -> None:
    transport = queue.transport()
    sent = {transport.send(body): body for body in TRICKY_BODIES}
    assert len(sent) == len(TRICKY_BODIES)  # one id per message
    received = receive_all(transport, len(sent))
    assert {m.message_id: m.body for m in received} == sent


def test_user_properties_round_trip(queue: QueueUnderTest) -> None:
    transport = queue.transport()
    properties = {"Reason": "a & b <c>", "Unicode": "视频", "Spaces": " padded ", "N": "42"}
    message_id = transport.send("with properties", properties)
    [message] = transport.receive(16, 0)
    assert message.message_id == message_id
    assert dict(message.user_properties) == properties


def test_a_crlf_in_a_body_arrives_as_lf(queue: QueueUnderTest) -> None:
    transport = queue.transport()
    transport.send("windows\r\nline")
    [message] = transport.receive(16, 0)
    assert message.body == "windows\nline"


def test_a_cr_alone_arrives_as_lf_in_bodies_and_properties(queue: QueueUnderTest) -> None:
    transport = queue.transport()
    transport.send("old mac\rline\n\r", {"Reason": "a\r\nb\rc"})
    [message] = transport.receive(16, 0)
    assert message.body == "old mac\nline\n\n"
    assert dict(message.user_properties) == {"Reason": "a\nb\nc"}


def test_an_empty_property_value_round_trips(queue: QueueUnderTest) -> None:
    transport = queue.transport()
    transport.send("empty property", {"Empty": "", "Full": "x"})
    [message] = transport.receive(16, 0)
    assert dict(message.user_properties) == {"Empty": "", "Full": "x"}


OUT_OF_RANGE: dict[str, Callable[[Transport, str], object]] = {
    "receive 0 messages": lambda t, handle: t.receive(0, 0),
    "receive 17 messages": lambda t, handle: t.receive(17, 0),
    "wait 31 seconds": lambda t, handle: t.receive(1, 31),
    "delete no handle": lambda t, handle: t.delete([]),
    "delete 17 handles": lambda t, handle: t.delete([handle] * 17),
    "negative visibility": lambda t, handle: t.change_visibility(handle, -1),
    "visibility over 12 hours": lambda t, handle: t.change_visibility(handle, 43201),
    "empty body": lambda t, handle: t.send(""),
    "body over 64 KiB": lambda t, handle: t.send("x" * 65537),
}


@pytest.mark.parametrize("case", OUT_OF_RANGE)
def test_requests_out_of_the_services_ranges_are_refused(queue: QueueUnderTest, case: str) -> None:
    transport = queue.transport()
    transport.send("held")
    [taken] = transport.receive(16, 0)
    error = error_of(lambda: OUT_OF_RANGE[case](transport, taken.receipt_handle))
    assert isinstance(error, TransportError), f"{case}: {error!r}"
    assert not isinstance(error, MessageGone)
    # Refused without touching the queue: the held message keeps its handle.
    assert transport.delete([taken.receipt_handle]) == []
