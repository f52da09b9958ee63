"""Topic state and semantics: topics, their queue subscriptions, and publishing.

Publishing pushes one envelope per matching subscription straight into the subscribed
queue (see `envelopes.py` for the three NotifyContentFormats). The local server pushes only
to queue endpoints (`acs:mns:<region>:<account>:queues/<name>`); HTTP, mail and SMS
endpoints are refused with InvalidArgument. A push to a queue that does not exist (or that
refuses the envelope) is dropped, where the service would retry it for a while.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from vod_events.mns_server.envelopes import CONTENT_FORMATS, XML, Publication, envelope
from vod_events.mns_server.errors import MNSError
from vod_events.mns_server.ids import IdSource
from vod_events.mns_server.model import (
    ACCOUNT_ID,
    MAXIMUM_MESSAGE_SIZE_RANGE,
    OutgoingMessage,
    SentMessage,
    SubscriptionInfo,
    SubscriptionRequest,
    TopicAttributeUpdate,
    TopicInfo,
    TopicMessage,
    body_md5,
    check_name,
    check_range,
)
from vod_events.mns_server.queues import QueueStore, list_page

log = logging.getLogger(__name__)

NOTIFY_STRATEGIES = ("BACKOFF_RETRY", "EXPONENTIAL_DECAY_RETRY")
DEFAULT_NOTIFY_STRATEGY = "BACKOFF_RETRY"
MAX_TAG_LENGTH = 16
QUEUE_ENDPOINT = re.compile(r"acs:mns:[^:]*:[^:]*:/?queues/(?P<queue>[A-Za-z0-9-]+)")


@dataclass(slots=True)
class _Topic:
    name: str
    maximum_message_size: int
    logging_enabled: bool
    create_time: int
    last_modify_time: int
    subscriptions: dict[str, SubscriptionInfo]


class TopicStore:
    """All topics of the local server. Pushes go into `queues`."""

    def __init__(
        self, queues: QueueStore, ids: IdSource, clock: Callable[[], float] = time.time
    ) -> None:
        self._queues = queues
        self._ids = ids
        self._clock = clock
        self._topics: dict[str, _Topic] = {}

    def create_topic(self, name: str, update: TopicAttributeUpdate) -> bool:
        """CreateTopic: True if created, False if it exists with the same attributes."""
        check_name("topic", name)
        size, logging_enabled = self._attributes(update, 65536, False)
        existing = self._topics.get(name)
        if existing is not None:
            if (existing.maximum_message_size, existing.logging_enabled) == (size, logging_enabled):
                return False
            raise MNSError("TopicAlreadyExist")
        now = self._now_s()
        self._topics[name] = _Topic(name, size, logging_enabled, now, now, {})
        return True

    def delete_topic(self, name: str) -> None:
        """DeleteTopic, with its subscriptions."""
        self._topic(name)
        del self._topics[name]

    def topic_info(self, name: str) -> TopicInfo:
        """GetTopicAttributes. Pushes are immediate, so no message ever waits in a topic."""
        topic = self._topic(name)
        return TopicInfo(
            name=name,
            maximum_message_size=topic.maximum_message_size,
            logging_enabled=topic.logging_enabled,
            create_time=topic.create_time,
            last_modify_time=topic.last_modify_time,
        )

    def set_topic_attributes(self, name: str, update: TopicAttributeUpdate) -> None:
        """SetTopicAttributes: change the named attributes only."""
        topic = self._topic(name)
        topic.maximum_message_size, topic.logging_enabled = self._attributes(
            update, topic.maximum_message_size, topic.logging_enabled
        )
        topic.last_modify_time = self._now_s()

    def list_topics(
        self, prefix: str = "", marker: str = "", ret_number: int = 1000
    ) -> tuple[list[str], str]:
        """ListTopic: one page of names and the next marker."""
        return list_page(self._topics, prefix, marker, ret_number)

    def subscribe(self, topic_name: str, name: str, request: SubscriptionRequest) -> bool:
        """Subscribe: True if created, False if it exists with the same attributes."""
        topic = self._topic(topic_name)
        check_name("subscription", name)
        if QUEUE_ENDPOINT.fullmatch(request.endpoint) is None:
            raise MNSError(
                "InvalidArgument",
                "The local MNS server pushes only to queue endpoints "
                "(acs:mns:<region>:<account-id>:queues/<queue-name>).",
            )
        strategy = request.notify_strategy or DEFAULT_NOTIFY_STRATEGY
        content_format = request.notify_content_format or XML
        if strategy not in NOTIFY_STRATEGIES:
            raise MNSError("InvalidArgument", f"The NotifyStrategy {strategy} is invalid.")
        if content_format not in CONTENT_FORMATS:
            raise MNSError(
                "InvalidArgument", f"The NotifyContentFormat {content_format} is invalid."
            )
        if len(request.filter_tag) > MAX_TAG_LENGTH:
            raise MNSError("InvalidArgument", "The length of FilterTag should be at most 16.")
        now = self._now_s()
        wanted = SubscriptionInfo(
            topic_name=topic_name,
            name=name,
            endpoint=request.endpoint,
            notify_strategy=strategy,
            notify_content_format=content_format,
            filter_tag=request.filter_tag,
            create_time=now,
            last_modify_time=now,
        )
        existing = topic.subscriptions.get(name)
        if existing is not None:
            unchanged = replace(
                wanted,
                create_time=existing.create_time,
                last_modify_time=existing.last_modify_time,
            )
            if unchanged == existing:
                return False
            raise MNSError("SubscriptionAlreadyExist")
        topic.subscriptions[name] = wanted
        return True

    def unsubscribe(self, topic_name: str, name: str) -> None:
        """Unsubscribe."""
        self._subscription(topic_name, name)
        del self._topics[topic_name].subscriptions[name]

    def subscription_info(self, topic_name: str, name: str) -> SubscriptionInfo:
        """GetSubscriptionAttributes."""
        return self._subscription(topic_name, name)

    def set_subscription_attributes(
        self, topic_name: str, name: str, request: SubscriptionRequest
    ) -> None:
        """SetSubscriptionAttributes: only NotifyStrategy can change."""
        current = self._subscription(topic_name, name)
        strategy = request.notify_strategy or current.notify_strategy
        if strategy not in NOTIFY_STRATEGIES:
            raise MNSError("InvalidArgument", f"The NotifyStrategy {strategy} is invalid.")
        self._topics[topic_name].subscriptions[name] = replace(
            current, notify_strategy=strategy, last_modify_time=self._now_s()
        )

    def list_subscriptions(
        self, topic_name: str, prefix: str = "", marker: str = "", ret_number: int = 1000
    ) -> tuple[list[str], str]:
        """ListSubscriptionByTopic: one page of subscription names and the next marker."""
        return list_page(self._topic(topic_name).subscriptions, prefix, marker, ret_number)

    def publish(self, topic_name: str, message: TopicMessage) -> SentMessage:
        """PublishMessage: push the message to every subscription whose filter matches."""
        topic = self._topic(topic_name)
        if not message.body:
            raise MNSError("InvalidArgument", "The MessageBody should not be empty.")
        if len(message.body.encode("utf-8")) > topic.maximum_message_size:
            raise MNSError(
                "InvalidArgument",
                "The length of message should not be larger than MaximumMessageSize "
                f"({topic.maximum_message_size}).",
            )
        if len(message.message_tag) > MAX_TAG_LENGTH:
            raise MNSError("InvalidArgument", "The length of MessageTag should be at most 16.")
        now_ms = int(self._clock() * 1000)
        publication = Publication(
            topic_owner=ACCOUNT_ID,
            topic_name=topic_name,
            message_id=self._ids.message_id(now_ms),
            body=message.body,
            body_md5=body_md5(message.body),
            publish_time=now_ms,
            message_tag=message.message_tag,
        )
        for subscription in topic.subscriptions.values():
            if subscription.filter_tag and subscription.filter_tag != message.message_tag:
                continue
            self._push(publication, subscription)
        return SentMessage(publication.message_id, publication.body_md5)

    def _push(self, publication: Publication, subscription: SubscriptionInfo) -> None:
        match = QUEUE_ENDPOINT.fullmatch(subscription.endpoint)
        assert match is not None  # checked when subscribing
        body = envelope(publication, subscription.name, subscription.notify_content_format)
        try:
            self._queues.send(match["queue"], [OutgoingMessage(body=body)])
        except MNSError as error:
            log.info(
                "push of %s to %s dropped: %s",
                publication.message_id,
                subscription.endpoint,
                error.code,
            )

    def _attributes(
        self, update: TopicAttributeUpdate, size: int, logging_enabled: bool
    ) -> tuple[int, bool]:
        if update.maximum_message_size is not None:
            size = check_range(
                "MaximumMessageSize", update.maximum_message_size, MAXIMUM_MESSAGE_SIZE_RANGE
            )
        if update.logging_enabled is not None:
            logging_enabled = update.logging_enabled
        return size, logging_enabled

    def _topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            raise MNSError("TopicNotExist")
        return topic

    def _subscription(self, topic_name: str, name: str) -> SubscriptionInfo:
        subscription = self._topic(topic_name).subscriptions.get(name)
        if subscription is None:
            raise MNSError("SubscriptionNotExist")
        return subscription

    def _now_s(self) -> int:
        return int(self._clock())
