"""XML on the wire: request bodies in, response bodies out, shaped as SDK 1.3.0 needs them.

Decoding is lenient about namespaces (the SDK sends `http://mns.aliyuncs.com/doc/v1/`) and
strict about content: broken XML is MalformedXML, bad numbers are InvalidArgument.

Encoding follows what the SDK's minidom decoders can read: default namespace
`http://mns.aliyuncs.com/doc/v1` only, text escaped (never CDATA, because the SDK reads
`firstChild.data`), and optional elements omitted rather than left empty - an empty element
that the SDK passes to `int()` (or an empty `<NextMarker/>`) breaks it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from vod_events.mns_server.errors import MNSError
from vod_events.mns_server.model import (
    HandleFailure,
    MessageProperty,
    MessageView,
    OutgoingMessage,
    QueueAttributeUpdate,
    QueueInfo,
    SentMessage,
    SubscriptionInfo,
    SubscriptionRequest,
    TopicAttributeUpdate,
    TopicInfo,
    TopicMessage,
)

RESPONSE_NAMESPACE = "http://mns.aliyuncs.com/doc/v1"
_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'

# ------------------------------------------------------------------ decoding requests


def _parse(body: bytes, *roots: str) -> ET.Element:
    """Parse a request body whose root element (namespace ignored) is one of `roots`."""
    try:
        # The body comes from a client of a local development server; expat (>= 2.4) limits
        # entity expansion, so the stdlib parser is adequate here.
        root = ET.fromstring(body)  # noqa: S314
    except ET.ParseError as error:
        raise MNSError("MalformedXML") from error
    if _local(root.tag) not in roots:
        raise MNSError("MalformedXML", f"The root element should be {' or '.join(roots)}.")
    return root


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _children(element: ET.Element) -> dict[str, ET.Element]:
    return {_local(child.tag): child for child in element}


def _text(element: ET.Element | None) -> str | None:
    return None if element is None else (element.text or "")


def _int(name: str, element: ET.Element | None) -> int | None:
    text = _text(element)
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        raise MNSError("InvalidArgument", f"The value of {name} should be an integer.") from None


def _bool(name: str, element: ET.Element | None) -> bool | None:
    text = _text(element)
    if text is None:
        return None
    lowered = text.strip().lower()
    if lowered not in ("true", "false"):
        raise MNSError("InvalidArgument", f"The value of {name} should be True or False.")
    return lowered == "true"


def decode_queue_attributes(body: bytes) -> QueueAttributeUpdate:
    """A `<Queue>` body (CreateQueue, SetQueueAttributes). An empty body names nothing."""
    if not body.strip():
        return QueueAttributeUpdate()
    fields = _children(_parse(body, "Queue"))
    return QueueAttributeUpdate(
        visibility_timeout=_int("VisibilityTimeout", fields.get("VisibilityTimeout")),
        maximum_message_size=_int("MaximumMessageSize", fields.get("MaximumMessageSize")),
        message_retention_period=_int(
            "MessageRetentionPeriod", fields.get("MessageRetentionPeriod")
        ),
        delay_seconds=_int("DelaySeconds", fields.get("DelaySeconds")),
        polling_wait_seconds=_int("PollingWaitSeconds", fields.get("PollingWaitSeconds")),
        logging_enabled=_bool("LoggingEnabled", fields.get("LoggingEnabled")),
    )


def decode_send(body: bytes) -> tuple[list[OutgoingMessage], bool]:
    """A SendMessage (`<Message>`) or BatchSendMessage (`<Messages>`) body.

    Returns the messages and whether the request was a batch (the response shape differs).
    """
    root = _parse(body, "Message", "Messages")
    if _local(root.tag) == "Message":
        return [_decode_message(root)], False
    return [_decode_message(child) for child in root if _local(child.tag) == "Message"], True


def _decode_message(element: ET.Element) -> OutgoingMessage:
    fields = _children(element)
    body = _text(fields.get("MessageBody"))
    if body is None:
        raise MNSError("MalformedXML", "The element MessageBody is required.")
    return OutgoingMessage(
        body=body,
        delay_seconds=_int("DelaySeconds", fields.get("DelaySeconds")),
        priority=_int("Priority", fields.get("Priority")),
        group_id=_text(fields.get("MessageGroupId")) or "",
        user_properties=_properties(fields.get("UserProperties"), "PropertyValue"),
        system_properties=_properties(fields.get("SystemProperties"), "SystemPropertyValue"),
    )


def _properties(container: ET.Element | None, item_tag: str) -> tuple[MessageProperty, ...]:
    if container is None:
        return ()
    properties = []
    for item in container:
        if _local(item.tag) != item_tag:
            continue
        fields = _children(item)
        name = _text(fields.get("Name"))
        if not name:
            raise MNSError("InvalidArgument", "A message property needs a Name.")
        properties.append(
            MessageProperty(
                name=name,
                value=_text(fields.get("Value")) or "",
                type=_text(fields.get("Type")) or "STRING",
            )
        )
    return tuple(properties)


def decode_receipt_handles(body: bytes) -> list[str]:
    """A BatchDeleteMessage `<ReceiptHandles>` body."""
    root = _parse(body, "ReceiptHandles")
    return [(child.text or "").strip() for child in root if _local(child.tag) == "ReceiptHandle"]


def decode_topic_attributes(body: bytes) -> TopicAttributeUpdate:
    """A `<Topic>` body (CreateTopic, SetTopicAttributes)."""
    if not body.strip():
        return TopicAttributeUpdate()
    fields = _children(_parse(body, "Topic"))
    return TopicAttributeUpdate(
        maximum_message_size=_int("MaximumMessageSize", fields.get("MaximumMessageSize")),
        logging_enabled=_bool("LoggingEnabled", fields.get("LoggingEnabled")),
    )


def decode_subscription(body: bytes) -> SubscriptionRequest:
    """A `<Subscription>` body (Subscribe, SetSubscriptionAttributes)."""
    if not body.strip():
        return SubscriptionRequest()
    fields = _children(_parse(body, "Subscription"))
    return SubscriptionRequest(
        endpoint=(_text(fields.get("Endpoint")) or "").strip(),
        notify_strategy=(_text(fields.get("NotifyStrategy")) or "").strip(),
        notify_content_format=(_text(fields.get("NotifyContentFormat")) or "").strip(),
        filter_tag=_text(fields.get("FilterTag")) or "",
    )


def decode_topic_message(body: bytes) -> TopicMessage:
    """A PublishMessage `<Message>` body."""
    fields = _children(_parse(body, "Message"))
    message_body = _text(fields.get("MessageBody"))
    if message_body is None:
        raise MNSError("MalformedXML", "The element MessageBody is required.")
    return TopicMessage(body=message_body, message_tag=_text(fields.get("MessageTag")) or "")


def decode_account(body: bytes) -> str | None:
    """A SetAccountAttributes `<Account>` body: the LoggingBucket, if named."""
    if not body.strip():
        return None
    return _text(_children(_parse(body, "Account")).get("LoggingBucket"))


# ------------------------------------------------------------------ encoding responses


def escape_text(text: str) -> str:
    """Escape text for an XML element. Carriage returns become `&#13;` so that they survive
    the XML parser's line-end normalisation on the client."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    if "\r" in text:
        text = text.replace("\r", "&#13;")
    return text


