"""`Transport` over Alibaba Cloud MNS through the real aliyun-mns-sdk (1.3.x).

This module is the only place that knows the SDK: its exception types, its `Message`
objects, its not-thread-safe connection, its Base64 default (turned off: VOD writes raw
JSON, and the decoder detects Base64 itself), and its sockets, which have no timeout over
https (`HTTPSConnection(host)`: the default, blocking forever) and 60 s over http. Every call
here sets its own (`Timeouts`) on the connection before it starts: a peer that accepts and
never answers costs a call its timeout, then it fails as `Unreachable` (docs/design.md rule 14).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from xml.etree import ElementTree

from mns.account import Account
from mns.auth import Credentials as SDKCredentials
from mns.message_property import MessagePropertyValue
from mns.mns_client import URISEC_MESSAGE, URISEC_QUEUE
from mns.mns_exception import (
    MNSClientException,
    MNSClientNetworkException,
    MNSExceptionBase,
    MNSServerException,
)
from mns.mns_http import RequestInternal
from mns.mns_request import BatchReceiveMessageRequest, BatchReceiveMessageResponse
from mns.mns_tool import BatchReceiveMessageValidator
from mns.mns_xml_handler import BatchRecvMessageDecoder
from mns.queue import Message

from vod_events.transports import (
    GONE_CODES,
    DeleteFailure,
    FatalTransportError,
    MessageGone,
    QueueInfo,
    ReceivedMessage,
    TransportError,
)

BATCH_SIZE = 16  # MNS's limit for BatchSendMessage

# Service codes that no retry can fix: stop the daemon with a clear message.
FATAL_CODES = frozenset(
    {
        "QueueNotExist",
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "MissingAuthorizationHeader",
        "InvalidAuthorizationHeader",
        "TimeExpired",
        "CredentialsUnavailable",  # the default credential chain found nothing
    }
)


class Unreachable(TransportError):
    """No reply from the endpoint: the connection was refused, reset or timed out, or the
    name did not resolve. The request may still have arrived (see TransportError)."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """How long a call may wait on the network, in seconds, per socket operation (connect,
    TLS handshake, each send and each read): a silent peer fails the call after this.

    call: every request but the long poll.
    poll_margin: a receive waits `wait_seconds` (the server answers by then) plus this.
    """

    call: float = 10.0
    poll_margin: float = 10.0

    def receive(self, wait_seconds: int) -> float:
        return wait_seconds + self.poll_margin


class MNSTransport:
    """One thread's connection to one MNS queue.

    Requests are signed with the static AccessKey, or, when `credential_client` is given, with
    what it returns at each request: an alibabacloud-credentials client (the default chain,
    `config.credentials.default_chain`), which caches and refreshes temporary keys. A chain
    that finds nothing fails the request with the fatal code CredentialsUnavailable.
    """

    def __init__(
        self,
        endpoint: str,
        queue_name: str,
        *,
        access_key_id: str = "",
        access_key_secret: str = "",
        security_token: str = "",
        credential_client: Any = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.queue_name = queue_name
        self.endpoint = display_endpoint(endpoint)
        self.timeouts = timeouts or Timeouts()
        self._account = Account(
            endpoint,
            access_key_id,
            access_key_secret,
            security_token,
            credentials_provider=(
                None if credential_client is None else _ChainProvider(credential_client)
            ),
        )
        self._queue = self._account.get_queue(queue_name)
        self._queue.set_encoding(False)  # bodies as sent; the decoder handles Base64

    def queue_info(self) -> QueueInfo:
        meta = self._call(self._queue.get_attributes)
        return QueueInfo(
            name=self.queue_name,
            visibility_timeout=int(meta.visibility_timeout),
            maximum_message_size=int(meta.maximum_message_size),
            message_retention_period=int(meta.message_retention_period),
            polling_wait_seconds=int(meta.polling_wait_seconds),
            active_messages=int(meta.active_messages),
            inactive_messages=int(meta.inactive_messages),
            delay_messages=int(meta.delay_messages),
        )

    def receive(self, max_messages: int, wait_seconds: int) -> list[ReceivedMessage]:
        try:
            messages: list[ReceivedMessage] = self._call(
                self._batch_receive,
                max_messages,
                wait_seconds,
                timeout=self.timeouts.receive(wait_seconds),
            )
        except MessageGone:  # MessageNotExist: the queue is empty, which is not an error
            return []
        return messages

    def _batch_receive(self, max_messages: int, wait_seconds: int) -> list[ReceivedMessage]:
        """`Queue.batch_receive_message`, step by step through the SDK's client (validation,
        signature, HTTP, status and error decoding), but reading the reply with ElementTree.

        The SDK reads it with xml.dom.minidom: about 40 us per message, most of a poller's
        CPU time and a long hold of the GIL for every batch. Replies with anything beyond
        the plain fields (user or system properties, empty or nested elements, values that
        are not numbers where numbers belong) go to the SDK's own decoder, so they come
        out exactly as before.
        """
        client = self._account.mns_client
        request = BatchReceiveMessageRequest(self.queue_name, max_messages, False, wait_seconds)
        BatchReceiveMessageValidator.validate(request)
        uri = (
            f"/{URISEC_QUEUE}/{self.queue_name}/{URISEC_MESSAGE}"
            f"?numOfMessages={max_messages}&waitseconds={wait_seconds}"
        )
        internal = RequestInternal(request.method, uri)
        client.build_header(request, internal)
        reply = client.http.send_request(internal)
        response = BatchReceiveMessageResponse()
        response.status, response.header = reply.status, reply.header
        client.check_status(internal, reply, response)  # raises MNSServerException
        fast = _plain_messages(reply.data)
        if fast is not None:
            return fast
        entries = BatchRecvMessageDecoder.decode(reply.data, False, internal.get_req_id())
        return [_received(entry) for entry in entries]

    def delete(self, receipt_handles: Sequence[str]) -> list[DeleteFailure]:
        try:
            self._call(self._queue.batch_delete_message, list(receipt_handles), raw=True)
        except MNSServerException as exc:
            if not exc.sub_errors:
                raise _translate(exc) from exc
            return [
                DeleteFailure(e["ReceiptHandle"], e["ErrorCode"], e["ErrorMessage"])
                for e in exc.sub_errors
            ]
        return []

    def change_visibility(self, receipt_handle: str, seconds: int) -> tuple[str, int]:
        result = self._call(self._queue.change_message_visibility, receipt_handle, seconds)
        return str(result.receipt_handle), int(result.next_visible_time)

    def send(self, body: str, properties: Mapping[str, str] | None = None) -> str:
        message = Message(body)
        for name, value in (properties or {}).items():
            message.add_user_property(name, MessagePropertyValue.create_string(value))
        result = self._call(self._queue.send_message, message)
        return str(result.message_id)

    def send_batch(self, bodies: Sequence[str]) -> list[str]:
        """Send 1..16 bodies in one BatchSendMessage; return their message ids, in order.

        Not part of `Transport` (the consumer never sends in batches). A refusal raises the
        translated error for the batch as a whole, though when the service refuses only some
        messages (BatchSendFail) the others were sent; `Unreachable` when nothing answered.
        """
        if not 1 <= len(bodies) <= BATCH_SIZE:
            raise ValueError(f"a batch holds 1..{BATCH_SIZE} messages, got {len(bodies)}")
        sent = self._call(self._queue.batch_send_message, [Message(body) for body in bodies])
        return [str(message.message_id) for message in sent]

    def interrupt(self) -> None:
        # Shutting the socket down makes a blocked long poll return at once. The SDK takes
        # the resulting disconnect for a stale keep-alive and re-sends the request on
        # `http.conn`, so swap in a connection that refuses first: otherwise the re-sent
        # long poll would take messages while we are shutting down.
        http = self._account.mns_client.http
        conn, http.conn = http.conn, _Interrupted()
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing was blocked on it
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.interrupt()

    def _set_timeout(self, seconds: float) -> None:
        """Make the SDK's connection wait at most `seconds` per socket operation: its next
        connect (http: `connection_timeout`; https: http.client's `timeout`, also bounding
        the TLS handshake) and the socket it holds, if any (a kept-alive connection)."""
        conn = self._account.mns_client.http.conn
        conn.timeout = seconds
        conn.connection_timeout = seconds
        sock = getattr(conn, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):  # closed under us by `interrupt`
                sock.settimeout(seconds)

    def _call(
        self, method: Any, *args: Any, raw: bool = False, timeout: float | None = None
    ) -> Any:
        """Run an SDK call with a timeout (`Timeouts.call` unless given), translating its
        exceptions to the transport's."""
        seconds = self.timeouts.call if timeout is None else timeout
        self._set_timeout(seconds)
        try:
            return method(*args)
        except MNSServerException as exc:
            if raw:
                raise
            raise _translate(exc) from exc
        except MNSClientNetworkException as exc:
            # The SDK keeps only the text of the socket's error; the error itself is the
            # context of the SDK's.
            detail = (
                f"no answer within {seconds:g} s"
                if isinstance(exc.__context__, TimeoutError)
                else exc.message
            )
            raise Unreachable(f"network error: {detail}", code=exc.type) from exc
        except MNSExceptionBase as exc:
            error = FatalTransportError if exc.type in FATAL_CODES else TransportError
            raise error(f"{exc.type}: {exc.message}", code=exc.type) from exc
        except (OSError, ValueError) as exc:  # SDK internals (XML, sockets) that escape it
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc


