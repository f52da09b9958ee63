"""The local MNS server at the HTTP level: headers, error bodies, authentication, query
parsing. Requests are signed with the SDK's own signer, so the server's verifier is checked
against the client it must satisfy, not against itself."""

from __future__ import annotations

import base64
import hashlib
import http.client
import re
import socket
import time
import xml.dom.minidom
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from mns.account import Account
from mns.auth import Credentials as SdkCredentials
from mns.mns_client import MNSClient
from mns.mns_exception import MNSServerException
from mns.mns_xml_handler import ErrorDecoder
from mns.queue import Message

from vod_events.mns_server import LocalMNSServer

KEY_ID = "protocol-key"
KEY_SECRET = "protocol-secret"
NAMESPACE = "http://mns.aliyuncs.com/doc/v1"
REQUEST_ID = re.compile(r"[0-9A-F]{24}")


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: str

    def error_code(self) -> str:
        code, _, request_id, _, _ = ErrorDecoder.decodeError(self.body)
        assert request_id == self.headers["x-mns-request-id"]
        return str(code)


def sdk_dom(body: str) -> Any:
    """The reply's root element as the SDK sees it: parsed by minidom."""
    return xml.dom.minidom.parseString(body).documentElement  # noqa: S318 - our server's reply


def http_date(offset_seconds: float = 0) -> str:
    return time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + offset_seconds))


def request(
    endpoint: str,
    method: str,
    target: str,
    body: bytes = b"",
    *,
    secret: str = KEY_SECRET,
    key_id: str = KEY_ID,
    overrides: dict[str, str | None] | None = None,
) -> Reply:
    """Send one request signed as the SDK signs it; `overrides` replace (or, with None,
    remove) headers after signing."""
    headers = {"x-mns-version": "2015-06-06", "date": http_date()}
    if body:
        headers["content-md5"] = base64.b64encode(hashlib.md5(body).hexdigest().encode()).decode()
        headers["content-type"] = "text/xml;charset=UTF-8"
    client = MNSClient(endpoint, key_id, secret)
    headers["Authorization"] = client.get_signature(
        method, headers, target, SdkCredentials(key_id, secret)
    )
    for name, value in (overrides or {}).items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    host, port = endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        connection.request(method, target, body, headers)
        response = connection.getresponse()
        return Reply(
            response.status,
            {k.lower(): v for k, v in response.getheaders()},
            response.read().decode(),
        )
    finally:
        connection.close()


@pytest.fixture
def server() -> Iterator[LocalMNSServer]:
    with LocalMNSServer(queues=("q",), access_key_id=KEY_ID, access_key_secret=KEY_SECRET) as srv:
        yield srv


@pytest.fixture
def queue(server: LocalMNSServer) -> Any:
    q = Account(server.endpoint, KEY_ID, KEY_SECRET).get_queue("q")
    q.set_encoding(False)
    return q


# ---------------------------------------------------------------------- headers


def test_every_response_carries_the_service_headers(server: LocalMNSServer) -> None:
    replies = [
        request(server.endpoint, "GET", "/queues/q"),  # 200
        request(server.endpoint, "DELETE", "/queues/q"),  # 204
        request(server.endpoint, "GET", "/queues/q"),  # 404
    ]
    assert [r.status for r in replies] == [200, 204, 404]
    ids = set()
    for reply in replies:
        assert REQUEST_ID.fullmatch(reply.headers["x-mns-request-id"])
        assert reply.headers["x-mns-version"] == "2015-06-06"
        assert reply.headers["server"] == "AliyunMQS"
        assert reply.headers["content-type"] == "text/xml;charset=utf-8"
        assert reply.headers["content-length"] == str(len(reply.body.encode()))
        assert reply.headers["date"].endswith(" GMT")
        ids.add(reply.headers["x-mns-request-id"])
    assert len(ids) == 3
    assert replies[1].headers["content-length"] == "0"


def test_create_queue_answers_location_on_201_and_204(server: LocalMNSServer) -> None:
    body = b'<?xml version="1.0" encoding="UTF-8"?><Queue xmlns="http://mns.aliyuncs.com/doc/v1/"><VisibilityTimeout>5</VisibilityTimeout></Queue>'
    first = request(server.endpoint, "PUT", "/queues/new-q", body)
    again = request(server.endpoint, "PUT", "/queues/new-q", body)
    assert (first.status, again.status) == (201, 204)
    assert first.headers["location"] == f"{server.endpoint}/queues/new-q"
    assert again.headers["location"] == first.headers["location"]


