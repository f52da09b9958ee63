"""Values that pass between the wire layer and the stores: what a sender supplies, what a
receiver gets back, queue and topic attributes, and the service's limits.

These are plain immutable records; the behaviour lives in `queues.py` and `topics.py`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TypeVar

from vod_events.mns_server.errors import MNSError, out_of_range

_T = TypeVar("_T")

# The service's limits (MNS API 2015-06-06).
MAX_BATCH = 16
MAX_WAIT_SECONDS = 30
DEFAULT_PRIORITY = 8
PRIORITY_RANGE = (1, 16)
VISIBILITY_TIMEOUT_RANGE = (1, 43200)
CHANGE_VISIBILITY_RANGE = (0, 43200)  # 0 makes the message visible again at once
MAXIMUM_MESSAGE_SIZE_RANGE = (1024, 65536)
MESSAGE_RETENTION_RANGE = (60, 604800)
DELAY_SECONDS_RANGE = (0, 604800)
POLLING_WAIT_RANGE = (0, MAX_WAIT_SECONDS)
LIST_RET_NUMBER_RANGE = (1, 1000)
MAX_RECEIVE_COUNT_RANGE = (1, 1000)
MAX_NAME_LENGTH = 256
TOPIC_MESSAGE_RETENTION = 86400
USER_PROPERTY_TYPES = frozenset({"STRING", "NUMBER", "BOOLEAN", "BINARY"})

# The local server stands for one account in one region; these name it in ARNs and envelopes.
ACCOUNT_ID = "1000000000000000"
REGION = "local"


def check_range(element: str, value: int, bounds: tuple[int, int]) -> int:
    """Return `value`, or raise the service's InvalidArgument if it is outside `bounds`."""
    low, high = bounds
    if not low <= value <= high:
        raise out_of_range(element, low, high)
    return value


def body_md5(body: str) -> str:
    """MessageBodyMD5: upper-case hex MD5 of the body text as transmitted (UTF-8)."""
    return hashlib.md5(body.encode("utf-8")).hexdigest().upper()


def queue_arn(queue: str) -> str:
    """The ARN the service uses for a queue (e.g. in DLQSourceArn)."""
    return f"acs:mns:{REGION}:{ACCOUNT_ID}:/queues/{queue}"


@dataclass(frozen=True, slots=True)
class MessageProperty:
    """One user or system property: the wire's `<Name/><Value/><Type/>` triple, verbatim."""

    name: str
    value: str
    type: str


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message as a sender supplies it. `None` means "use the queue's default"."""

    body: str
    delay_seconds: int | None = None
    priority: int | None = None
    group_id: str = ""
    user_properties: tuple[MessageProperty, ...] = ()
    system_properties: tuple[MessageProperty, ...] = ()


@dataclass(frozen=True, slots=True)
class SentMessage:
    """The service's answer to a send: the new id and the body's MD5."""

    message_id: str
    body_md5: str
    group_id: str = ""


@dataclass(frozen=True, slots=True)
class MessageView:
    """A message as a receive or peek returns it (times in ms since the epoch).

    `receipt_handle` and `next_visible_time` are `None` for a peek, which holds nothing.
    `first_dequeue_time` is 0 for a message never received.
    """

    message_id: str
    body: str
    body_md5: str
    enqueue_time: int
    first_dequeue_time: int
    dequeue_count: int
    priority: int
    receipt_handle: str | None = None
    next_visible_time: int | None = None
    group_id: str = ""
    user_properties: tuple[MessageProperty, ...] = ()
    system_properties: tuple[MessageProperty, ...] = ()


@dataclass(frozen=True, slots=True)
class HandleFailure:
    """One receipt handle a batch delete could not use, with the service's error for it."""

    receipt_handle: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class QueueAttributes:
    """A queue's settable attributes, with the service's defaults."""

    visibility_timeout: int = 30
    maximum_message_size: int = 65536
    message_retention_period: int = 345600
    delay_seconds: int = 0
    polling_wait_seconds: int = 0
    logging_enabled: bool = False

    def validated(self) -> QueueAttributes:
        """Return self, or raise InvalidArgument naming the first value out of range."""
        check_range("VisibilityTimeout", self.visibility_timeout, VISIBILITY_TIMEOUT_RANGE)
        check_range("MaximumMessageSize", self.maximum_message_size, MAXIMUM_MESSAGE_SIZE_RANGE)
        check_range(
            "MessageRetentionPeriod", self.message_retention_period, MESSAGE_RETENTION_RANGE
        )
        check_range("DelaySeconds", self.delay_seconds, DELAY_SECONDS_RANGE)
        check_range("PollingWaitSeconds", self.polling_wait_seconds, POLLING_WAIT_RANGE)
        return self


