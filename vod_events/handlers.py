"""Handlers that ship with vod-events, chosen in the config with `type = "..."`.

- `jsonl`: appends one JSON line per handled event (what `vod-events parse` prints, plus a
  `message` object with the MNS id, dequeue count and enqueue time).
- `log`: one structured log line per event.
- `http`: POSTs the same JSON to a URL — the sidecar pattern: your application only needs an
  HTTP endpoint. 2xx is success; 4xx other than 408/429 is permanent (dead-lettered);
  5xx, 408, 429, timeouts and connection errors are retried.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import structlog

from vod_events.errors import PermanentError
from vod_events.events import VodEvent
from vod_events.router import HandlerContext
from vod_events.serialize import event_to_dict

SIGNATURE_HEADER = "X-VOD-Events-Signature"


def delivery_record(event: VodEvent, context: HandlerContext) -> dict[str, Any]:
    """The normalised event plus where it came from: what jsonl writes and http posts."""
    record = event_to_dict(event)
    record["message"] = {
        "id": context.message_id,
        "dequeue_count": context.dequeue_count,
        "enqueue_time": context.enqueue_time.isoformat() if context.enqueue_time else None,
    }
    return record


class JsonlHandler:
    """Appends one line per event; safe to share between worker threads, without a lock.

    Each line is handed to the OS in one write(2) on a file opened for appending, unbuffered:
    the kernel puts each write at the end of the file whole, so lines written by concurrent
    workers never interleave, and a line whose write returned survives our crash.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = f"jsonl:{self.path}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab", buffering=0)  # O_APPEND, no buffer of ours

    def __call__(self, event: VodEvent, context: HandlerContext) -> None:
        record = delivery_record(event, context)
        try:
            line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        except UnicodeEncodeError:  # an unpaired surrogate (a "\ud800" escape): not UTF-8
            line = (json.dumps(record) + "\n").encode()
        written = self._file.write(line)
        if written != len(line):  # a regular file takes a write whole, or fails (disk full)
            raise OSError(f"{self.path}: only {written} of {len(line)} bytes written")

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
    """POSTs each event as JSON to `url`.

    With `secret`, the request carries `X-VOD-Events-Signature: sha256=<hex>`, the
    HMAC-SHA256 of the exact body, so the receiver can check it came from us.
    """

    def __init__(self, url: str, timeout: float = 10.0, secret: str = "") -> None:
        self.url = url
        self.timeout = timeout
        self._secret = secret.encode()
        self.name = f"http:{url}"

    def __call__(self, event: VodEvent, context: HandlerContext) -> None:
        body = json.dumps(delivery_record(event, context), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "vod-events"}
        if self._secret:
            digest = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
            headers[SIGNATURE_HEADER] = f"sha256={digest}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            # The URL comes from the config (checked to be http or https), never from a payload.
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as exc:
            exc.close()
            if 400 <= exc.code < 500 and exc.code not in (408, 429):
                raise PermanentError(f"{self.url} answered {exc.code} {exc.reason}") from None
            raise RuntimeError(f"{self.url} answered {exc.code} {exc.reason}") from None