def _document(root: str, inner: str) -> bytes:
    return f'{_DECLARATION}<{root} xmlns="{RESPONSE_NAMESPACE}">{inner}</{root}>'.encode()


def _elements(fields: Sequence[tuple[str, str | int]]) -> str:
    return "".join(
        f"<{name}>{escape_text(value) if isinstance(value, str) else value}</{name}>"
        for name, value in fields
    )


def encode_error(code: str, message: str, request_id: str, host_id: str) -> bytes:
    """The `<Error>` body of every failure except a batch delete's partial failure."""
    return _document(
        "Error",
        _elements(
            [("Code", code), ("Message", message), ("RequestId", request_id), ("HostId", host_id)]
        ),
    )


def _sent_fields(sent: SentMessage) -> str:
    fields: list[tuple[str, str | int]] = [
        ("MessageId", sent.message_id),
        ("MessageBodyMD5", sent.body_md5),
    ]
    if sent.group_id:
        fields.append(("MessageGroupId", sent.group_id))
    return _elements(fields)


def encode_sent(sent: SentMessage) -> bytes:
    """SendMessage and PublishMessage: `<Message><MessageId/><MessageBodyMD5/></Message>`."""
    return _document("Message", _sent_fields(sent))


def encode_sent_batch(sent: Sequence[SentMessage]) -> bytes:
    """BatchSendMessage: one `<Message>` per message sent, in request order."""
    return _document("Messages", "".join(f"<Message>{_sent_fields(s)}</Message>" for s in sent))


