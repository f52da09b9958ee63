"""Events as JSON-ready dicts: what `vod-events parse` prints and the ``jsonl`` handler writes.

Keys are the events' snake_case field names. The common fields come first (``event_type``,
``event_time`` as ISO 8601 with ``+00:00``, ``status``, ``media_id``, ``job_id``,
``error_code``, ``error_message``, ``dedupe_key``), then the event's own fields (``result`` for
the AI events), then what was sent as is (``extend``, ``event_time_raw``, ``status_raw``,
``data``, ``extra``). ``raw`` is left out: every value in it is already represented.
For the AI events ``data`` is left out too, as ``result`` holds the same content, typed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import orjson

from vod_events.events import VodEvent

__all__ = ["event_fields", "event_to_dict", "event_to_json", "json_line"]

_HEAD = (
    "event_type",
    "event_time",
    "status",
    "media_id",
    "job_id",
    "error_code",
    "error_message",
    "dedupe_key",
)
_TAIL = ("extend", "event_time_raw", "status_raw", "data", "extra")
_LEFT_OUT = frozenset({"raw"})

_EVENT_LAYOUTS: dict[type, tuple[str, ...]] = {}


def _event_layout(cls: type[VodEvent]) -> tuple[str, ...]:
    """The output keys of an event class, in order (computed once per class)."""
    layout = _EVENT_LAYOUTS.get(cls)
    if layout is None:
        names = [f.name for f in dataclasses.fields(cls)]
        own = [n for n in names if n not in _HEAD and n not in _TAIL and n not in _LEFT_OUT]
        tail = [n for n in _TAIL if not ("result" in own and n == "data")]
        layout = _EVENT_LAYOUTS[cls] = (*_HEAD, *own, *tail)
    return layout


# Values written as they are; anything else goes through its class's converter, made once
# per class (a type lookup instead of a chain of isinstance checks for each value).
_PLAIN: frozenset[type] = frozenset({str, int, float, bool, type(None)})
_CONVERTERS: dict[type, Callable[[Any], Any]] = {}


def _jsonable(value: Any) -> Any:
    cls = type(value)
    if cls in _PLAIN:
        return value
    convert = _CONVERTERS.get(cls)
    if convert is None:
        convert = _CONVERTERS[cls] = _converter(value)
    return convert(value)


def _item(value: Any) -> Any:
    return value if type(value) in _PLAIN else _jsonable(value)


def _converter(value: Any) -> Callable[[Any], Any]:
    """How to turn values of `value`'s class into JSON types."""
    if value is None or isinstance(value, str | int | float):
        return _same
    if isinstance(value, datetime):
        return _isoformat
    if isinstance(value, list | tuple):
        return _sequence
    if isinstance(value, Mapping):
        return _mapping
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = tuple(f.name for f in dataclasses.fields(value))

        def fields(part: Any) -> dict[str, Any]:
            return {name: _item(getattr(part, name)) for name in names}

        return fields
    return str  # not produced by the decoder; kept printable rather than failing


def _same(value: Any) -> Any:
    return value


def _isoformat(value: datetime) -> str:
    return value.isoformat()


def _sequence(value: list[Any] | tuple[Any, ...]) -> list[Any]:
    return [_item(item) for item in value]


def _mapping(value: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(key): _item(item) for key, item in value.items()}


def event_to_dict(event: VodEvent) -> dict[str, Any]:
    """The event as a dict of JSON types (str, int, float, bool, None, list, dict)."""
    return {name: _item(getattr(event, name)) for name in _event_layout(type(event))}


def event_to_json(event: VodEvent) -> str:
    """The event as one line of JSON (UTF-8 text, non-ASCII characters kept).

    Text with unpaired surrogates (possible from a ``\\ud800`` escape in the payload) cannot
    be UTF-8, so such an event is written with ASCII escapes instead."""
    as_dict = event_to_dict(event)
    line = json.dumps(as_dict, ensure_ascii=False, separators=(",", ":"))
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(as_dict, separators=(",", ":"))
    return line


def event_fields(event: VodEvent) -> dict[str, Any]:
    """The event's output keys, in order, with their values as they are (nested result
    dataclasses, datetimes, tuples): for `json_line`, which writes them as `event_to_dict`
    would, in C instead of a Python call per value."""
    return {name: getattr(event, name) for name in _event_layout(type(event))}


_LINE = orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS


def json_line(value: Mapping[str, Any]) -> bytes:
    """`value` as one line of UTF-8 JSON, newline included; the values `event_fields` holds
    come out as `event_to_dict` makes them (dataclasses as their fields in order, datetimes
    in ISO 8601, tuples as arrays).

    orjson writes it, ~7x faster than the json module for the bench's events. What orjson
    refuses (text with an unpaired surrogate, an integer beyond 64 bits) goes through
    `event_to_dict`'s converters and the json module, with ASCII escapes."""
    try:
        return orjson.dumps(value, default=_jsonable, option=_LINE)
    except orjson.JSONEncodeError:
        return (json.dumps(_jsonable(value)) + "\n").encode()