def test_response_xml_uses_the_service_namespace_and_escapes_text(
    server: LocalMNSServer, queue: Any
) -> None:
    queue.send_message(Message("<b>&amp;</b>"))
    reply = request(server.endpoint, "GET", "/queues/q/messages?peekonly=true")
    root = sdk_dom(reply.body)
    assert root.tagName == "Message"
    assert root.getAttribute("xmlns") == NAMESPACE
    assert "<![CDATA[" not in reply.body
    assert "&lt;b&gt;&amp;amp;&lt;/b&gt;" in reply.body
    # No ReceiptHandle or NextVisibleTime on a peek; no empty elements anywhere.
    names = [n.tagName for n in root.childNodes if n.nodeType == n.ELEMENT_NODE]
    assert names == [
        "MessageId",
        "MessageBodyMD5",
        "MessageBody",
        "EnqueueTime",
        "FirstDequeueTime",
        "DequeueCount",
        "Priority",
    ]
    assert all(n.firstChild is not None for n in root.childNodes if n.nodeType == n.ELEMENT_NODE)


def test_error_body_has_code_message_request_id_host_id(server: LocalMNSServer) -> None:
    reply = request(server.endpoint, "GET", "/queues/missing/messages")
    assert reply.status == 404
    root = sdk_dom(reply.body)
    assert (root.tagName, root.getAttribute("xmlns")) == ("Error", NAMESPACE)
    fields = {n.tagName: n.firstChild.data for n in root.childNodes if n.nodeType == n.ELEMENT_NODE}
    assert fields["Code"] == "QueueNotExist"
    assert fields["RequestId"] == reply.headers["x-mns-request-id"]
    assert fields["HostId"] == server.endpoint.removeprefix("http://")
    assert fields["Message"]


def test_keep_alive_serves_many_requests_on_one_connection(server: LocalMNSServer) -> None:
    queue = Account(server.endpoint, KEY_ID, KEY_SECRET).get_queue("q")
    queue.set_encoding(False)
    for i in range(20):
        queue.send_message(Message(f"k{i}"))
    sock = queue.mns_client.http.conn.sock
    assert sock is not None  # still the first connection, open
    assert server.queue_info("q").active_messages == 20


def test_garbage_request_gets_400_and_connection_closed(server: LocalMNSServer) -> None:
    host, port = server.endpoint.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 400 ")
    assert b"<Code>InvalidRequestURL</Code>" in data


# ------------------------------------------------------------------ query strings


def test_receipt_handle_and_visibility_parameters_in_either_case(
    server: LocalMNSServer, queue: Any
) -> None:
    endpoint = server.endpoint
    queue.send_message(Message("case"))
    handle = queue.receive_message(wait_seconds=0).receipt_handle
    changed = request(
        endpoint, "PUT", f"/queues/q/messages?receiptHandle={handle}&visibilityTimeout=60"
    )
    assert changed.status == 200
    new_handle = re.search(r"<ReceiptHandle>(.*?)</ReceiptHandle>", changed.body)
    assert new_handle is not None
    deleted = request(endpoint, "DELETE", f"/queues/q/messages?ReceiptHandle={new_handle[1]}")
    assert deleted.status == 204


def test_percent_encoded_receipt_handle_is_decoded(server: LocalMNSServer, queue: Any) -> None:
    queue.send_message(Message("encoded"))
    handle = queue.receive_message(wait_seconds=0).receipt_handle
    encoded = "".join(f"%{ord(c):02X}" for c in handle)  # how a cautious client might send it
    reply = request(server.endpoint, "DELETE", f"/queues/q/messages?ReceiptHandle={encoded}")
    assert reply.status == 204


def test_malformed_and_stale_receipt_handles(server: LocalMNSServer) -> None:
    malformed = request(server.endpoint, "DELETE", "/queues/q/messages?ReceiptHandle=nonsense")
    stale = request(server.endpoint, "DELETE", "/queues/q/messages?ReceiptHandle=1-" + "A" * 24)
    assert (malformed.status, malformed.error_code()) == (400, "ReceiptHandleError")
    assert (stale.status, stale.error_code()) == (404, "MessageNotExist")


def test_missing_receipt_handle_and_visibility_timeout(server: LocalMNSServer) -> None:
    no_handle = request(server.endpoint, "PUT", "/queues/q/messages?VisibilityTimeout=5")
    no_timeout = request(server.endpoint, "PUT", "/queues/q/messages?ReceiptHandle=1-x")
    no_body = request(server.endpoint, "DELETE", "/queues/q/messages")
    assert (no_handle.status, no_handle.error_code()) == (400, "MissingReceiptHandle")
    assert (no_timeout.status, no_timeout.error_code()) == (400, "MissingVisibilityTimeout")
    assert (no_body.status, no_body.error_code()) == (400, "MissingReceiptHandle")


def test_malformed_xml_and_unknown_urls(server: LocalMNSServer) -> None:
    broken = request(server.endpoint, "POST", "/queues/q/messages", b"<Message><MessageBody>")
    wrong_root = request(server.endpoint, "POST", "/queues/q/messages", b"<Queue/>")
    unknown = request(server.endpoint, "GET", "/nothing/here")
    assert (broken.status, broken.error_code()) == (400, "MalformedXML")
    assert (wrong_root.status, wrong_root.error_code()) == (400, "MalformedXML")
    assert (unknown.status, unknown.error_code()) == (400, "InvalidRequestURL")