def _message_fields(message: MessageView) -> str:
    fields: list[tuple[str, str | int]] = [("MessageId", message.message_id)]
    if message.receipt_handle is not None:
        fields.append(("ReceiptHandle", message.receipt_handle))
    fields += [
        ("MessageBodyMD5", message.body_md5),
        ("MessageBody", message.body),
        ("EnqueueTime", message.enqueue_time),
    ]
    if message.next_visible_time is not None:
        fields.append(("NextVisibleTime", message.next_visible_time))
    fields += [
        ("FirstDequeueTime", message.first_dequeue_time),
        ("DequeueCount", message.dequeue_count),
        ("Priority", message.priority),
    ]
    if message.group_id:
        fields.append(("MessageGroupId", message.group_id))
    inner = _elements(fields)
    inner += _encode_properties("UserProperties", "PropertyValue", message.user_properties)
    inner += _encode_properties(
        "SystemProperties", "SystemPropertyValue", message.system_properties
    )
    return inner


def _encode_properties(container: str, item: str, properties: Sequence[MessageProperty]) -> str:
    if not properties:
        return ""
    items = "".join(
        f"<{item}>{_elements([('Name', p.name), ('Value', p.value), ('Type', p.type)])}</{item}>"
        for p in properties
    )
    return f"<{container}>{items}</{container}>"


def encode_message(message: MessageView) -> bytes:
    """ReceiveMessage / PeekMessage: one `<Message>` (peeks carry no handle)."""
    return _document("Message", _message_fields(message))


def encode_messages(messages: Sequence[MessageView]) -> bytes:
    """BatchReceiveMessage / BatchPeekMessage: `<Messages>` of `<Message>`."""
    return _document(
        "Messages", "".join(f"<Message>{_message_fields(m)}</Message>" for m in messages)
    )


def encode_change_visibility(receipt_handle: str, next_visible_time: int) -> bytes:
    """ChangeMessageVisibility: the new handle and NextVisibleTime (ms)."""
    return _document(
        "ChangeVisibility",
        _elements([("ReceiptHandle", receipt_handle), ("NextVisibleTime", next_visible_time)]),
    )


def encode_handle_failures(failures: Sequence[HandleFailure]) -> bytes:
    """BatchDeleteMessage partial failure: one `<Error>` per handle that failed."""
    return _document(
        "Errors",
        "".join(
            "<Error>"
            + _elements(
                [
                    ("ErrorCode", f.code),
                    ("ErrorMessage", f.message),
                    ("ReceiptHandle", f.receipt_handle),
                ]
            )
            + "</Error>"
            for f in failures
        ),
    )


