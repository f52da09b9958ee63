"""An in-process fake of MNS queues, implementing the same `Transport` protocol.

Unit tests of the consumer run against it: it has the semantics that matter (visibility
timeouts, a new receipt handle on every receive and visibility change, DequeueCount, long
polling that wakes when a message arrives, per-handle batch-delete failures, the service's
ranges, bodies and properties as XML delivers them, a transport dead after `interrupt`) and
none of the network. It can also be told to fail, to exercise the consumer's error paths.
tests/contracts/test_transport_contract.py holds it to the same tests as MNSTransport.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from vod_events.transports import (
    MAX_BODY_BYTES,
    MAX_MESSAGES,
    MAX_VISIBILITY_SECONDS,
    MAX_WAIT_SECONDS,
    DeleteFailure,
    FatalTransportError,
    MessageGone,
    QueueInfo,
    ReceivedMessage,
    TransportError,
)


def _as_xml_delivers(text: str) -> str:
    """MNS carries bodies and properties as XML text, whose end-of-line handling turns
    CR LF, and a CR alone, into LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _check_range(name: str, value: int, low: int, high: int, code: str = "InvalidArgument") -> None:
    if not low <= value <= high:
        raise TransportError(f"{code}: {name} should be between {low} and {high}", code=code)


@dataclass(slots=True)
class _Stored:
    message_id: str
    body: str
    enqueue_time_ms: int
    properties: dict[str, str]
    visible_at: float = 0.0  # time.monotonic() from which it can be received
    dequeue_count: int = 0
    first_dequeue_time_ms: int = 0
    handle: str | None = None  # the only live receipt handle, if any


@dataclass(slots=True)
class MemoryQueue:
    """One queue's state; every method is called with `lock` held by `MemoryBroker`."""

    name: str
    visibility_timeout: int = 30
    messages: dict[str, _Stored] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)  # message ids, in deletion order


