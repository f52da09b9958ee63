"""The bodies a topic pushes into a subscribed queue, per NotifyContentFormat.

* SIMPLIFIED - the published body, unchanged.
* JSON       - an object with TopicOwner, TopicName, Subscriber, SubscriptionName, MessageId,
               Message, MessageMD5, [MessageTag,] PublishTime. The service's documentation
               shows PublishTime as a string of milliseconds; that is what we send.
* XML        - a `<Notification>` document with the same fields, in the order recorded from
               the real service, namespace with its trailing slash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from vod_events.mns_server.wire import escape_text

SIMPLIFIED = "SIMPLIFIED"
JSON = "JSON"
XML = "XML"
CONTENT_FORMATS = (XML, JSON, SIMPLIFIED)
NOTIFICATION_NAMESPACE = "http://mns.aliyuncs.com/doc/v1/"


@dataclass(frozen=True, slots=True)
class Publication:
    """One published message, as every subscription's envelope describes it."""

    topic_owner: str
    topic_name: str
    message_id: str
    body: str
    body_md5: str
    publish_time: int  # ms since the epoch
    message_tag: str = ""


def envelope(publication: Publication, subscription_name: str, content_format: str) -> str:
    """The queue message body a subscription with `content_format` receives."""
    if content_format == SIMPLIFIED:
        return publication.body
    if content_format == JSON:
        return _json_envelope(publication, subscription_name)
    if content_format == XML:
        return _xml_envelope(publication, subscription_name)
    raise ValueError(f"unknown NotifyContentFormat {content_format!r}")


def _fields(publication: Publication, subscription_name: str) -> list[tuple[str, str]]:
    fields = [
        ("TopicOwner", publication.topic_owner),
        ("TopicName", publication.topic_name),
        ("Subscriber", publication.topic_owner),
        ("SubscriptionName", subscription_name),
        ("MessageId", publication.message_id),
        ("MessageMD5", publication.body_md5),
    ]
    if publication.message_tag:
        fields.append(("MessageTag", publication.message_tag))
    fields.append(("Message", publication.body))
    fields.append(("PublishTime", str(publication.publish_time)))
    return fields


def _json_envelope(publication: Publication, subscription_name: str) -> str:
    return json.dumps(
        dict(_fields(publication, subscription_name)), ensure_ascii=False, separators=(",", ":")
    )


def _xml_envelope(publication: Publication, subscription_name: str) -> str:
    lines = ['<?xml version="1.0" encoding="UTF-8"?>']
    lines.append(f'<Notification xmlns="{NOTIFICATION_NAMESPACE}">')
    lines += [
        f"  <{name}>{escape_text(value)}</{name}>"
        for name, value in _fields(publication, subscription_name)
    ]
    lines.append("</Notification>")
    return "\n".join(lines)
