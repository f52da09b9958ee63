"""vod-events: receive ApsaraVideo VOD event notifications reliably.

The names a handler author needs; everything else lives in its own module.
"""

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

__version__ = "0.1.0"

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
