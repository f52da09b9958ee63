"""The MNS adapter's own receive path: tricky bodies round-trip exactly through the real SDK
and the local server, and the fast reply reader agrees with the SDK's decoder."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from mns.mns_xml_handler import BatchRecvMessageDecoder

from vod_events.mns_server import LocalMNSServer
from vod_events.transports.mns import MNSTransport, _plain_messages, _received

TRICKY = [
    '{"EventType": "FileUploadComplete", "VideoId": "a&b<c>d\'e\\"f"}',
    "]]> <![CDATA[ not a section ]]>",
    "line one\nline two\ttabbed\r\nwindows",
    "  leading and trailing spaces  ",
    "unicode: 视频点播 \u2028 separator, emoji \U0001f3ac",
    json.dumps({"Data": "x" * 60_000}),
]


@pytest.fixture
def transport() -> Iterator[MNSTransport]:
    with LocalMNSServer(queues=("q",), access_key_id="k", access_key_secret="s") as server:
        yield MNSTransport(server.endpoint, "q", access_key_id="k", access_key_secret="s")


def test_tricky_bodies_round_trip_exactly(transport: MNSTransport) -> None:
    sent = {transport.send(body): body for body in TRICKY}
    received: dict[str, str] = {}
    while len(received) < len(sent):
        batch = transport.receive(16, 1)
        assert batch, "messages missing"
        received.update({m.message_id: m.body for m in batch})
    # XML end-of-line handling turns CR LF into LF in any MNS body sent as text, through the
    # SDK's own decoder as through ours (Base64 bodies keep it): the one expected change.
    assert received == {mid: body.replace("\r\n", "\n") for mid, body in sent.items()}


def test_properties_fall_back_to_the_sdk_decoder(transport: MNSTransport) -> None:
    transport.send("with properties", {"Reason": "kept", "Count": "3"})
    [message] = transport.receive(16, 1)
    assert message.body == "with properties"
    assert dict(message.user_properties) == {"Reason": "kept", "Count": "3"}


REPLY = """<?xml version="1.0" encoding="UTF-8"?>
<Messages xmlns="http://mns.aliyuncs.com/doc/v1">
{messages}
</Messages>"""

MESSAGE = """<Message>
  <MessageId>{i}</MessageId><ReceiptHandle>h-{i}</ReceiptHandle>
  <MessageBodyMD5>00</MessageBodyMD5><MessageBody>{body}</MessageBody>
  <EnqueueTime>1700000000000</EnqueueTime><NextVisibleTime>1700000030000</NextVisibleTime>
  <FirstDequeueTime>1700000000001</FirstDequeueTime><DequeueCount>{i}</DequeueCount>
  <Priority>8</Priority>
</Message>"""


def test_fast_reader_agrees_with_the_sdk_decoder() -> None:
    bodies = ["plain", "a &amp; b &lt;c&gt;", "&#x2028; and &#233;", " spaced "]
    xml = REPLY.format(
        messages="\n".join(MESSAGE.format(i=i + 1, body=b) for i, b in enumerate(bodies))
    )
    fast = _plain_messages(xml)
    assert fast is not None
    sdk = [_received(entry) for entry in BatchRecvMessageDecoder.decode(xml, False, "req")]
    assert fast == sdk
    assert [m.body for m in fast] == ["plain", "a & b <c>", "\u2028 and é", " spaced "]


@pytest.mark.parametrize(
    "variant",
    [
        MESSAGE.format(i=1, body=""),  # empty element: the SDK's rules apply
        MESSAGE.format(i=1, body="x").replace("<Priority>8</Priority>", ""),  # field missing
        MESSAGE.format(i="x", body="x"),  # a number that is not one
        MESSAGE.format(i=1, body="x").replace("</Message>", "<Extra>1</Extra></Message>"),
    ],
)
def test_anything_unusual_is_left_to_the_sdk(variant: str) -> None:
    assert _plain_messages(REPLY.format(messages=variant)) is None
