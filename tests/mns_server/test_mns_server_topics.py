"""Topics on the local MNS server: topic and subscription operations through the SDK, and the
envelope each NotifyContentFormat pushes into a subscribed queue."""

from __future__ import annotations

import hashlib
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import pytest
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.subscription import SubscriptionMeta
from mns.topic import TopicMessage, TopicMeta

from vod_events.mns_server import LocalMNSServer
from vod_events.mns_server.model import ACCOUNT_ID

BODY = '{"EventType":"AIMediaDNAComplete","JobId":"j-1","Status":"success"}'
NOTIFICATION = "{http://mns.aliyuncs.com/doc/v1/}"


@pytest.fixture
def server() -> Iterator[LocalMNSServer]:
    with LocalMNSServer(queues=("inbox",), access_key_id="id", access_key_secret="sk") as srv:
        yield srv


@pytest.fixture
def account(server: LocalMNSServer) -> Any:
    return Account(server.endpoint, "id", "sk")


@pytest.fixture
def inbox(account: Any) -> Any:
    queue = account.get_queue("inbox")
    queue.set_encoding(False)  # envelopes are raw text, not Base64
    return queue


def queue_endpoint(queue: str) -> str:
    return f"acs:mns:local:{ACCOUNT_ID}:queues/{queue}"


def subscribe(account: Any, content_format: str = "", filter_tag: str = "") -> Any:
    topic = account.get_topic("vod-events")
    topic.create(TopicMeta())
    meta = SubscriptionMeta(queue_endpoint("inbox"), "", content_format, filter_tag)
    topic.get_subscription(f"sub-{content_format or 'default'}").subscribe(meta)
    return topic


def test_simplified_pushes_the_published_body(account: Any, inbox: Any) -> None:
    topic = subscribe(account, "SIMPLIFIED")
    published = topic.publish_message(TopicMessage(BODY))
    assert published.message_body_md5 == hashlib.md5(BODY.encode()).hexdigest().upper()
    received = inbox.receive_message(wait_seconds=1)
    assert received.message_body == BODY
    assert received.message_id != published.message_id  # a queue message of its own


def test_json_envelope(account: Any, inbox: Any) -> None:
    topic = subscribe(account, "JSON")
    before = int(time.time() * 1000)
    published = topic.publish_message(TopicMessage(BODY, message_tag="ai"))
    envelope = json.loads(inbox.receive_message(wait_seconds=1).message_body)
    publish_time = envelope.pop("PublishTime")
    assert envelope == {
        "TopicOwner": ACCOUNT_ID,
        "TopicName": "vod-events",
        "Subscriber": ACCOUNT_ID,
        "SubscriptionName": "sub-JSON",
        "MessageId": published.message_id,
        "MessageMD5": published.message_body_md5,
        "MessageTag": "ai",
        "Message": BODY,
    }
    assert isinstance(publish_time, str)  # as the service documents it
    assert before - 5000 <= int(publish_time) <= before + 5000


def test_xml_envelope_is_the_default(account: Any, inbox: Any) -> None:
    topic = subscribe(account)  # NotifyContentFormat not given
    assert topic.get_subscription("sub-default").get_attributes().notify_content_format == "XML"
    published = topic.publish_message(TopicMessage("a < b & c"))
    body = inbox.receive_message(wait_seconds=1).message_body
    root = ET.fromstring(body)  # noqa: S314 - our own server's output
    assert root.tag == f"{NOTIFICATION}Notification"
    fields = {child.tag.removeprefix(NOTIFICATION): child.text for child in root}
    assert fields["Message"] == "a < b & c"
    assert fields["MessageId"] == published.message_id
    assert fields["MessageMD5"] == published.message_body_md5
    assert fields["TopicName"] == "vod-events"
    assert fields["SubscriptionName"] == "sub-default"
    assert fields["TopicOwner"] == fields["Subscriber"] == ACCOUNT_ID
    assert fields["PublishTime"] is not None
    assert fields["PublishTime"].isdigit()
    assert "MessageTag" not in fields  # published without a tag


def test_filter_tag_selects_messages(account: Any, inbox: Any) -> None:
    topic = subscribe(account, "SIMPLIFIED", filter_tag="audit")
    topic.publish_message(TopicMessage("untagged"))
    topic.publish_message(TopicMessage("other tag", message_tag="tags"))
    topic.publish_message(TopicMessage("matching", message_tag="audit"))
    received = inbox.batch_receive_message(16, wait_seconds=1)
    assert [m.message_body for m in received] == ["matching"]


def test_every_subscription_gets_its_own_envelope(
    server: LocalMNSServer, account: Any, inbox: Any
) -> None:
    server.create_queue("archive")
    topic = account.get_topic("fanout")
    topic.create(TopicMeta())
    topic.get_subscription("to-inbox").subscribe(
        SubscriptionMeta(queue_endpoint("inbox"), notify_content_format="SIMPLIFIED")
    )
    topic.get_subscription("to-archive").subscribe(
        SubscriptionMeta(queue_endpoint("archive"), notify_content_format="JSON")
    )
    topic.publish_message(TopicMessage("hello"))
    archive = account.get_queue("archive")
    archive.set_encoding(False)
    assert inbox.receive_message(wait_seconds=1).message_body == "hello"
    assert json.loads(archive.receive_message(wait_seconds=1).message_body)["Message"] == "hello"


