"""Lenient conversions for the scalar values VOD sends.

VOD payloads are loose: numbers arrive as strings ("Size": "1024"), booleans as "true", times
in three formats, lists as comma-separated strings. Every function here takes whatever JSON
value arrived and returns the typed value, or ``None`` when the value cannot be read as that
type. They never raise: an unreadable value is a missing value, and the event's ``raw`` mapping
still holds what the sender wrote.

``load_json`` is the exception to the rule: it is the one strict JSON parser of the package
(shared by the decoder and the AI result parsers) and raises ``ValueError``.
"""

from __future__ import annotations

import json
import json.scanner
import math
from datetime import UTC, datetime
from typing import Any, NoReturn

__all__ = [
    "load_json",
    "parse_time",
    "to_bool",
    "to_float",
    "to_int",
    "to_str",
    "to_str_list",
    "trim_keys",
]


def _reject_constant(name: str) -> NoReturn:
    # NaN and Infinity are not JSON (RFC 8259), and would make our own output invalid JSON.
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    # 1e400 is valid JSON syntax but overflows to infinity: refused like Infinity itself.
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"number {text[:24]} is out of range")
    return number


_JSON = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
# The C scanner that _JSON.decode() wraps, made the way JSONDecoder makes it (typeshed types the
# argument as a scanner, but it is the decoder whose settings the scanner takes).
_scan_value = json.scanner.make_scanner(_JSON)  # type: ignore[arg-type]
_INFINITY = math.inf
_JSON_WHITESPACE = " \t\n\r"  # what JSON allows around a value (not every str.isspace())


def load_json(text: str) -> Any:
    """Parse JSON text strictly: no NaN, no Infinity, no number beyond the float range.
    Raises ``ValueError`` for anything else, including nesting too deep for the parser."""
    try:
        # The usual text is one value, perhaps followed by whitespace: the scanner alone parses
        # it, without decode()'s two whitespace regex matches (~0.5 us a call). Anything else
        # goes through decode(), which skips leading whitespace or says what is wrong.
        try:
            value, end = _scan_value(text, 0)
        except StopIteration:  # no value at offset 0
            return _JSON.decode(text)
        if end == len(text) or not text[end:].strip(_JSON_WHITESPACE):
            return value
        return _JSON.decode(text)  # data after the value: the error
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def trim_keys(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` with its keys trimmed of stray whitespace (``"SourceURL "``, ``" CoverResult"``).

    Returns ``obj`` itself when no key needs trimming (the common case, and cheap). When both
    an exact key and a padded duplicate exist, the exact one wins."""
    for key in obj:
        if key.strip() != key:  # 3x cheaper than testing the first and last characters
            break
    else:
        return obj
    clean: dict[str, Any] = {}
    for key, value in obj.items():
        stripped = key.strip()
        if stripped == key or stripped not in clean:
            clean[stripped] = value
    return clean


def to_str(value: Any) -> str | None:
    """A string as is; a number or boolean as its JSON text; anything else ``None``."""
    if isinstance(value, str):
        return value
    if value is None:  # common (an absent field), and cheaper to rule out than to test below
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def to_int(value: Any) -> int | None:
    """An integer from an int, an integral float, or a string such as "1024" or "1024.0"."""
    if type(value) is int:
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            number = to_float(value)
            return int(number) if number is not None and number.is_integer() else None
    if type(value) is float and value.is_integer():  # False for NaN and infinities
        return int(value)
    return None


def to_float(value: Any) -> float | None:
    """A finite float from a number or a numeric string such as "0.99"."""
    if value is None or value is True or value is False:
        return None
    try:
        number = float(value)  # str, int and float alike; containers raise TypeError
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond float range
        return None
    return number if -_INFINITY < number < _INFINITY else None  # False for NaN too


_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def to_bool(value: Any) -> bool | None:
    """A boolean from true/false, 1/0, or the strings "true"/"false" in any case."""
    if isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    return None


def to_str_list(value: Any) -> list[str]:
    """A list of strings from a JSON list or a comma-separated string ("id1,id2")."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        items = (to_str(item) for item in value)
        return [item for item in items if item]
    return []


def parse_time(value: Any) -> datetime | None:
    """A timezone-aware UTC datetime from the time formats VOD sends.

    Accepts ``2017-03-20T07:49:17Z``, ``2017-03-20T07:49:17.025Z`` and VOD's own
    ``2017-03-20T07:49:17:025Z`` (a colon before the milliseconds), any ISO 8601 offset, and a
    time without offset (VOD times are UTC). Returns ``None`` for anything else.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if len(text) > 20 and text[19] == ":":  # "...T07:49:17:025Z": the colon means a dot
        text = f"{text[:19]}.{text[20:]}"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is UTC:  # "...Z" and "+00:00": already what is returned
        return parsed
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. year 1 with a positive offset
        return None
