"""Queue state and semantics, with no HTTP in it: what MNS does to messages.

A queue keeps each message in exactly one of three places:

* `ready`    - a heap of visible messages ordered by (priority, arrival): lower priority
               numbers first, then first in, first out;
* `pending`  - a heap of invisible messages ordered by the time they become visible again:
               delayed sends and received (in-flight) messages;
* `in_flight`- the receipt handle -> message map for received messages.

Heaps use lazy deletion: a message's `version` changes whenever it is rescheduled, and heap
entries carrying an old version are skipped when they surface. Every operation is therefore
O(log n), except GetQueueAttributes and peek which look at every message.

Nothing here blocks or knows about threads: the HTTP front runs every call on one event-loop
thread, and long polling is its business. The store only reports, through `wake`, that a
queue got visible messages so that waiting receivers can try again.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from vod_events.mns_server.errors import MNSError
from vod_events.mns_server.ids import IdSource, is_well_formed_handle
from vod_events.mns_server.model import (
    CHANGE_VISIBILITY_RANGE,
    DEFAULT_PRIORITY,
    DELAY_SECONDS_RANGE,
    LIST_RET_NUMBER_RANGE,
    MAX_BATCH,
    MAX_RECEIVE_COUNT_RANGE,
    PRIORITY_RANGE,
    USER_PROPERTY_TYPES,
    HandleFailure,
    MessageProperty,
    MessageView,
    OutgoingMessage,
    QueueAttributes,
    QueueAttributeUpdate,
    QueueInfo,
    SentMessage,
    body_md5,
    check_name,
    check_range,
    queue_arn,
)

# `wake(queue, n)` with this n wakes every receiver waiting on the queue (it was deleted).
WAKE_ALL = 1 << 30

# System properties the service sets on a message it moves to a dead-letter queue.
# The value of DLQMessageType is not documented; "QUEUE" names where the message died.
DLQ_MESSAGE_TYPE = "QUEUE"


@dataclass(frozen=True, slots=True)
class DeadLetterPolicy:
    """Messages of a queue received more than `max_receive_count` times move to `target`."""

    target: str
    max_receive_count: int


class _Message:
    """One stored message. Mutable: receives and visibility changes update it in place."""

    __slots__ = (
        "body",
        "body_md5",
        "dequeue_count",
        "enqueue_time",
        "expire_at",
        "first_dequeue_time",
        "gone",
        "group_id",
        "message_id",
        "priority",
        "receipt_handle",
        "seq",
        "system_properties",
        "user_properties",
        "version",
        "visible_at",
    )

    def __init__(
        self,
        *,
        seq: int,
        message_id: str,
        source: OutgoingMessage,
        priority: int,
        now: int,
        visible_at: int,
        expire_at: int,
    ) -> None:
        self.seq = seq
        self.message_id = message_id
        self.body = source.body
        self.body_md5 = body_md5(source.body)
        self.priority = priority
        self.group_id = source.group_id
        self.user_properties = source.user_properties
        self.system_properties = source.system_properties
        self.enqueue_time = now
        self.expire_at = expire_at
        self.visible_at = visible_at
        self.dequeue_count = 0
        self.first_dequeue_time = 0
        self.receipt_handle: str | None = None
        self.version = 0
        self.gone = False

    def view(self, with_handle: bool) -> MessageView:
        return MessageView(
            message_id=self.message_id,
            body=self.body,
            body_md5=self.body_md5,
            enqueue_time=self.enqueue_time,
            first_dequeue_time=self.first_dequeue_time,
            dequeue_count=self.dequeue_count,
            priority=self.priority,
            receipt_handle=self.receipt_handle if with_handle else None,
            next_visible_time=self.visible_at if with_handle else None,
            group_id=self.group_id,
            user_properties=self.user_properties,
            system_properties=self.system_properties,
        )


class _Queue:
    __slots__ = (
        "attributes",
        "create_time",
        "in_flight",
        "last_modify_time",
        "live",
        "name",
        "pending",
        "ready",
    )

    def __init__(self, name: str, attributes: QueueAttributes, now_s: int) -> None:
        self.name = name
        self.attributes = attributes
        self.create_time = now_s
        self.last_modify_time = now_s
        self.ready: list[tuple[int, int, _Message]] = []
        self.pending: list[tuple[int, int, int, _Message]] = []
        self.in_flight: dict[str, _Message] = {}
        self.live: dict[int, _Message] = {}  # seq -> every message still in the queue


class QueueStore:
    """All queues of the local server and the dead-letter policies between them.

    `clock` returns seconds since the epoch (tests pass a fake one); `wake` is called with
    (queue name, number of messages that just became visible) so that waiting long polls
    can retry.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.time,
        default_attributes: QueueAttributes | None = None,
        ids: IdSource | None = None,
    ) -> None:
        self._clock = clock
        self.default_attributes = (default_attributes or QueueAttributes()).validated()
        self._ids = ids or IdSource()
        self._queues: dict[str, _Queue] = {}
        self._policies: dict[str, DeadLetterPolicy] = {}
        self._next_seq = 0
        self.wake: Callable[[str, int], None] = _ignore_wake

    # ---------------------------------------------------------------- queues

    def now_ms(self) -> int:
        """The store's clock in milliseconds since the epoch."""
        return int(self._clock() * 1000)

    def create_queue(self, name: str, update: QueueAttributeUpdate) -> bool:
        """CreateQueue: True if created, False if it exists with the same attributes.

        Attributes not named take the server's defaults, as the service does; an existing
        queue with different attributes is QueueAlreadyExist.
        """
        check_name("queue", name)
        attributes = update.applied_to(self.default_attributes)
        existing = self._queues.get(name)
        if existing is not None:
            if existing.attributes == attributes:
                return False
            raise MNSError("QueueAlreadyExist")
        self._queues[name] = _Queue(name, attributes, self.now_ms() // 1000)
        return True

    def delete_queue(self, name: str) -> None:
        """DeleteQueue: the queue and its messages are gone; waiting receivers wake."""
        self._queue(name)
        del self._queues[name]
        self.wake(name, WAKE_ALL)

    def has_queue(self, name: str) -> bool:
        """True if the queue exists."""
        return name in self._queues

    def set_queue_attributes(self, name: str, update: QueueAttributeUpdate) -> None:
        """SetQueueAttributes: change the named attributes only."""
        queue = self._queue(name)
        queue.attributes = update.applied_to(queue.attributes)
        queue.last_modify_time = self.now_ms() // 1000

    def queue_info(self, name: str) -> QueueInfo:
        """GetQueueAttributes. Looks at every message (and drops expired ones): O(n)."""
        queue = self._queue(name)
        now = self.now_ms()
        self._promote(queue, now)
        active = inactive = delayed = 0
        for message in list(queue.live.values()):
            if message.expire_at <= now:
                self._discard(queue, message)
            elif message.receipt_handle is not None:
                inactive += 1
            elif message.visible_at <= now:
                active += 1
            else:
                delayed += 1
        return QueueInfo(
            name=name,
            attributes=queue.attributes,
            create_time=queue.create_time,
            last_modify_time=queue.last_modify_time,
            active_messages=active,
            inactive_messages=inactive,
            delay_messages=delayed,
        )

    def list_queues(
        self, prefix: str = "", marker: str = "", ret_number: int = 1000
    ) -> tuple[list[str], str]:
        """ListQueue: names in order from `marker`, at most `ret_number`, and the next marker
        ("" when there are no more)."""
        return list_page(self._queues, prefix, marker, ret_number)

    def polling_wait_seconds(self, name: str) -> int:
        """The queue's PollingWaitSeconds: a receive's wait when it names none."""
        return self._queue(name).attributes.polling_wait_seconds

    def set_dead_letter(self, source: str, target: str, max_receive_count: int) -> None:
        """Bind `source` to dead-letter queue `target`: the console's DlqPolicy."""
        check_name("queue", source)
        check_name("queue", target)
        if source == target:
            raise MNSError("InvalidArgument", "A queue cannot be its own dead-letter queue.")
        check_range("MaxReceiveCount", max_receive_count, MAX_RECEIVE_COUNT_RANGE)
        self._policies[source] = DeadLetterPolicy(target, max_receive_count)

    # -------------------------------------------------------------- messages

    def send(self, name: str, messages: Sequence[OutgoingMessage]) -> list[SentMessage]:
        """SendMessage / BatchSendMessage. The whole batch is checked before any is stored."""
        queue = self._queue(name)
        if not 1 <= len(messages) <= MAX_BATCH:
            raise MNSError(
                "InvalidArgument", f"The count of messages should between 1 and {MAX_BATCH}."
            )
        attributes = queue.attributes
        for message in messages:
            self._check_outgoing(message, attributes)
        now = self.now_ms()
        sent = []
        visible_now = 0
        for message in messages:
            delay = (
                attributes.delay_seconds if message.delay_seconds is None else message.delay_seconds
            )
            priority = DEFAULT_PRIORITY if message.priority is None else message.priority
            stored = self._store(
                queue,
                message,
                priority=priority,
                now=now,
                visible_at=now + delay * 1000,
                expire_at=now + attributes.message_retention_period * 1000,
            )
            if delay == 0:
                visible_now += 1
            sent.append(SentMessage(stored.message_id, stored.body_md5, stored.group_id))
        if visible_now:
            self.wake(name, visible_now)
        return sent

    def receive(self, name: str, max_count: int) -> list[MessageView]:
        """ReceiveMessage / BatchReceiveMessage without waiting: up to `max_count` visible
        messages, each made invisible for the queue's VisibilityTimeout under a new handle.
        An empty list is the service's MessageNotExist; the caller decides to wait or not."""
        queue = self._queue(name)
        check_range("numOfMessages", max_count, (1, MAX_BATCH))
        now = self.now_ms()
        self._promote(queue, now)
        timeout_ms = queue.attributes.visibility_timeout * 1000
        received: list[MessageView] = []
        while queue.ready and len(received) < max_count:
            message = heapq.heappop(queue.ready)[2]
            if message.gone:
                continue  # an expired message GetQueueAttributes already dropped
            if message.expire_at <= now:
                self._discard(queue, message)
                continue
            if self._move_if_dead(queue, message, now):
                continue
            message.dequeue_count += 1
            if message.first_dequeue_time == 0:
                message.first_dequeue_time = now
            self._hold(queue, message, now + timeout_ms)
            received.append(message.view(with_handle=True))
        return received

    def peek(self, name: str, max_count: int) -> list[MessageView]:
        """PeekMessage / BatchPeekMessage: the next visible messages, changing nothing."""
        queue = self._queue(name)
        check_range("numOfMessages", max_count, (1, MAX_BATCH))
        now = self.now_ms()
        self._promote(queue, now)
        expired = [entry[2] for entry in queue.ready if entry[2].expire_at <= now]
        for message in expired:
            self._discard(queue, message)
        if expired:
            queue.ready = [entry for entry in queue.ready if not entry[2].gone]
            heapq.heapify(queue.ready)
        return [
            entry[2].view(with_handle=False) for entry in heapq.nsmallest(max_count, queue.ready)
        ]

    def delete_message(self, name: str, receipt_handle: str) -> None:
        """DeleteMessage: only the latest handle, and only before its NextVisibleTime."""
        queue = self._queue(name)
        message = self._held(queue, receipt_handle)
        self._discard(queue, message)

    def delete_messages(self, name: str, receipt_handles: Sequence[str]) -> list[HandleFailure]:
        """BatchDeleteMessage: deletes what it can and returns the handles it could not use."""
        queue = self._queue(name)
        if not 1 <= len(receipt_handles) <= MAX_BATCH:
            raise MNSError(
                "InvalidArgument",
                f"The count of receipt handles should between 1 and {MAX_BATCH}.",
            )
        failures = []
        for handle in receipt_handles:
            try:
                self._discard(queue, self._held(queue, handle))
            except MNSError as error:
                failures.append(HandleFailure(handle, error.code, error.message))
        return failures

    def change_visibility(
        self, name: str, receipt_handle: str, visibility_timeout: int
    ) -> tuple[str, int]:
        """ChangeMessageVisibility: returns (new receipt handle, NextVisibleTime in ms).
        The old handle is dead from now on."""
        queue = self._queue(name)
        check_range("VisibilityTimeout", visibility_timeout, CHANGE_VISIBILITY_RANGE)
        message = self._held(queue, receipt_handle)
        now = self.now_ms()
        self._hold(queue, message, now + visibility_timeout * 1000)
        assert message.receipt_handle is not None
        if visibility_timeout == 0:
            self.wake(name, 1)
        return message.receipt_handle, message.visible_at

    def next_due_ms(self, name: str) -> int | None:
        """When the earliest invisible message of the queue may become visible (ms), if any.
        Long polls sleep no longer than this, so visibility expiry is noticed on time."""
        queue = self._queues.get(name)
        if queue is None or not queue.pending:
            return None
        return queue.pending[0][0]

    def advance(self) -> None:
        """Make due messages visible in every queue (and move dead letters) now.

        Receives do this for their own queue; calling it periodically makes dead-letter moves
        happen even when nobody touches the source queue.
        """
        now = self.now_ms()
        for queue in list(self._queues.values()):
            if queue.pending and queue.pending[0][0] <= now:
                self._promote(queue, now)

    # -------------------------------------------------------------- internals

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            raise MNSError("QueueNotExist")
        return queue

    def _check_outgoing(self, message: OutgoingMessage, attributes: QueueAttributes) -> None:
        if not message.body:
            raise MNSError("InvalidArgument", "The MessageBody should not be empty.")
        if len(message.body.encode("utf-8")) > attributes.maximum_message_size:
            raise MNSError(
                "InvalidArgument",
                "The length of message should not be larger than MaximumMessageSize "
                f"({attributes.maximum_message_size}).",
            )
        if message.delay_seconds is not None:
            check_range("DelaySeconds", message.delay_seconds, DELAY_SECONDS_RANGE)
        if message.priority is not None:
            check_range("Priority", message.priority, PRIORITY_RANGE)
        for prop in message.user_properties:
            if prop.type not in USER_PROPERTY_TYPES:
                raise MNSError(
                    "InvalidArgument", f"The type of user property {prop.name} is invalid."
                )

    def _store(
        self,
        queue: _Queue,
        source: OutgoingMessage,
        *,
        priority: int,
        now: int,
        visible_at: int,
        expire_at: int,
    ) -> _Message:
        self._next_seq += 1
        message = _Message(
            seq=self._next_seq,
            message_id=self._ids.message_id(now),
            source=source,
            priority=priority,
            now=now,
            visible_at=visible_at,
            expire_at=expire_at,
        )
        queue.live[message.seq] = message
        if visible_at <= now:
            heapq.heappush(queue.ready, (message.priority, message.seq, message))
        else:
            heapq.heappush(queue.pending, (visible_at, message.seq, 0, message))
        return message

    def _hold(self, queue: _Queue, message: _Message, visible_at: int) -> None:
        """Make `message` invisible until `visible_at` under a fresh receipt handle."""
        if message.receipt_handle is not None:
            del queue.in_flight[message.receipt_handle]
        handle = self._ids.receipt_handle()
        message.receipt_handle = handle
        message.visible_at = visible_at
        message.version += 1
        queue.in_flight[handle] = message
        heapq.heappush(queue.pending, (visible_at, message.seq, message.version, message))

    def _held(self, queue: _Queue, receipt_handle: str) -> _Message:
        """The message `receipt_handle` currently holds, or the service's error for it."""
        if not is_well_formed_handle(receipt_handle):
            raise MNSError("ReceiptHandleError")
        message = queue.in_flight.get(receipt_handle)
        if message is None or message.visible_at <= self.now_ms():
            raise MNSError("MessageNotExist")
        return message

    def _discard(self, queue: _Queue, message: _Message) -> None:
        """Remove a message for good; its heap entries become stale."""
        message.gone = True
        queue.live.pop(message.seq, None)
        if message.receipt_handle is not None:
            queue.in_flight.pop(message.receipt_handle, None)
            message.receipt_handle = None

    def _promote(self, queue: _Queue, now: int) -> None:
        """Move messages whose invisibility has ended from `pending` to `ready`."""
        became_visible = 0
        pending = queue.pending
        while pending and pending[0][0] <= now:
            _, _, version, message = heapq.heappop(pending)
            if message.gone or version != message.version:
                continue  # deleted, or rescheduled since this entry was pushed
            if message.receipt_handle is not None:
                del queue.in_flight[message.receipt_handle]
                message.receipt_handle = None
            if message.expire_at <= now:
                self._discard(queue, message)
            elif not self._move_if_dead(queue, message, now):
                heapq.heappush(queue.ready, (message.priority, message.seq, message))
                became_visible += 1
        if became_visible:
            self.wake(queue.name, became_visible)

    def _move_if_dead(self, queue: _Queue, message: _Message, now: int) -> bool:
        """Move `message` to its dead-letter queue if it has used up its receives."""
        policy = self._policies.get(queue.name)
        if policy is None or message.dequeue_count < policy.max_receive_count:
            return False
        target = self._queues.get(policy.target)
        if target is None:
            return False  # no target to move to: the message stays deliverable
        self._discard(queue, message)
        dead_letter = OutgoingMessage(
            body=message.body,
            group_id=message.group_id,
            user_properties=message.user_properties,
            system_properties=(
                *message.system_properties,
                MessageProperty("DLQMessageType", DLQ_MESSAGE_TYPE, "STRING"),
                MessageProperty("DLQSourceArn", queue_arn(queue.name), "STRING"),
                MessageProperty("DLQOriginMessageId", message.message_id, "STRING"),
            ),
        )
        # The service does not restart the retention period when a message moves.
        self._store(
            target,
            dead_letter,
            priority=message.priority,
            now=now,
            visible_at=now,
            expire_at=message.expire_at,
        )
        self.wake(target.name, 1)
        return True


def list_page(
    names: Iterable[str], prefix: str, marker: str, ret_number: int
) -> tuple[list[str], str]:
    """One page of a List* operation: sorted names with `prefix`, starting at `marker`,
    and the next marker ("" when this is the last page). Shared with the topic store."""
    check_range("x-mns-ret-number", ret_number, LIST_RET_NUMBER_RANGE)
    matching = sorted(n for n in names if n.startswith(prefix) and n >= marker)
    page = matching[:ret_number]
    next_marker = matching[ret_number] if len(matching) > ret_number else ""
    return page, next_marker


def _ignore_wake(queue: str, count: int) -> None:
    """The default `wake`: nobody is waiting."""
