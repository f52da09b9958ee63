"""The MNS REST API: which request is which operation, and what each answers.

Requests are authenticated (`auth.py`), routed on method and path, decoded (`wire.py`),
carried out by the stores (`queues.py`, `topics.py`) and encoded back. Receives that find
nothing wait on `ArrivalSignals` for up to `waitseconds` (else the queue's
PollingWaitSeconds) and answer as soon as a message becomes visible.

Query strings are parsed by hand: keys case-insensitively (the SDK and other clients
disagree on `ReceiptHandle` vs `receiptHandle`), values percent-decoded but with `+` left
alone, because the SDK puts receipt handles into URLs unencoded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from urllib.parse import unquote

from vod_events.mns_server import wire
from vod_events.mns_server.auth import Credentials, check_request
from vod_events.mns_server.errors import MNSError
from vod_events.mns_server.httpd import Request, Response, error_response
from vod_events.mns_server.longpoll import ArrivalSignals
from vod_events.mns_server.model import MAX_BATCH, POLLING_WAIT_RANGE, MessageView, check_range
from vod_events.mns_server.queues import QueueStore
from vod_events.mns_server.topics import TopicStore

# Slack added to a long poll's sleep until the next message is due, so that it does not wake
# a hair before the millisecond the message becomes visible.
_DUE_SLACK_SECONDS = 0.002


def parse_query(query: str) -> dict[str, str]:
    """`a=1&B=2` -> {"a": "1", "b": "2"}: keys lower-cased, values %-decoded, `+` kept."""
    params = {}
    for pair in query.split("&"):
        if pair:
            key, _, value = pair.partition("=")
            params[unquote(key).lower()] = unquote(value)
    return params


def _int_param(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise MNSError("InvalidArgument", f"The value of {name} should be an integer.") from None


class MNSApi:
    """Answers MNS requests from the queue and topic stores."""

    def __init__(
        self,
        queues: QueueStore,
        topics: TopicStore,
        signals: ArrivalSignals,
        credentials: Credentials | None,
        clock: Callable[[], float] = time.time,
        *,
        max_long_polls: Callable[[], int] = lambda: 0,
    ) -> None:
        self._queues = queues
        # MNS answers a long poll at once with MessageNotExist when too many long polls
        # from one IP wait already; 0: no cap. Locally every client counts as one IP.
        self._max_long_polls = max_long_polls
        self.long_polls = 0  # receives waiting now
        self._topics = topics
        self._signals = signals
        self._credentials = credentials
        self._clock = clock
        self._logging_bucket = ""

    async def handle(self, request: Request) -> Response:
        """Answer one request; every failure becomes the service's error response."""
        try:
            check_request(
                request.method,
                request.target,
                request.headers,
                body=request.body,
                credentials=self._credentials,
                now=self._clock(),
            )
            return await self._route(request)
        except MNSError as error:
            return error_response(error, request.request_id, request.host_id)

    async def _route(self, request: Request) -> Response:
        path, _, query_string = request.target.partition("?")
        query = parse_query(query_string)
        segments = [unquote(segment) for segment in path.split("/") if segment]
        method = request.method
        match segments:
            case [] if "accountmeta" in query:
                return self._account(request)
            case ["queues"] if method == "GET":
                return self._list_queues(request)
            case ["queues", name]:
                return self._queue(request, name, query)
            case ["queues", name, "messages"]:
                return await self._messages(request, name, query)
            case ["topics"] if method == "GET":
                return self._list_topics(request)
            case ["topics", name]:
                return self._topic(request, name, query)
            case ["topics", name, "messages"] if method == "POST":
                sent = self._topics.publish(name, wire.decode_topic_message(request.body))
                return Response(201, wire.encode_sent(sent))
            case ["topics", name, "subscriptions"] if method == "GET":
                return self._list_subscriptions(request, name)
            case ["topics", topic_name, "subscriptions", name]:
                return self._subscription(request, topic_name, name, query)
        raise MNSError("InvalidRequestURL")

    # ------------------------------------------------------------------ account

    def _account(self, request: Request) -> Response:
        if request.method == "GET":
            return Response(200, wire.encode_account(self._logging_bucket))
        if request.method == "PUT":
            bucket = wire.decode_account(request.body)
            if bucket is not None:
                self._logging_bucket = bucket
            return Response(204)
        raise MNSError("InvalidRequestURL")

    # ------------------------------------------------------------------- queues

    def _queue_url(self, request: Request, name: str) -> str:
        return f"http://{request.host_id}/queues/{name}"

    def _list_queues(self, request: Request) -> Response:
        names, next_marker = self._queues.list_queues(*_list_headers(request))
        metas = None
        if request.headers.get("x-mns-with-meta", "").lower() == "true":
            metas = [self._queues.queue_info(name) for name in names]
        urls = [self._queue_url(request, name) for name in names]
        return Response(200, wire.encode_queue_list(urls, next_marker, metas))

    def _queue(self, request: Request, name: str, query: dict[str, str]) -> Response:
        method = request.method
        if method == "PUT" and query.get("metaoverride", "").lower() == "true":
            self._queues.set_queue_attributes(name, wire.decode_queue_attributes(request.body))
            return Response(204)
        if method == "PUT":
            created = self._queues.create_queue(name, wire.decode_queue_attributes(request.body))
            location = (("Location", self._queue_url(request, name)),)
            return Response(201 if created else 204, headers=location)
        if method == "GET":
            return Response(200, wire.encode_queue_info(self._queues.queue_info(name)))
        if method == "DELETE":
            self._queues.delete_queue(name)
            return Response(204)
        raise MNSError("InvalidRequestURL")

    # ----------------------------------------------------------------- messages

    async def _messages(self, request: Request, name: str, query: dict[str, str]) -> Response:
        method = request.method
        if method == "POST":
            messages, batch = wire.decode_send(request.body)
            sent = self._queues.send(name, messages)
            return Response(
                201, wire.encode_sent_batch(sent) if batch else wire.encode_sent(sent[0])
            )
        if method == "GET":
            return await self._receive_or_peek(request, name, query)
        if method == "DELETE":
            return self._delete(request, name, query)
        if method == "PUT":
            handle = query.get("receipthandle")
            if handle is None:
                raise MNSError("MissingReceiptHandle")
            timeout_text = query.get("visibilitytimeout")
            if timeout_text is None:
                raise MNSError("MissingVisibilityTimeout")
            timeout = _int_param("VisibilityTimeout", timeout_text)
            new_handle, next_visible = self._queues.change_visibility(name, handle, timeout)
            return Response(200, wire.encode_change_visibility(new_handle, next_visible))
        raise MNSError("InvalidRequestURL")

    async def _receive_or_peek(
        self, request: Request, name: str, query: dict[str, str]
    ) -> Response:
        count_text = query.get("numofmessages")
        batch = count_text is not None
        count = _int_param("numOfMessages", count_text) if count_text is not None else 1
        check_range("numOfMessages", count, (1, MAX_BATCH))
        if query.get("peekonly", "").lower() == "true":
            messages = self._queues.peek(name, count)
        else:
            wait_text = query.get("waitseconds")
            if wait_text is None:
                wait = self._queues.polling_wait_seconds(name)
            else:
                wait = check_range(
                    "waitseconds", _int_param("waitseconds", wait_text), POLLING_WAIT_RANGE
                )
            messages = await self._receive(name, count, wait, request.client_gone)
        if not messages:
            raise MNSError("MessageNotExist")
        if batch:
            return Response(200, wire.encode_messages(messages))
        return Response(200, wire.encode_message(messages[0]))

    async def _receive(
        self,
        name: str,
        count: int,
        wait_seconds: int,
        client_gone: asyncio.Future[None] | None,
    ) -> list[MessageView]:
        """Receive, waiting up to `wait_seconds` for a message to become visible - but not
        for a client that has gone: it would take a message nobody will ever see."""
        messages = self._queues.receive(name, count)
        if messages or wait_seconds <= 0:
            return messages
        cap = self._max_long_polls()
        if cap and self.long_polls >= cap:
            return []  # MNS's per-IP cap on concurrent long polls: MessageNotExist at once
        self.long_polls += 1
        try:
            return await self._wait_and_receive(name, count, wait_seconds, client_gone)
        finally:
            self.long_polls -= 1

    async def _wait_and_receive(
        self,
        name: str,
        count: int,
        wait_seconds: int,
        client_gone: asyncio.Future[None] | None,
    ) -> list[MessageView]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_seconds
        while True:
            if client_gone is not None and client_gone.done():
                return []
            messages = self._queues.receive(name, count)
            if messages:
                return messages
            remaining = deadline - loop.time()
            if remaining <= 0:
                return []
            due = self._queues.next_due_ms(name)
            if due is not None:
                until_due = (due - self._queues.now_ms()) / 1000 + _DUE_SLACK_SECONDS
                remaining = min(remaining, until_due)
            await self._signals.wait(name, remaining, abandon=client_gone)

    def _delete(self, request: Request, name: str, query: dict[str, str]) -> Response:
        handle = query.get("receipthandle")
        if handle is not None:
            self._queues.delete_message(name, handle)
            return Response(204)
        if not request.body.strip():
            raise MNSError("MissingReceiptHandle")
        failures = self._queues.delete_messages(name, wire.decode_receipt_handles(request.body))
        if failures:
            return Response(404, wire.encode_handle_failures(failures))
        return Response(204)

    # ------------------------------------------------------------------- topics

    def _topic_url(self, request: Request, name: str) -> str:
        return f"http://{request.host_id}/topics/{name}"

    def _list_topics(self, request: Request) -> Response:
        names, next_marker = self._topics.list_topics(*_list_headers(request))
        metas = None
        if request.headers.get("x-mns-with-meta", "").lower() == "true":
            metas = [self._topics.topic_info(name) for name in names]
        urls = [self._topic_url(request, name) for name in names]
        return Response(200, wire.encode_topic_list(urls, next_marker, metas))

    def _topic(self, request: Request, name: str, query: dict[str, str]) -> Response:
        method = request.method
        if method == "PUT" and query.get("metaoverride", "").lower() == "true":
            self._topics.set_topic_attributes(name, wire.decode_topic_attributes(request.body))
            return Response(204)
        if method == "PUT":
            created = self._topics.create_topic(name, wire.decode_topic_attributes(request.body))
            location = (("Location", self._topic_url(request, name)),)
            return Response(201 if created else 204, headers=location)
        if method == "GET":
            return Response(200, wire.encode_topic_info(self._topics.topic_info(name)))
        if method == "DELETE":
            self._topics.delete_topic(name)
            return Response(204)
        raise MNSError("InvalidRequestURL")

    def _subscription_url(self, request: Request, topic_name: str, name: str) -> str:
        return f"{self._topic_url(request, topic_name)}/subscriptions/{name}"

    def _list_subscriptions(self, request: Request, topic_name: str) -> Response:
        names, next_marker = self._topics.list_subscriptions(topic_name, *_list_headers(request))
        urls = [self._subscription_url(request, topic_name, name) for name in names]
        return Response(200, wire.encode_subscription_list(urls, next_marker))

    def _subscription(
        self, request: Request, topic_name: str, name: str, query: dict[str, str]
    ) -> Response:
        method = request.method
        if method == "PUT" and query.get("metaoverride", "").lower() == "true":
            self._topics.set_subscription_attributes(
                topic_name, name, wire.decode_subscription(request.body)
            )
            return Response(204)
        if method == "PUT":
            created = self._topics.subscribe(
                topic_name, name, wire.decode_subscription(request.body)
            )
            location = (("Location", self._subscription_url(request, topic_name, name)),)
            return Response(201 if created else 204, headers=location)
        if method == "GET":
            info = self._topics.subscription_info(topic_name, name)
            return Response(200, wire.encode_subscription_info(info))
        if method == "DELETE":
            self._topics.unsubscribe(topic_name, name)
            return Response(204)
        raise MNSError("InvalidRequestURL")


def _list_headers(request: Request) -> tuple[str, str, int]:
    """(prefix, marker, ret_number) from the x-mns-* headers of a List* request."""
    ret_text = request.headers.get("x-mns-ret-number")
    ret_number = 1000 if ret_text is None else _int_param("x-mns-ret-number", ret_text)
    return (
        request.headers.get("x-mns-prefix", ""),
        request.headers.get("x-mns-marker", ""),
        ret_number,
    )