@dataclass(frozen=True, slots=True)
class QueueAttributeUpdate:
    """The attributes a CreateQueue or SetQueueAttributes request names; `None` = not given."""

    visibility_timeout: int | None = None
    maximum_message_size: int | None = None
    message_retention_period: int | None = None
    delay_seconds: int | None = None
    polling_wait_seconds: int | None = None
    logging_enabled: bool | None = None

    def applied_to(self, base: QueueAttributes) -> QueueAttributes:
        """`base` with every given attribute replaced, validated."""
        return QueueAttributes(
            visibility_timeout=_pick(self.visibility_timeout, base.visibility_timeout),
            maximum_message_size=_pick(self.maximum_message_size, base.maximum_message_size),
            message_retention_period=_pick(
                self.message_retention_period, base.message_retention_period
            ),
            delay_seconds=_pick(self.delay_seconds, base.delay_seconds),
            polling_wait_seconds=_pick(self.polling_wait_seconds, base.polling_wait_seconds),
            logging_enabled=_pick(self.logging_enabled, base.logging_enabled),
        ).validated()


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """GetQueueAttributes: attributes, message counts and times (seconds since the epoch)."""

    name: str
    attributes: QueueAttributes
    create_time: int
    last_modify_time: int
    active_messages: int
    inactive_messages: int
    delay_messages: int


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """GetTopicAttributes (times in seconds since the epoch)."""

    name: str
    maximum_message_size: int
    logging_enabled: bool
    create_time: int
    last_modify_time: int
    message_count: int = 0
    message_retention_period: int = TOPIC_MESSAGE_RETENTION


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    """GetSubscriptionAttributes (times in seconds since the epoch)."""

    topic_name: str
    name: str
    endpoint: str
    notify_strategy: str
    notify_content_format: str
    filter_tag: str
    create_time: int
    last_modify_time: int
    topic_owner: str = ACCOUNT_ID


def check_name(kind: str, name: str) -> str:
    """Return `name` if the service would accept it for a queue/topic/subscription.

    Names start with a letter and hold letters, digits and hyphens, 1-256 characters.
    """
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        if kind == "queue":
            raise MNSError("QueueNameLengthError")
        raise MNSError(f"Invalid{kind.capitalize()}Name")
    if not (name[0].isascii() and name[0].isalpha()) or not all(
        c.isascii() and (c.isalnum() or c == "-") for c in name
    ):
        raise MNSError(f"Invalid{kind.capitalize()}Name")
    return name


def _pick(given: _T | None, current: _T) -> _T:
    return current if given is None else given


@dataclass(frozen=True, slots=True)
class TopicAttributeUpdate:
    """The attributes a CreateTopic or SetTopicAttributes request names; `None` = not given."""

    maximum_message_size: int | None = None
    logging_enabled: bool | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionRequest:
    """The fields of a Subscribe or SetSubscriptionAttributes request; "" = not given."""

    endpoint: str = ""
    notify_strategy: str = ""
    notify_content_format: str = ""
    filter_tag: str = ""


@dataclass(frozen=True, slots=True)
class TopicMessage:
    """A message as a publisher supplies it."""

    body: str
    message_tag: str = ""
