"""Property tests: whatever the input, ``decode`` returns an event or raises ``DecodeError`` -
never another exception, never the internal-error fallback - and what it returns can always be
serialised. Also: the dedupe key does not depend on the encoding."""

from __future__ import annotations

import base64
import contextlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vod_events._coerce import (
    load_json,
    parse_time,
    to_bool,
    to_float,
    to_int,
    to_str,
    to_str_list,
)
from vod_events.decoder import EXCERPT_LIMIT, decode
from vod_events.errors import DecodeError
from vod_events.events import EVENT_TYPES, VodEvent
from vod_events.serialize import event_to_dict

SAMPLES = Path(str(resources.files("vod_events") / "samples"))
SAMPLE_OBJECTS = [
    json.loads(path.read_text(encoding="utf-8")) for path in sorted(SAMPLES.glob("*.json"))
]

FAST = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
# Values that look like what VOD sends in the fields the decoder converts.
vod_like = st.sampled_from(
    [
        "",
        " ",
        "0",
        "-1",
        "12.5",
        "1e400",
        "nan",
        "true",
        "Success",
        "Failed",
        "2017-03-20T07:49:17:025Z",
        "9999-12-31T23:59:59-23:59",
        "{",
        "[]",
        "{}",
        '{"OldValue": 1}',
        "\ud800",
    ]
)


def check(body: bytes | str) -> VodEvent | None:
    """Decode; on success the event must serialise to strict JSON, on failure the error must be
    a deliberate one with a short printable excerpt."""
    try:
        event = decode(body)
    except DecodeError as exc:
        assert not exc.reason.startswith("internal decoder error"), exc.reason
        assert len(exc.excerpt) <= EXCERPT_LIMIT
        assert exc.excerpt.isprintable()
        return None
    json.dumps(event_to_dict(event), allow_nan=False)
    assert 0 < len(event.dedupe_key) <= 200
    return event


@FAST
@given(st.binary(max_size=400))
def test_arbitrary_bytes(body: bytes) -> None:
    check(body)


@FAST
@given(st.text(max_size=400))
def test_arbitrary_text(body: str) -> None:
    check(body)


@FAST
@given(st.binary(max_size=300))
def test_arbitrary_bytes_in_base64(body: bytes) -> None:
    check(base64.b64encode(body))


@FAST
@given(
    st.text(max_size=200).map(lambda t: "<Notification><Message>" + t + "</Message></Notification>")
)
def test_arbitrary_xml_message(body: str) -> None:
    check(body)


@FAST
@given(st.sampled_from(SAMPLE_OBJECTS), st.data())
def test_mutated_fields(template: dict[str, Any], data: st.DataObject) -> None:
    """Replace, delete or pad the sample's fields, and the Data's fields, with odd values."""
    obj = json.loads(json.dumps(template))
    for _ in range(data.draw(st.integers(min_value=1, max_value=6))):
        key = data.draw(st.sampled_from(sorted(obj)))
        action = data.draw(st.sampled_from(["replace", "vod-like", "delete", "pad"]))
        if action == "replace":
            obj[key] = data.draw(json_values)
        elif action == "vod-like":
            obj[key] = data.draw(vod_like)
        elif action == "delete" and key != "EventType":
            del obj[key]
        elif action == "pad":
            obj[f" {key} "] = obj.pop(key)
    if isinstance(obj.get("Data"), str):
        try:
            inner = json.loads(obj["Data"])
        except ValueError:
            inner = None
        if isinstance(inner, dict) and inner:
            key = data.draw(st.sampled_from(sorted(inner)))
            inner[key] = data.draw(json_values | vod_like)
            obj["Data"] = json.dumps(inner)
    check(json.dumps(obj))


@FAST
@given(st.sampled_from(SAMPLE_OBJECTS), st.data())
def test_mutated_nested_values(template: dict[str, Any], data: st.DataObject) -> None:
    """Replace values deep inside the sample (nested lists and objects, Data objects)."""
    obj = json.loads(json.dumps(template))
    if isinstance(obj.get("Data"), str):
        with contextlib.suppress(ValueError):
            obj["Data"] = json.loads(obj["Data"])
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                paths.append((node, key))
                walk(value)
        elif isinstance(node, list):
            for index, value in enumerate(node):
                paths.append((node, index))
                walk(value)

    walk(obj)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        container, key = data.draw(st.sampled_from(paths))
        container[key] = data.draw(json_values | vod_like)
    check(json.dumps(obj))


