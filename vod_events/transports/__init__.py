"""The queue contract the consumer is written against.

Two implementations exist: `transports.mns.MNSTransport` (the real service through
aliyun-mns-sdk) and `transports.memory.MemoryTransport` (an in-process fake for unit tests),
held to the same tests by tests/contracts/test_transport_contract.py. Both keep to the MNS
semantics the consumer relies on:

- `receive` returns at most `max_messages` messages and makes them invisible for the queue's
  visibility timeout; an empty queue is an empty list, never an exception.
- every receive and every `change_visibility` issues a NEW receipt handle; older ones are dead.
- `delete` reports per-handle failures instead of raising for them.
- values outside the service's ranges (below) are refused with a TransportError.
- every call returns or raises within a bounded time: a peer that stops answering is a
  TransportError after a timeout (`MNSTransport`'s `Timeouts`), never a call blocked forever.

One transport instance is used by one thread only (the SDK connection is not thread-safe):
`TransportFactory` makes a new one per thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

# The service's ranges (requests outside them are refused).
MAX_MESSAGES = 16  # messages per batch receive, handles per batch delete
MAX_WAIT_SECONDS = 30  # a receive's long poll
MAX_VISIBILITY_SECONDS = 43_200  # change_visibility: 0 .. 12 hours
MAX_BODY_BYTES = 65_536  # a queue's largest MaximumMessageSize (UTF-8 bytes)


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
    endpoint: str  # where the queue lives, for messages and logs: never holds a secret

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
