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

    The message is not retried: it is dead-lettered (or, with no dead-letter target, left to
    the queue's own redelivery limit) with this exception's text as the reason.
    """


class ConfigError(VodEventsError):
    """An invalid configuration. The message names the file and the key."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        where = ", ".join(p for p in (path, f"key {key!r}" if key else None) if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.key = key