@FAST
@given(st.sampled_from(sorted(SAMPLES.glob("*.json"))), st.data())
def test_mutated_bytes(path: Path, data: st.DataObject) -> None:
    """Flip, delete and insert bytes of a valid body."""
    body = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(min_value=1, max_value=8))):
        position = data.draw(st.integers(min_value=0, max_value=len(body)))
        action = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if action == "flip" and position < len(body):
            body[position] ^= data.draw(st.integers(min_value=1, max_value=255))
        elif action == "delete" and position < len(body):
            del body[position]
        else:
            body[position:position] = data.draw(st.binary(min_size=1, max_size=4))
    check(bytes(body))


ids = st.text(alphabet="abcdef0123456789*", min_size=1, max_size=40)


@FAST
@given(
    event_type=st.sampled_from(sorted(EVENT_TYPES)),
    media_id=ids,
    job_id=st.none() | ids,
    status=st.sampled_from(["success", "fail", "Success", "Failed", "Succeed"]),
    time=st.datetimes().map(lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%S:%f")[:-3] + "Z"),
)
def test_dedupe_key_is_the_same_in_every_encoding(
    event_type: str, media_id: str, job_id: str | None, status: str, time: str
) -> None:
    obj = {"EventType": event_type, "EventTime": time, "Status": status, "MediaId": media_id}
    if job_id is not None:
        obj["JobId"] = job_id
    raw = json.dumps(obj)
    envelope = json.dumps({"TopicName": "t", "MessageId": "m", "Message": raw})
    xml = (
        f"<Notification><Message>{base64.b64encode(raw.encode()).decode()}</Message></Notification>"
    )
    keys = {
        decode(body).dedupe_key for body in (raw, base64.b64encode(raw.encode()), envelope, xml)
    }
    assert len(keys) == 1
    other_status = "fail" if status.lower().startswith("succ") else "success"
    assert decode(json.dumps({**obj, "Status": other_status})).dedupe_key not in keys


@FAST
@given(json_values | vod_like)
def test_value_readers_never_raise(value: Any) -> None:
    assert to_str(value) is None or isinstance(to_str(value), str)
    assert to_int(value) is None or isinstance(to_int(value), int)
    number = to_float(value)
    assert number is None or (isinstance(number, float) and abs(number) < float("inf"))
    assert to_bool(value) in (None, True, False)
    assert all(isinstance(item, str) for item in to_str_list(value))
    moment = parse_time(value)
    assert moment is None or moment.utcoffset() is not None


@FAST
@given(st.text(max_size=40))
def test_time_parser_never_raises(text: str) -> None:
    moment = parse_time(text)
    assert moment is None or moment.utcoffset() is not None


def _strict_decode(text: str) -> tuple[str, Any]:
    """What load_json must agree with: the standard JSON decoder, with NaN, Infinity and
    out-of-range numbers refused - ("value", v) or ("error", message)."""

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    def finite(number: str) -> float:
        value = float(number)
        if abs(value) == float("inf"):
            raise ValueError(f"number {number[:24]} is out of range")
        return value

    try:
        decoded = json.JSONDecoder(parse_constant=refuse, parse_float=finite).decode(text)
    except RecursionError:
        return ("error", "JSON nested too deeply")
    except ValueError as exc:
        return ("error", str(exc))
    return ("value", decoded)


json_texts = st.builds(
    lambda before, value, after: before + json.dumps(value) + after,
    st.sampled_from(["", " ", "\n\t", "x"]),
    json_values,
    st.sampled_from(["", " ", "\r\n", ",", "}", "x", "1"]),
)


@FAST
@given(json_texts | st.text(max_size=40) | vod_like)
def test_load_json_agrees_with_the_standard_decoder(text: str) -> None:
    """load_json's fast path (the scanner alone) gives the same value or the same error as
    the full JSONDecoder.decode, surrounding whitespace and trailing data included."""
    try:
        outcome: tuple[str, Any] = ("value", load_json(text))
    except ValueError as exc:
        outcome = ("error", str(exc))
    assert outcome == _strict_decode(text)