def test_topic_operations(account: Any, server: LocalMNSServer) -> None:
    topic = account.get_topic("ops")
    url = topic.create(TopicMeta(maximum_message_size=4096))
    assert url == f"{server.endpoint}/topics/ops"
    assert topic.create(TopicMeta(maximum_message_size=4096)) == url  # same attributes: 204
    with pytest.raises(MNSServerException) as conflict:
        topic.create(TopicMeta(maximum_message_size=8192))
    assert conflict.value.type == "TopicAlreadyExist"

    meta = topic.get_attributes()
    assert (meta.topic_name, meta.maximum_message_size, meta.logging_enabled) == (
        "ops",
        4096,
        False,
    )
    assert (meta.message_count, meta.message_retention_period) == (0, 86400)
    topic.set_attributes(TopicMeta(maximum_message_size=2048, logging_enabled=True))
    meta = topic.get_attributes()
    assert (meta.maximum_message_size, meta.logging_enabled) == (2048, True)

    with pytest.raises(MNSServerException) as too_big:
        topic.publish_message(TopicMessage("x" * 2049))
    assert too_big.value.type == "InvalidArgument"

    account.get_topic("ops-2").create(TopicMeta())
    urls, marker = account.list_topic(prefix="ops", ret_number=1)
    assert (urls, marker) == ([url], "ops-2")

    topic.delete()
    with pytest.raises(MNSServerException) as gone:
        topic.get_attributes()
    assert gone.value.type == "TopicNotExist"


def test_subscription_operations(account: Any, server: LocalMNSServer) -> None:
    topic = account.get_topic("subs")
    topic.create(TopicMeta())
    subscription = topic.get_subscription("s1")
    meta = SubscriptionMeta(queue_endpoint("inbox"), "BACKOFF_RETRY", "JSON", "tag")
    url = subscription.subscribe(meta)
    assert url == f"{server.endpoint}/topics/subs/subscriptions/s1"
    assert subscription.subscribe(meta) == url  # same attributes: 204
    with pytest.raises(MNSServerException) as conflict:
        subscription.subscribe(
            SubscriptionMeta(queue_endpoint("inbox"), notify_content_format="XML")
        )
    assert conflict.value.type == "SubscriptionAlreadyExist"

    attributes = subscription.get_attributes()
    assert (attributes.topic_name, attributes.subscription_name) == ("subs", "s1")
    assert (attributes.endpoint, attributes.filter_tag) == (queue_endpoint("inbox"), "tag")
    assert (attributes.notify_strategy, attributes.notify_content_format) == (
        "BACKOFF_RETRY",
        "JSON",
    )
    assert attributes.topic_owner == ACCOUNT_ID

    subscription.set_attributes(SubscriptionMeta(notify_strategy="EXPONENTIAL_DECAY_RETRY"))
    assert subscription.get_attributes().notify_strategy == "EXPONENTIAL_DECAY_RETRY"

    topic.get_subscription("s2").subscribe(SubscriptionMeta(queue_endpoint("inbox")))
    assert topic.list_subscription() == (
        [url, f"{server.endpoint}/topics/subs/subscriptions/s2"],
        "",
    )

    subscription.unsubscribe()
    with pytest.raises(MNSServerException) as gone:
        subscription.get_attributes()
    assert gone.value.type == "SubscriptionNotExist"


@pytest.mark.parametrize(
    ("meta", "code"),
    [
        (SubscriptionMeta("http://example.com/notify"), "InvalidArgument"),
        (SubscriptionMeta(queue_endpoint("inbox"), "SOMETIMES"), "InvalidArgument"),
        (
            SubscriptionMeta(queue_endpoint("inbox"), notify_content_format="YAML"),
            "InvalidArgument",
        ),
    ],
)
def test_subscribe_refuses_what_the_local_server_cannot_push(
    account: Any, meta: Any, code: str
) -> None:
    topic = account.get_topic("refusing")
    topic.create(TopicMeta())
    with pytest.raises(MNSServerException) as refused:
        topic.get_subscription("s").subscribe(meta)
    assert refused.value.type == code


def test_topic_not_exist(account: Any) -> None:
    missing = account.get_topic("missing")
    with pytest.raises(MNSServerException) as publish:
        missing.publish_message(TopicMessage("x"))
    with pytest.raises(MNSServerException) as subscribe_to:
        missing.get_subscription("s").subscribe(SubscriptionMeta(queue_endpoint("inbox")))
    assert publish.value.type == subscribe_to.value.type == "TopicNotExist"


def test_push_to_a_missing_queue_is_dropped_and_others_still_delivered(
    account: Any, inbox: Any
) -> None:
    topic = account.get_topic("orphan")
    topic.create(TopicMeta())
    topic.get_subscription("lost").subscribe(SubscriptionMeta(queue_endpoint("no-such-queue")))
    topic.get_subscription("kept").subscribe(
        SubscriptionMeta(queue_endpoint("inbox"), notify_content_format="SIMPLIFIED")
    )
    topic.publish_message(TopicMessage("still delivered"))
    assert inbox.receive_message(wait_seconds=1).message_body == "still delivered"