def test_out_of_range_query_values(server: LocalMNSServer) -> None:
    too_long = request(server.endpoint, "GET", "/queues/q/messages?waitseconds=31")
    too_many = request(server.endpoint, "GET", "/queues/q/messages?numOfMessages=17")
    not_int = request(server.endpoint, "GET", "/queues/q/messages?waitseconds=soon")
    for reply in (too_long, too_many, not_int):
        assert (reply.status, reply.error_code()) == (400, "InvalidArgument")


def test_change_visibility_beyond_the_maximum(server: LocalMNSServer, queue: Any) -> None:
    endpoint = server.endpoint
    queue.send_message(Message("x"))
    handle = queue.receive_message(wait_seconds=0).receipt_handle
    # The SDK refuses this client-side; another client could send it.
    reply = request(
        endpoint, "PUT", f"/queues/q/messages?ReceiptHandle={handle}&VisibilityTimeout=43201"
    )
    assert (reply.status, reply.error_code()) == (400, "InvalidArgument")


# ----------------------------------------------------------------- authentication


def test_wrong_secret_is_signature_does_not_match(server: LocalMNSServer) -> None:
    queue = Account(server.endpoint, KEY_ID, "not-the-secret").get_queue("q")
    with pytest.raises(MNSServerException) as refused:
        queue.send_message(Message("x"))
    assert refused.value.type == "SignatureDoesNotMatch"
    reply = request(server.endpoint, "GET", "/queues/q", secret="not-the-secret")
    assert reply.status == 403
    assert server.queue_info("q").active_messages == 0


def test_unknown_key_id_is_invalid_access_key_id(server: LocalMNSServer) -> None:
    reply = request(server.endpoint, "GET", "/queues/q", key_id="someone-else")
    assert (reply.status, reply.error_code()) == (403, "InvalidAccessKeyId")


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"Authorization": None}, 400, "MissingAuthorizationHeader"),
        ({"Authorization": "Bearer abc"}, 400, "InvalidAuthorizationHeader"),
        ({"date": None}, 400, "MissingDateHeader"),
        ({"date": "yesterday-ish"}, 400, "InvalidDateHeader"),
        ({"x-mns-version": None}, 400, "MissingVersionHeader"),
    ],
)
def test_missing_or_malformed_headers(
    server: LocalMNSServer, overrides: dict[str, str | None], status: int, code: str
) -> None:
    reply = request(server.endpoint, "GET", "/queues/q", overrides=overrides)
    assert (reply.status, reply.error_code()) == (status, code)


def test_clock_skew_over_15_minutes_is_time_expired(server: LocalMNSServer) -> None:
    # Signed correctly, but with a Date 20 minutes old.
    old_date = http_date(-20 * 60)
    headers = {"x-mns-version": "2015-06-06", "date": old_date}
    signature = MNSClient(server.endpoint, KEY_ID, KEY_SECRET).get_signature(
        "GET", headers, "/queues/q", SdkCredentials(KEY_ID, KEY_SECRET)
    )
    reply = request(
        server.endpoint,
        "GET",
        "/queues/q",
        overrides={"date": old_date, "Authorization": signature},
    )
    assert (reply.status, reply.error_code()) == (408, "TimeExpired")
    fresh = request(server.endpoint, "GET", "/queues/q", overrides={"date": http_date(-10 * 60)})
    assert fresh.status == 403  # 10 minutes is within the window; the signature is now stale
    assert fresh.error_code() == "SignatureDoesNotMatch"


def test_body_not_matching_content_md5_is_rejected(server: LocalMNSServer) -> None:
    body = b"<Message><MessageBody>x</MessageBody></Message>"
    wrong = base64.b64encode(hashlib.md5(b"other").hexdigest().encode()).decode()
    reply = request(
        server.endpoint, "POST", "/queues/q/messages", body, overrides={"content-md5": wrong}
    )
    assert (reply.status, reply.error_code()) == (400, "InvalidDegist")


def test_security_token_is_not_part_of_the_signature(server: LocalMNSServer) -> None:
    queue = Account(server.endpoint, KEY_ID, KEY_SECRET, security_token="sts-token").get_queue("q")
    queue.set_encoding(False)
    queue.send_message(Message("with sts"))
    assert queue.receive_message(wait_seconds=0).message_body == "with sts"


def test_without_keys_any_well_formed_signature_is_accepted() -> None:
    with LocalMNSServer(queues=("open",)) as srv:
        assert not srv.verifies_signatures
        queue = Account(srv.endpoint, "anyone", "anything").get_queue("open")
        queue.set_encoding(False)
        queue.send_message(Message("hi"))
        assert queue.receive_message(wait_seconds=0).message_body == "hi"
        malformed = request(srv.endpoint, "GET", "/queues/open", overrides={"Authorization": "MNS"})
        assert malformed.error_code() == "InvalidAuthorizationHeader"
