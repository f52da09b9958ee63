"""The exceptions vod-events raises or asks handlers to raise. One module so that every layer
(decoder, consumer, config, CLI) can import them without importing each other."""

from __future__ import annotations


class VodEventsError(Exception):
    """Base class of every error vod-events raises on purpose."""


class DecodeError(VodEventsError):
    """A message body that can never become an event.

    `reason` says why in one human-readable sentence; `excerpt` is a short, truncated,
    printable piece of the input for logs and dead letters (never the whole body).
    """

    def __init__(self, reason: str, excerpt: str = "") -> None:
        super().__init__(f"{reason} (input: {excerpt})" if excerpt else reason)
        self.reason = reason
        self.excerpt = excerpt


class PermanentError(VodEventsError):
    """Raised by a handler for a failure that retrying cannot fix.

    It is never retried in process (`RetryPolicy.call` re-raises it at once). The processor
    releases that handler's idempotency claim, runs no further handler for the delivery, and
    dead-letters the message with the reason "<handler>: permanent failure: <this text>":

    - from the queue, the message is deleted once the dead letter is written. If the write
      fails, the message goes back to the queue with the usual redelivery backoff and the
      handler runs again on the next delivery (handlers that completed before it are skipped);
    - by HTTP callback, VOD is answered 200 once the dead letter is written; if the write
      fails, it is answered 500 so that it tries again.

    With no dead-letter target (a `Processor` built without one; a daemon built from a config
    always has one) nothing is deleted: the message is hidden for 12 hours (43200 s, MNS's
    maximum) with an error log and then comes back; over HTTP, VOD is answered 500 and the
    event is lost once VOD stops retrying.
    """


class ConfigError(VodEventsError):
    """An invalid configuration. The message names the file and the key."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        where = ", ".join(p for p in (path, f"key {key!r}" if key else None) if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.key = key
