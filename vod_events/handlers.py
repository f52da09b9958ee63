"""Handlers that ship with vod-events, chosen in the config with `type = "..."`.

- `jsonl`: appends one JSON line per handled event (what `vod-events parse` prints, plus a
  `message` object with the MNS id, dequeue count and enqueue time).
- `log`: one structured log line per event.
- `http`: POSTs the same JSON to a URL — the sidecar pattern: your application only needs an
  HTTP endpoint. 2xx is success; 4xx other than 408/429 is permanent (dead-lettered);
  5xx, 408, 429, redirects (not followed), timeouts and connection errors are retried. It
  is async: the calls wait on the consumer's event loop, not on worker threads.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
from pathlib import Path
from typing import Any

import httpx
import structlog

from vod_events import tracing
from vod_events.appendfile import AppendFile
from vod_events.errors import PermanentError
from vod_events.events import VodEvent
from vod_events.router import HandlerContext
from vod_events.serialize import event_fields, event_to_dict, json_line

SIGNATURE_HEADER = "X-VOD-Events-Signature"
MAX_CONNECTIONS = 100  # per http handler; more calls at once wait for one


def delivery_record(event: VodEvent, context: HandlerContext) -> dict[str, Any]:
    """The normalised event plus where it came from: what http posts (and jsonl writes)."""
    record = event_to_dict(event)
    record["message"] = _message(context)
    return record


def _message(context: HandlerContext) -> dict[str, Any]:
    return {
        "id": context.message_id,
        "dequeue_count": context.dequeue_count,
        "enqueue_time": context.enqueue_time.isoformat() if context.enqueue_time else None,
    }


class JsonlHandler:
    """Appends one line per event; safe to share between worker threads, without a lock.

    Each line goes to the OS in one write(2) on a file opened for appending (`AppendFile`):
    lines written by concurrent workers never interleave, and a line whose call returned
    survives our crash.
    """

    def __init__(self, path: str | Path) -> None:
        self._file = AppendFile(path)
        self.path = self._file.path
        self.name = f"jsonl:{self.path}"

    def __call__(self, event: VodEvent, context: HandlerContext) -> None:
        record = event_fields(event)  # `delivery_record`, with the conversions left to
        record["message"] = _message(context)  # json_line (in C)
        self._file.append(json_line(record))

    def close(self) -> None:
        self._file.close()


class LogHandler:
    """One structured log line per event."""

    name = "log"

    def __init__(self) -> None:
        self.log = structlog.get_logger("vod_events.events")

    def __call__(self, event: VodEvent, context: HandlerContext) -> None:
        self.log.info(
            "event",
            event_type=event.event_type,
            status=event.status,
            media_id=event.media_id,
            job_id=event.job_id,
            event_time=event.event_time.isoformat() if event.event_time else None,
            message_id=context.message_id,
            dequeue_count=context.dequeue_count,
        )


class HttpHandler:
    """POSTs each event as JSON to `url`; async (it runs on the consumer's event loop).

    With `secret`, the request carries `X-VOD-Events-Signature: sha256=<hex>`, the
    HMAC-SHA256 of the exact body, so the receiver can check it came from us. With tracing
    on, it carries the W3C `traceparent` of the handler's span too.

    One `httpx.AsyncClient` per handler (its connections pooled and kept alive), made at the
    first call on the event loop that runs it; `timeout` bounds each step (connect, each
    read, each write), as a socket timeout does. `aclose()` (on that loop) or `close()`
    (from another thread) ends it.
    """

    def __init__(self, url: str, timeout: float = 10.0, secret: str = "") -> None:
        self.url = url
        self.timeout = timeout
        self._secret = secret.encode()
        self.name = f"http:{url}"
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, event: VodEvent, context: HandlerContext) -> None:
        body = json.dumps(delivery_record(event, context), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "vod-events"}
        if self._secret:
            digest = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
            headers[SIGNATURE_HEADER] = f"sha256={digest}"
        tracing.inject_headers(headers)
        try:
            # The URL comes from the config (checked to be http or https), never from a payload.
            response = await self._client_here().post(self.url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise RuntimeError(
                f"{self.url}: timed out after {self.timeout:g} s ({_phase(exc)})"
            ) from None
        except httpx.HTTPError as exc:  # refused, reset, DNS, a broken response: retried
            raise RuntimeError(f"{self.url}: {_reason(exc)}") from None
        if response.is_success:
            return
        status = response.status_code
        message = f"{self.url} answered {status} {response.reason_phrase}"
        if 400 <= status < 500 and status not in (408, 429):
            raise PermanentError(message)
        raise RuntimeError(message)  # 5xx, 408, 429 (and a redirect, not followed)

    def _client_here(self) -> httpx.AsyncClient:
        """The client of the running loop (a new one if the handler moved to another loop:
        a client's connections belong to the loop that opened them)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = httpx.AsyncClient(
                # Each step bounded by `timeout`; waiting for a pooled connection is not a
                # failure (the calls at once are bounded by the consumer's async_concurrency).
                timeout=httpx.Timeout(self.timeout, pool=None),
                limits=httpx.Limits(max_connections=MAX_CONNECTIONS),
                follow_redirects=False,  # a POST redirected would lose its body, or double
            )
            self._loop = loop
        return self._client

    async def aclose(self) -> None:
        """Close the client's connections; on the loop that runs the handler."""
        client, self._client, self._loop = self._client, None, None
        if client is not None:
            await client.aclose()

    def close(self, timeout: float = 5.0) -> None:
        """`aclose()` from any other thread: run on the handler's loop if it still runs."""
        client, loop = self._client, self._loop
        self._client = self._loop = None
        if client is None or loop is None or loop.is_closed():
            return  # a closed loop closed its sockets
        if loop.is_running():
            asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(timeout)
        else:
            loop.run_until_complete(client.aclose())


def _phase(exc: httpx.TimeoutException) -> str:
    """Which step timed out, in words."""
    return {
        httpx.ConnectTimeout: "connecting",
        httpx.ReadTimeout: "waiting for the answer",
        httpx.WriteTimeout: "sending",
        httpx.PoolTimeout: "waiting for a connection",
    }.get(type(exc), "timed out")


def _reason(exc: httpx.HTTPError) -> str:
    """What went wrong, in words: the innermost system error (the library's own text for a
    refused connection is "All connection attempts failed"), else the exception."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno:
            reason = os.strerror(cause.errno)
        cause = cause.__cause__ or cause.__context__
    return reason