class _ChainProvider:
    """The SDK's provider API (`get_credentials()`) over an alibabacloud-credentials client
    (`get_credential()`), asked on every request: the client caches and refreshes."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def get_credentials(self) -> Any:
        try:
            current = self._client.get_credential()
        except Exception as exc:  # no provider in the chain could supply credentials
            raise MNSClientException(
                "CredentialsUnavailable", f"default credential chain: {exc}"
            ) from None
        return SDKCredentials(
            current.access_key_id, current.access_key_secret, current.security_token or ""
        )


class _Interrupted:
    """Stands in for the SDK's HTTP connection after `interrupt`: every request fails."""

    sock = None
    timeout: float | None = None
    connection_timeout: float | None = None

    def request(self, *args: Any, **kwargs: Any) -> None:
        raise ConnectionAbortedError("transport interrupted")

    def close(self) -> None:
        pass


def display_endpoint(endpoint: str) -> str:
    """`endpoint` for logs and messages: scheme, host and port only, never user info."""
    try:
        parts = urlsplit(endpoint)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid endpoint>"
    return f"{parts.scheme}://{parts.hostname or ''}{port}"


def _translate(exc: MNSServerException) -> TransportError:
    code = str(exc.type)
    text = f"{code}: {exc.message} (request id {exc.request_id})"
    if code in GONE_CODES:
        return MessageGone(text, code=code)
    if code in FATAL_CODES:
        return FatalTransportError(text, code=code)
    return TransportError(text, code=code)


