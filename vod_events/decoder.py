"""From one message body to one typed event: ``decode(body) -> VodEvent``.

Unwrapping, in this order (each layer may hold the next, at most four layers deep):

1. a JSON object (the event itself, or an MNS topic JSON envelope);
2. an XML ``<Notification>`` topic envelope (a DOCTYPE is refused, so no entity expansion);
3. otherwise Base64 of any of these (MNS SDKs Base64-encode bodies by default).

A JSON object with ``Message`` and an envelope field (TopicName, MessageId, ...) but no
``EventType`` is a topic envelope: its ``Message`` - raw JSON or Base64 - is unwrapped in turn.
Bytes must be UTF-8. What finally comes out must be a JSON object with a non-empty string
``EventType``; a type this package does not know becomes a ``GenericEvent``.

Tolerance: keys with stray whitespace are read trimmed; numbers sent as strings are read as
numbers, and a value that cannot be read as its field's type leaves the field ``None`` (the
value stays in ``event.raw``); ``Data`` may be a JSON string or an object, for every event.

The one deliberate failure beyond the envelope: an AI event (AIVideoTagComplete,
AIMediaDNAComplete, AIMediaAuditComplete) whose Status is success but whose ``Data`` is not
valid JSON or not of the documented structure raises ``DecodeError``. Such an event is useless
to its handlers and retrying cannot fix it, so the consumer should dead-letter it with the
reason. A missing or empty ``Data`` gives ``result=None`` whatever the status, and a failed
job's unreadable ``Data`` also gives ``result=None`` - a failure needs no result.

Errors: ``decode`` raises only ``vod_events.errors.DecodeError`` (a reason, and a short
printable excerpt of the input). An unexpected exception inside the decoder - a bug - is
also turned into a ``DecodeError`` whose reason starts with "internal decoder error", so one bad
message can never stop a consumer.

Dedupe key: ``"<EventType>:<32 hex digits>"``, a BLAKE2b digest of (EventType, JobId or the
media id, the raw Status, the raw EventTime, and for a few types the fields that tell apart
legitimate events sharing those - see ``VodEvent.DEDUPE_KEYS``). Without an id or an
EventTime, the digest is of the canonical JSON of the whole event (sorted keys), which is still
equal across redeliveries and encodings.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from vod_events._coerce import (
    load_json,
    parse_time,
    to_bool,
    to_float,
    to_int,
    to_str,
    to_str_list,
    trim_keys,
)
from vod_events._construct import constructor
from vod_events.errors import DecodeError
from vod_events.events import (
    EVENT_TYPES,
    GenericEvent,
    Kind,
    MediaFieldChange,
    VodEvent,
    WireField,
)
from vod_events.results import ResultFormatError

__all__ = ["EXCERPT_LIMIT", "decode", "excerpt_of"]

EXCERPT_LIMIT = 120
"""Maximum length of ``DecodeError.excerpt``."""

_MAX_LAYERS = 4  # envelope in Base64 in envelope ...: more is not a VOD message

# --- small readers ---------------------------------------------------------------------------

_STATUSES = {
    "success": "success",
    "succeed": "success",
    "succeeded": "success",
    "successful": "success",
    "fail": "fail",
    "failed": "fail",
    "failure": "fail",
}

# Codes and messages that VOD sends with a success; they are not errors.
_NO_ERROR_CODES = frozenset({"", "0", "OK", "ok", "Success", "success"})
_NO_ERROR_MESSAGES = frozenset({"", "OK", "ok", "Success", "success"})


def _status(value: Any) -> str | None:
    return _STATUSES.get(value.strip().lower()) if isinstance(value, str) else None


def _json_field(value: Any) -> Any:
    """A JSON-string field: decoded when it is JSON text, otherwise as sent."""
    if isinstance(value, str):
        try:
            return load_json(value)
        except ValueError:
            return value
    return value


def _media_content(value: Any) -> Mapping[str, MediaFieldChange | str] | str | None:
    """MediaContent: ``{field: '{"OldValue": ..., "NewValue": ...}'}``, itself an object or a
    JSON string. A change that is not such an object is kept as the string sent; MediaContent
    that is not JSON at all is returned as sent."""
    content = _json_field(value)
    if not isinstance(content, dict):
        return value if isinstance(value, str) else None
    changes: dict[str, MediaFieldChange | str] = {}
    for name, change in content.items():
        decoded = _json_field(change)
        if isinstance(decoded, dict):
            changes[name.strip()] = MediaFieldChange(
                old_value=decoded.get("OldValue"), new_value=decoded.get("NewValue")
            )
        elif isinstance(change, str):
            changes[name.strip()] = change  # not the documented {OldValue, NewValue}: as sent
    return changes


def _first(obj: Mapping[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = obj.get(key)
        if value is not None:
            return value
    return None


# --- per-class tables, built once at import --------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    key: str  # the wire key to try first ...
    alternates: tuple[str, ...]  # ... and the other spellings, in order
    read: Callable[[Any], Any]
    default: Callable[[], Any] | None  # for a field that must not be None (a list)

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key, *self.alternates)


@dataclass(frozen=True, slots=True)
class _Table:
    cls: type[Any]
    build: Callable[..., Any]  # constructor(cls): every field, in field order, without __init__
    fields: tuple[_Field, ...]  # the wire fields but the result, in field order
    result: _Field | None  # the AI result, read with the status-dependent policy ...
    result_index: int  # ... and its place among the wire fields (-1 without one)
    id_keys: tuple[str, ...]
    job_keys: tuple[str, ...]
    dedupe_keys: tuple[str, ...]
    known: frozenset[str]  # wire keys read into fields; the others go to ``extra``


_LIST_KINDS = frozenset({Kind.STR_LIST, Kind.PARTS})

_SCALAR_READERS: dict[Kind, Callable[[Any], Any]] = {
    Kind.STR: to_str,
    Kind.INT: to_int,
    Kind.FLOAT: to_float,
    Kind.BOOL: to_bool,
    Kind.TIME: parse_time,
    Kind.STATUS: _status,
    Kind.STR_LIST: to_str_list,
    Kind.JSON: _json_field,
    Kind.MEDIA_CONTENT: _media_content,
}


def _parts_reader(part: type) -> Callable[[Any], Any]:
    table = _table(part)

    def read(value: Any) -> list[Any]:
        items = _json_field(value)  # a list, or a JSON string of one
        if not isinstance(items, list):
            return []
        return [_part(table, item) for item in items if isinstance(item, dict)]

    return read


def _table(cls: type[Any]) -> _Table:
    fields: list[_Field] = []
    result: _Field | None = None
    result_index = -1
    names = [spec_field.name for spec_field in dataclasses.fields(cls)]
    common = _COMMON_FIELDS if issubclass(cls, VodEvent) else ()
    if tuple(names[: len(common)]) != common:  # _build passes them in this order
        raise TypeError(f"{cls.__name__} does not start with the common event fields")
    for spec_field in dataclasses.fields(cls)[len(common) :]:
        spec = spec_field.metadata.get("wire")
        if not isinstance(spec, WireField):
            raise TypeError(f"{cls.__name__}.{spec_field.name} is not declared with wire()")
        if spec.kind is Kind.PARTS:
            assert spec.part is not None, f"{cls.__name__}.{spec_field.name} needs part="
            read = _parts_reader(spec.part)
        elif spec.kind is Kind.RESULT:
            assert spec.part is not None, f"{cls.__name__}.{spec_field.name} needs part="
            read = spec.part.from_data  # type: ignore[attr-defined]
        else:
            read = _SCALAR_READERS[spec.kind]
        default = list if spec.kind in _LIST_KINDS else None  # as wire() declares them
        entry = _Field(spec_field.name, spec.keys[0], spec.keys[1:], read, default)
        if spec.kind is Kind.RESULT:
            result = entry
            result_index = len(fields)
        else:
            fields.append(entry)
    id_keys: tuple[str, ...] = tuple(dict.fromkeys(getattr(cls, "ID_KEYS", ())))
    job_keys: tuple[str, ...] = tuple(dict.fromkeys(getattr(cls, "JOB_ID_KEYS", ())))
    known = {key for entry in fields for key in entry.keys} | set(id_keys) | set(job_keys)
    if result is not None:
        known |= set(result.keys)
    if issubclass(cls, VodEvent):
        known |= _COMMON_KEYS
    return _Table(
        cls=cls,
        build=constructor(cls),
        fields=tuple(fields),
        result=result,
        result_index=result_index,
        id_keys=id_keys,
        job_keys=job_keys,
        dedupe_keys=getattr(cls, "DEDUPE_KEYS", ()),
        known=frozenset(known),
    )


def _read_fields(table: _Table, obj: Mapping[str, Any]) -> list[Any]:
    """The values of ``table``'s wire fields but the result, in field order, read from the
    (key-trimmed) ``obj``."""
    values: list[Any] = []
    for entry in table.fields:
        value = obj.get(entry.key)
        if value is None and entry.alternates:
            value = _first(obj, entry.alternates)
        if value is not None:
            value = entry.read(value)
        if value is None and entry.default is not None:
            value = entry.default()
        values.append(value)
    return values


def _part(table: _Table, obj: dict[str, Any]) -> Any:
    """A part (StreamInfo, SnapshotInfo) from one nested object."""
    return table.build(*_read_fields(table, obj if table.known.issuperset(obj) else trim_keys(obj)))


# The fields every event starts with (VodEvent's), in the order _build passes them; _table
# refuses, at import, an event class whose fields do not start with exactly these.
_COMMON_FIELDS = (
    "event_type",
    "event_time",
    "event_time_raw",
    "status",
    "status_raw",
    "media_id",
    "job_id",
    "error_code",
    "error_message",
    "extend",
    "data",
    "raw",
    "extra",
    "dedupe_key",
)
_COMMON_KEYS = frozenset(
    {"EventType", "EventTime", "Status", "Code", "Message", "ErrorCode", "ErrorMessage"}
    | {"Extend", "Data"}
)
_TABLES: dict[str, _Table] = {name: _table(cls) for name, cls in EVENT_TYPES.items()}
_GENERIC = _table(GenericEvent)

# --- the event -------------------------------------------------------------------------------

_LABEL = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def _dedupe_key(
    event_type: str,
    table: _Table,
    fields: Mapping[str, Any],
    *,
    ident: str | None,
    status_raw: str | None,
    time_raw: str | None,
) -> str:
    if ident and time_raw:
        material = f"id\x1f{event_type}\x1f{ident}\x1f{status_raw or ''}\x1f{time_raw}"
        for key in table.dedupe_keys:
            value = fields.get(key)
            material += "\x1f" + (value if isinstance(value, str) else _canonical(value))
    else:
        material = "body\x1f" + _canonical(fields)
    digest = hashlib.blake2b(material.encode("utf-8", "surrogatepass"), digest_size=16)
    label = event_type if table is not _GENERIC or _LABEL.fullmatch(event_type) else "unknown"
    return f"{label}:{digest.hexdigest()}"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _build(obj: dict[str, Any], body: bytes | str) -> VodEvent:
    event_type = obj.get("EventType")
    if event_type is None:  # perhaps under a padded key
        event_type = trim_keys(obj).get("EventType")
    if not isinstance(event_type, str):
        raise DecodeError(
            "no EventType field" if event_type is None else "EventType is not a string",
            excerpt_of(body),
        )
    event_type = event_type.strip()
    if not event_type:
        raise DecodeError("EventType is empty", excerpt_of(body))
    table = _TABLES.get(event_type, _GENERIC)

    known = table.known
    if known.issuperset(obj):  # the usual case: no unknown key, so no padded key either
        fields: dict[str, Any] = obj
        extra: dict[str, Any] = {}
    else:
        fields = trim_keys(obj)
        extra = {key: value for key, value in obj.items() if key.strip() not in known}

    # Strings are taken as they are, without a to_str() call: these few lines run for every
    # event, and calls are a measurable part of their cost.
    time_value = fields.get("EventTime")
    time_raw = time_value if type(time_value) is str else to_str(time_value)
    status_raw = fields.get("Status")
    if type(status_raw) is not str:
        status_raw = to_str(status_raw)
    status = _STATUSES.get(status_raw or "") or _status(status_raw)  # "success" at once
    media_id = _first(fields, table.id_keys)
    media_id = (media_id if type(media_id) is str else to_str(media_id)) or None
    job_id = _first(fields, table.job_keys)
    job_id = (job_id if type(job_id) is str else to_str(job_id)) or None

    error_code = fields.get("ErrorCode")
    if error_code is None:
        error_code = fields.get("Code")
    if type(error_code) is not str:
        error_code = to_str(error_code)
    error_message = fields.get("ErrorMessage")
    if error_message is None:
        error_message = fields.get("Message")
    if type(error_message) is not str:
        error_message = to_str(error_message)
    if error_code is None or error_code.strip() in _NO_ERROR_CODES:
        error_code = None
        if error_message is not None and error_message.strip() in _NO_ERROR_MESSAGES:
            error_message = None

    extend = fields.get("Extend")
    if extend is not None and not isinstance(extend, str):
        extend = _canonical(extend)  # VOD sends a string; an object is kept as compact JSON

    data = fields.get("Data")
    if isinstance(data, str):
        data = _json_field(data) if data.strip() else None

    own = _read_fields(table, fields) if table.fields else []
    if table.result is not None:
        own.insert(table.result_index, _result(table.result, event_type, status, data, body))
    ident = job_id or media_id
    dedupe_key = _dedupe_key(
        event_type, table, fields, ident=ident, status_raw=status_raw, time_raw=time_raw
    )
    # Positionally, in _COMMON_FIELDS order (checked by _table): keyword arguments, with the
    # class's own fields added from a dict, cost half a microsecond more per event.
    event: VodEvent = table.build(
        event_type,
        parse_time(time_value),
        time_raw,
        status,
        status_raw,
        media_id,
        job_id,
        error_code,
        error_message,
        extend,
        data,
        obj,
        extra,
        dedupe_key,
        *own,
    )
    return event


def _result(
    entry: _Field, event_type: str, status: str | None, data: Any, body: bytes | str
) -> Any:
    """The typed AI result, under the policy in the module docstring."""
    if data is None:  # absent, null, or an empty string
        return None
    try:
        return entry.read(data)
    except ResultFormatError as exc:
        if status == "success":
            raise DecodeError(f"{event_type} succeeded but {exc}", excerpt_of(body)) from None
        return None


# --- unwrapping ------------------------------------------------------------------------------

_ENVELOPE_KEYS = frozenset(
    {"TopicName", "TopicOwner", "MessageId", "Subscriber", "SubscriptionName", "PublishTime"}
    | {"MessageMD5", "MessageTag"}
)
_DTD = re.compile(r"<!\s*(?:DOCTYPE|ENTITY)", re.IGNORECASE)


def _text(body: Any) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            return bytes(body).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError(
                f"body is not UTF-8 text (bad byte at offset {exc.start})", excerpt_of(body)
            ) from None
    raise DecodeError(f"body must be bytes or str, not {type(body).__name__}")


def _unwrap(text: str, body: bytes | str, layer: int) -> dict[str, Any]:
    """The event object inside ``text``, whatever the layers around it."""
    if layer > _MAX_LAYERS:
        raise DecodeError("too many nested envelopes or encodings", excerpt_of(body))
    text = text.lstrip("\ufeff").strip()
    if not text:
        raise DecodeError("empty body" if layer == 0 else "empty message", excerpt_of(body))
    head = text[0]
    if head in _JSON_NON_OBJECT_HEADS:
        _refuse_json_non_object(text, body)
    if head == "{":
        try:
            value = load_json(text)
        except ValueError as exc:
            raise DecodeError(f"invalid JSON: {exc}", excerpt_of(body)) from None
        return _open_envelope(value, body, layer)  # text starting with "{" parses to an object
    if head == "<":
        return _unwrap(_xml_message(text, body), body, layer + 1)
    decoded = _base64(text)
    if decoded is None:
        what = "body" if layer == 0 else "unwrapped message"
        raise DecodeError(f"{what} is not JSON, XML or Base64", excerpt_of(body))
    try:
        inner = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("Base64 content is not UTF-8 text", excerpt_of(body)) from None
    return _unwrap(inner, body, layer + 1)


def _open_envelope(obj: dict[str, Any], body: bytes | str, layer: int) -> dict[str, Any]:
    """``obj`` itself, or the event inside it when it is a topic envelope."""
    if layer > _MAX_LAYERS:
        raise DecodeError("too many nested envelopes or encodings", excerpt_of(body))
    if "EventType" in obj or "Message" not in obj or _ENVELOPE_KEYS.isdisjoint(obj):
        return obj
    message = obj["Message"]
    if isinstance(message, dict):
        return _open_envelope(message, body, layer + 1)
    if isinstance(message, str):
        return _unwrap(message, body, layer + 1)
    raise DecodeError("topic envelope Message is not a string", excerpt_of(body))


def _base64(text: str) -> bytes | None:
    try:  # the usual case, one unbroken line: checked and decoded in one pass
        return binascii.a2b_base64(text, strict_mode=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
        pass
    compact = "".join(text.split())  # MIME-style Base64 may be wrapped over lines
    if not compact:
        return None
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
        return None


_JSON_NON_OBJECT_HEADS = frozenset('[-0123456789"tfn')
_JSON_TYPE_NAMES = {"list": "an array", "str": "a string", "NoneType": "null", "bool": "a boolean"}


def _refuse_json_non_object(text: str, body: bytes | str) -> None:
    """Raise if ``text`` is a JSON value other than an object; return if it is not JSON at all
    (it may still be Base64: "true" and "1234" are both)."""
    try:
        value = load_json(text)
    except ValueError:
        return
    kind = _JSON_TYPE_NAMES.get(type(value).__name__, "a number")
    raise DecodeError(f"JSON value is {kind}, not an object", excerpt_of(body))


def _xml_message(text: str, body: bytes | str) -> str:
    if _DTD.search(text):
        raise DecodeError("XML with a DOCTYPE or ENTITY is refused", excerpt_of(body))
    try:
        root = ET.fromstring(text)  # noqa: S314 - DTDs are refused above, so no entities
    except (ET.ParseError, ValueError, LookupError) as exc:
        raise DecodeError(f"invalid XML: {exc}", excerpt_of(body)) from None
    if _local_name(root.tag) != "Notification":
        raise DecodeError(
            f"XML root is <{_local_name(root.tag)[:40]}>, not <Notification>", excerpt_of(body)
        )
    for child in root:
        if _local_name(child.tag) == "Message":
            return child.text or ""
    raise DecodeError("XML Notification has no Message", excerpt_of(body))


def _local_name(tag: Any) -> str:
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


# --- the entry point -------------------------------------------------------------------------


def excerpt_of(body: Any, limit: int = EXCERPT_LIMIT) -> str:
    """A short printable piece of ``body`` for error messages: control characters and
    undecodable bytes shown as ``?``, whitespace runs collapsed, cut at ``limit`` with "..."."""
    if isinstance(body, bytes | bytearray | memoryview):
        text = bytes(body[: limit * 4]).decode("utf-8", errors="replace")
    elif isinstance(body, str):
        text = body[: limit * 4]
    else:
        return ""
    text = " ".join(text.split())
    # Lone surrogates are not printable either; U+FFFD stands for an undecodable byte.
    text = "".join(c if c.isprintable() and c != "\ufffd" else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def decode(body: bytes | str) -> VodEvent:
    """Decode one message body (raw, Base64, or in a topic envelope) into its typed event.

    Raises ``DecodeError`` - and nothing else - when the body can never become an event.
    """
    try:
        return _build(_unwrap(_text(body), body, 0), body)
    except DecodeError:
        raise
    except Exception as exc:  # a decoder bug must not escape as anything but DecodeError
        raise DecodeError(
            f"internal decoder error ({type(exc).__name__})", excerpt_of(body)
        ) from exc
