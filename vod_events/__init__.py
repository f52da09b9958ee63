"""vod-events: receive ApsaraVideo VOD event notifications reliably.

The names a handler author needs; everything else lives in its own module.
"""

from importlib import metadata

from vod_events.decoder import decode
from vod_events.errors import DecodeError, PermanentError
from vod_events.events import (
    EVENT_TYPES,
    AIMediaAuditComplete,
    AIMediaDNAComplete,
    AIVideoTagComplete,
    GenericEvent,
    VodEvent,
)
from vod_events.router import HandlerContext, Router

try:
    __version__ = metadata.version("vod-events")  # one home: pyproject.toml
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "EVENT_TYPES",
    "AIMediaAuditComplete",
    "AIMediaDNAComplete",
    "AIVideoTagComplete",
    "DecodeError",
    "GenericEvent",
    "HandlerContext",
    "PermanentError",
    "Router",
    "VodEvent",
    "decode",
]