def _queue_fields(info: QueueInfo) -> list[tuple[str, str | int]]:
    attributes = info.attributes
    return [
        ("QueueName", info.name),
        ("CreateTime", info.create_time),
        ("LastModifyTime", info.last_modify_time),
        ("DelaySeconds", attributes.delay_seconds),
        ("MaximumMessageSize", attributes.maximum_message_size),
        ("MessageRetentionPeriod", attributes.message_retention_period),
        ("VisibilityTimeout", attributes.visibility_timeout),
        ("PollingWaitSeconds", attributes.polling_wait_seconds),
        ("ActiveMessages", info.active_messages),
        ("InactiveMessages", info.inactive_messages),
        ("DelayMessages", info.delay_messages),
        ("LoggingEnabled", "True" if attributes.logging_enabled else "False"),
    ]


def encode_queue_info(info: QueueInfo) -> bytes:
    """GetQueueAttributes: all twelve elements the SDK requires."""
    return _document("Queue", _elements(_queue_fields(info)))


def encode_queue_list(
    urls: Sequence[str], next_marker: str, metas: Sequence[QueueInfo] | None = None
) -> bytes:
    """ListQueue: `<Queues>` of `<Queue><QueueURL/>[meta]</Queue>`, `<NextMarker>` if any."""
    queues = []
    for index, url in enumerate(urls):
        fields: list[tuple[str, str | int]] = [("QueueURL", url)]
        if metas is not None:
            fields += _queue_fields(metas[index])
        queues.append(f"<Queue>{_elements(fields)}</Queue>")
    return _document("Queues", "".join(queues) + _next_marker(next_marker))


def _next_marker(next_marker: str) -> str:
    return f"<NextMarker>{escape_text(next_marker)}</NextMarker>" if next_marker else ""


def _topic_fields(info: TopicInfo) -> list[tuple[str, str | int]]:
    return [
        ("TopicName", info.name),
        ("CreateTime", info.create_time),
        ("LastModifyTime", info.last_modify_time),
        ("MaximumMessageSize", info.maximum_message_size),
        ("MessageRetentionPeriod", info.message_retention_period),
        ("MessageCount", info.message_count),
        ("LoggingEnabled", "True" if info.logging_enabled else "False"),
    ]


def encode_topic_info(info: TopicInfo) -> bytes:
    """GetTopicAttributes."""
    return _document("Topic", _elements(_topic_fields(info)))


def encode_topic_list(
    urls: Sequence[str], next_marker: str, metas: Sequence[TopicInfo] | None = None
) -> bytes:
    """ListTopic: `<Topics>` of `<Topic><TopicURL/>[meta]</Topic>`, `<NextMarker>` if any."""
    topics = []
    for index, url in enumerate(urls):
        fields: list[tuple[str, str | int]] = [("TopicURL", url)]
        if metas is not None:
            fields += _topic_fields(metas[index])
        topics.append(f"<Topic>{_elements(fields)}</Topic>")
    return _document("Topics", "".join(topics) + _next_marker(next_marker))


def encode_subscription_info(info: SubscriptionInfo) -> bytes:
    """GetSubscriptionAttributes (FilterTag only when set)."""
    fields: list[tuple[str, str | int]] = [
        ("TopicOwner", info.topic_owner),
        ("TopicName", info.topic_name),
        ("SubscriptionName", info.name),
        ("Endpoint", info.endpoint),
        ("NotifyStrategy", info.notify_strategy),
        ("NotifyContentFormat", info.notify_content_format),
    ]
    if info.filter_tag:
        fields.append(("FilterTag", info.filter_tag))
    fields += [("CreateTime", info.create_time), ("LastModifyTime", info.last_modify_time)]
    return _document("Subscription", _elements(fields))


def encode_subscription_list(urls: Sequence[str], next_marker: str) -> bytes:
    """ListSubscriptionByTopic."""
    items = "".join(
        f"<Subscription>{_elements([('SubscriptionURL', url)])}</Subscription>" for url in urls
    )
    return _document("Subscriptions", items + _next_marker(next_marker))


def encode_account(logging_bucket: str) -> bytes:
    """GetAccountAttributes (the SDK requires LoggingBucket, even when empty)."""
    return _document("Account", _elements([("LoggingBucket", logging_bucket)]))