class MemoryBroker:
    """Holds the queues; share one between the transports of a test."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self.queues: dict[str, MemoryQueue] = {}
        self._ids = itertools.count(1)
        # Failure injection: the next N calls of an operation raise this error.
        self.failures: dict[str, list[TransportError]] = {}

    def create_queue(self, name: str, visibility_timeout: int = 30) -> MemoryQueue:
        with self.lock:
            queue = self.queues[name] = MemoryQueue(name, visibility_timeout)
            return queue

    def put(self, queue: str, body: str, properties: Mapping[str, str] | None = None) -> str:
        with self.lock:
            message_id = f"M{next(self._ids):08X}"
            self.queues[queue].messages[message_id] = _Stored(
                message_id,
                _as_xml_delivers(body),
                int(time.time() * 1000),
                {name: _as_xml_delivers(value) for name, value in (properties or {}).items()},
            )
            self.lock.notify_all()
            return message_id

    def fail_next(self, operation: str, error: TransportError, times: int = 1) -> None:
        """Make the next `times` calls of `operation` ("receive", "delete", ...) raise."""
        with self.lock:
            self.failures.setdefault(operation, []).extend([error] * times)

    def bodies(self, queue: str) -> list[str]:
        """Bodies of the messages still in the queue (visible or not)."""
        with self.lock:
            return [m.body for m in self.queues[queue].messages.values()]

    def visible_count(self, queue: str) -> int:
        now = time.monotonic()
        with self.lock:
            return sum(1 for m in self.queues[queue].messages.values() if m.visible_at <= now)

    def deleted(self, queue: str) -> list[str]:
        with self.lock:
            return list(self.queues[queue].deleted)

    def new_handle(self) -> str:
        return f"H{next(self._ids):012X}"


class MemoryTransport:
    """`Transport` over a `MemoryBroker` queue."""

    endpoint = "memory://"

    def __init__(self, broker: MemoryBroker, queue_name: str) -> None:
        self.broker = broker
        self.queue_name = queue_name
        self._interrupted = False

    def _queue(self, operation: str) -> MemoryQueue:
        """Called with the lock held: injected failures first, then the queue."""
        pending = self.broker.failures.get(operation)
        if pending:
            raise pending.pop(0)
        if self._interrupted:  # like MNSTransport, whose connection is gone
            raise TransportError("network error: transport interrupted", code="NetWorkException")
        try:
            return self.broker.queues[self.queue_name]
        except KeyError:
            raise FatalTransportError(
                f"queue {self.queue_name!r} does not exist", code="QueueNotExist"
            ) from None

    def queue_info(self) -> QueueInfo:
        with self.broker.lock:
            queue = self._queue("queue_info")
            now = time.monotonic()
            active = sum(1 for m in queue.messages.values() if m.visible_at <= now)
            return QueueInfo(
                name=queue.name,
                visibility_timeout=queue.visibility_timeout,
                maximum_message_size=65536,
                message_retention_period=345600,
                polling_wait_seconds=0,
                active_messages=active,
                inactive_messages=len(queue.messages) - active,
                delay_messages=0,
            )

    def receive(self, max_messages: int, wait_seconds: int) -> list[ReceivedMessage]:
        _check_range("numOfMessages", max_messages, 1, MAX_MESSAGES)
        _check_range("waitseconds", wait_seconds, 0, MAX_WAIT_SECONDS)
        deadline = time.monotonic() + wait_seconds
        with self.broker.lock:
            while True:
                queue = self._queue("receive")
                now = time.monotonic()
                ready = [m for m in queue.messages.values() if m.visible_at <= now]
                if ready:
                    return [self._deliver(queue, m, now) for m in ready[:max_messages]]
                if now >= deadline:
                    return []
                # Wake on a put, or when the next hidden message becomes visible.
                hidden = [m.visible_at for m in queue.messages.values()]
                wake = min([deadline, *hidden]) - now
                self.broker.lock.wait(timeout=max(wake, 0.001))

    def _deliver(self, queue: MemoryQueue, stored: _Stored, now: float) -> ReceivedMessage:
        now_ms = int(time.time() * 1000)
        stored.dequeue_count += 1
        stored.first_dequeue_time_ms = stored.first_dequeue_time_ms or now_ms
        stored.visible_at = now + queue.visibility_timeout
        stored.handle = self.broker.new_handle()
        return ReceivedMessage(
            message_id=stored.message_id,
            receipt_handle=stored.handle,
            body=stored.body,
            dequeue_count=stored.dequeue_count,
            enqueue_time_ms=stored.enqueue_time_ms,
            first_dequeue_time_ms=stored.first_dequeue_time_ms,
            next_visible_time_ms=now_ms + queue.visibility_timeout * 1000,
            user_properties=dict(stored.properties),
        )

    def _by_handle(self, queue: MemoryQueue, handle: str) -> _Stored | None:
        now = time.monotonic()
        for stored in queue.messages.values():
            if stored.handle == handle and stored.visible_at > now:
                return stored
        return None

    def delete(self, receipt_handles: Sequence[str]) -> list[DeleteFailure]:
        _check_range("the count of receipt handles", len(receipt_handles), 1, MAX_MESSAGES)
        failures = []
        with self.broker.lock:
            queue = self._queue("delete")
            for handle in receipt_handles:
                stored = self._by_handle(queue, handle)
                if stored is None:
                    failures.append(DeleteFailure(handle, "MessageNotExist", "no such handle"))
                    continue
                del queue.messages[stored.message_id]
                queue.deleted.append(stored.message_id)
        return failures

    def change_visibility(self, receipt_handle: str, seconds: int) -> tuple[str, int]:
        _check_range(
            "visibility timeout", seconds, 0, MAX_VISIBILITY_SECONDS, "VisibilityTimeoutInvalid"
        )
        with self.broker.lock:
            queue = self._queue("change_visibility")
            stored = self._by_handle(queue, receipt_handle)
            if stored is None:
                raise MessageGone("no such handle", code="MessageNotExist")
            stored.visible_at = time.monotonic() + seconds
            stored.handle = self.broker.new_handle()
            self.broker.lock.notify_all()
            return stored.handle, int(time.time() * 1000) + seconds * 1000

    def send(self, body: str, properties: Mapping[str, str] | None = None) -> str:
        if not body:
            raise TransportError("MessageBodyInvalid: empty body", code="MessageBodyInvalid")
        _check_range("the body's size in bytes", len(body.encode()), 1, MAX_BODY_BYTES)
        with self.broker.lock:
            self._queue("send")
        return self.broker.put(self.queue_name, body, properties)

    def interrupt(self) -> None:
        with self.broker.lock:
            self._interrupted = True
            self.broker.lock.notify_all()

    def close(self) -> None:
        self.interrupt()
