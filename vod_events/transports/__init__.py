"""The queue contract the consumer is written against.

Two implementations exist: `mns_transport.MNSTransport` (the real service through
aliyun-mns-sdk) and `memory_transport.MemoryTransport` (an in-process fake for unit tests).
Both keep to the MNS semantics the consumer relies on:

- `receive` returns at most `max_messages` messages and makes them invisible for the queue's
  visibility timeout; an empty queue is an empty list, never an exception.
- every receive and every `change_visibility` issues a NEW receipt handle; older ones are dead.
- `delete` reports per-handle failures instead of raising for them.

One transport instance is used by one thread only (the SDK connection is not thread-safe):
`TransportFactory` makes a new one per thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """One delivery of a message. Times are milliseconds since the epoch (server clock)."""

    message_id: str
    receipt_handle: str
    body: str
    dequeue_count: int
    enqueue_time_ms: int
    first_dequeue_time_ms: int
    next_visible_time_ms: int
    priority: int = 8
    user_properties: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """The queue attributes the consumer plans with."""

    name: str
    visibility_timeout: int
    maximum_message_size: int
    message_retention_period: int
    polling_wait_seconds: int
    active_messages: int
    inactive_messages: int
    delay_messages: int


@dataclass(frozen=True, slots=True)
class DeleteFailure:
    """A handle a batch delete could not delete, with the service's error code."""

    receipt_handle: str
    code: str
    message: str

    @property
    def gone(self) -> bool:
        """The handle is stale or the message no longer exists: nothing left to delete."""
        return self.code in GONE_CODES


# Codes meaning "this handle can no longer act on the message" (it was deleted, or its
# visibility lapsed and it was handed to someone else). Not an error to retry.
GONE_CODES = frozenset({"MessageNotExist", "ReceiptHandleError"})


class TransportError(Exception):
    """A failure worth retrying after a backoff: network error, 5xx, throttling.

    The request may still have taken effect server-side (e.g. a receive whose response was
    lost has already made its messages invisible): callers must not assume it did not.
    """

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class FatalTransportError(TransportError):
    """A failure that retrying cannot fix: bad credentials, missing queue, access denied."""


class MessageGone(TransportError):
    """The receipt handle is dead: the message was deleted or redelivered elsewhere."""


class Transport(Protocol):
    """One thread's connection to one queue."""

    queue_name: str

    def queue_info(self) -> QueueInfo:
        """The queue's attributes. Raises FatalTransportError if it does not exist."""
        ...

    def receive(self, max_messages: int, wait_seconds: int) -> list[ReceivedMessage]:
        """Long-poll for up to `max_messages` (1..16) for up to `wait_seconds` (0..30)."""
        ...

    def delete(self, receipt_handles: Sequence[str]) -> list[DeleteFailure]:
        """Delete up to 16 messages; return the handles that failed, with their codes."""
        ...

    def change_visibility(self, receipt_handle: str, seconds: int) -> tuple[str, int]:
        """Make the message invisible for `seconds` more; return (new handle, next visible ms).

        Raises MessageGone when the handle is dead.
        """
        ...

    def send(self, body: str, properties: Mapping[str, str] | None = None) -> str:
        """Send one message with optional string user properties; return its message id."""
        ...

    def interrupt(self) -> None:
        """Abort a call blocked in another thread (a long poll) so shutdown need not wait.

        Safe to call from any thread; the interrupted call raises TransportError.
        """
        ...

    def close(self) -> None:
        """Release the connection. The transport may not be used afterwards."""
        ...


# Makes a transport for one queue; called once per thread that needs one.
TransportFactory = Callable[[str], Transport]