# The fields of a <Message> in a BatchReceiveMessage reply that `_plain_messages` reads.
_PLAIN_FIELDS = frozenset(
    {
        "MessageId",
        "ReceiptHandle",
        "MessageBodyMD5",
        "MessageBody",
        "EnqueueTime",
        "NextVisibleTime",
        "FirstDequeueTime",
        "DequeueCount",
        "Priority",
    }
)


def _plain_messages(xml: str) -> list[ReceivedMessage] | None:
    """The messages of a BatchReceiveMessage reply whose <Message> elements hold only the
    plain fields above, each with text; None for anything else (the SDK decodes that)."""
    try:
        # The reply the SDK would parse with the same expat parser (via minidom), from the
        # configured endpoint; expat >= 2.4.1 bounds entity expansion.
        root = ElementTree.fromstring(xml)  # noqa: S314
    except ElementTree.ParseError:
        return None
    messages = []
    for element in root:
        if _local(element.tag) != "Message":
            return None
        fields: dict[str, str] = {}
        for child in element:
            name = _local(child.tag)
            if name not in _PLAIN_FIELDS or len(child) or not child.text or name in fields:
                return None
            fields[name] = child.text
        if len(fields) != len(_PLAIN_FIELDS):
            return None
        try:
            messages.append(
                ReceivedMessage(
                    message_id=fields["MessageId"],
                    receipt_handle=fields["ReceiptHandle"],
                    body=fields["MessageBody"],
                    dequeue_count=int(fields["DequeueCount"]),
                    enqueue_time_ms=int(fields["EnqueueTime"]),
                    first_dequeue_time_ms=int(fields["FirstDequeueTime"]),
                    next_visible_time_ms=int(fields["NextVisibleTime"]),
                    priority=int(fields["Priority"]),
                )
            )
        except ValueError:
            return None
    return messages if _local(root.tag) == "Messages" else None


def _local(tag: str) -> str:
    """An element's name without its namespace: "{http://mns...}Message" -> "Message"."""
    return tag.rpartition("}")[2]


def _received(message: Any) -> ReceivedMessage:
    properties = getattr(message, "user_properties", None) or {}
    return ReceivedMessage(
        message_id=message.message_id,
        receipt_handle=message.receipt_handle,
        body=message.message_body,
        dequeue_count=int(message.dequeue_count),
        enqueue_time_ms=int(message.enqueue_time),
        first_dequeue_time_ms=int(message.first_dequeue_time),
        next_visible_time_ms=int(message.next_visible_time),
        priority=int(message.priority),
        user_properties={str(k): _property_text(v) for k, v in properties.items()},
    )


def _property_text(value: Any) -> str:
    """User properties come back as MessagePropertyValue objects."""
    if isinstance(value, MessagePropertyValue):
        return str(value.get_string_value_by_type())
    return str(value)
