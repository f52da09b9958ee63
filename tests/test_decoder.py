"""The decoder: encodings and envelopes, tolerance of VOD's quirks, failures, the AI ``Data``
policy, and the dedupe key."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any, cast

import pytest

from vod_events.decoder import EXCERPT_LIMIT, decode
from vod_events.errors import DecodeError
from vod_events.events import (
    AIMediaAuditComplete,
    AIMediaDNAComplete,
    AIVideoTagComplete,
    FileUploadComplete,
    GenericEvent,
    StreamTranscodeComplete,
    UploadByURLComplete,
    VideoAnalysisComplete,
)

SAMPLES = Path(str(resources.files("vod_events") / "samples"))
TAG_SEED = (SAMPLES / "AIVideoTagComplete.json").read_text(encoding="utf-8")
DNA_SEED = (SAMPLES / "AIMediaDNAComplete.json").read_text(encoding="utf-8")
AUDIT_SEED = (SAMPLES / "AIMediaAuditComplete.json").read_text(encoding="utf-8")


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def event_json(**fields: Any) -> str:
    base: dict[str, Any] = {
        "EventTime": "2024-05-13T02:11:48Z",
        "EventType": "FileUploadComplete",
        "VideoId": "v-1",
        "Status": "success",
    }
    base.update(fields)
    return json.dumps({key: value for key, value in base.items() if value is not None})


def topic_json(message: str, **extra: Any) -> str:
    return json.dumps(
        {
            "TopicOwner": "1234567890123456",
            "TopicName": "vod-events",
            "Subscriber": "1234567890123456",
            "SubscriptionName": "to-queue",
            "MessageId": "5F1A2B3C4D5E6F708192A3B4C5D6E7F8",
            "Message": message,
            "MessageMD5": "0123456789ABCDEF0123456789ABCDEF",
            "PublishTime": 1715566308000,
            **extra,
        }
    )


def topic_xml(message: str) -> str:
    escaped = message.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        '<Notification xmlns="http://mns.aliyuncs.com/doc/v1/">'
        "<TopicOwner>1234567890123456</TopicOwner><TopicName>vod-events</TopicName>"
        "<Subscriber>1234567890123456</Subscriber><SubscriptionName>to-queue</SubscriptionName>"
        "<MessageId>5F1A2B3C4D5E6F708192A3B4C5D6E7F8</MessageId>"
        f"<Message>{escaped}</Message>"
        "<MessageMD5>0123456789ABCDEF0123456789ABCDEF</MessageMD5>"
        "<PublishTime>1715566308000</PublishTime></Notification>"
    )


def reason_of(body: bytes | str) -> str:
    with pytest.raises(DecodeError) as caught:
        decode(body)
    return caught.value.reason


# --- encodings and envelopes -----------------------------------------------------------------

ENCODINGS = {
    "raw str": lambda text: text,
    "raw bytes": lambda text: text.encode("utf-8"),
    "bytes with BOM": lambda text: b"\xef\xbb\xbf" + text.encode("utf-8"),
    "surrounding whitespace": lambda text: f"\n  {text}\n",
    "base64": b64,
    "base64 bytes": lambda text: b64(text).encode("ascii"),
    "base64 wrapped at 76": lambda text: base64.encodebytes(text.encode("utf-8")).decode(),
    "topic JSON, raw message": topic_json,
    "topic JSON, base64 message": lambda text: topic_json(b64(text)),
    "topic JSON in base64": lambda text: b64(topic_json(text)),
    "topic JSON, PublishTime as string": lambda text: topic_json(text, PublishTime="1715566308"),
    "topic XML, raw message": topic_xml,
    "topic XML, base64 message": lambda text: topic_xml(b64(text)),
    "topic XML in base64": lambda text: b64(topic_xml(b64(text))),
}


@pytest.mark.parametrize("encode", ENCODINGS.values(), ids=ENCODINGS.keys())
@pytest.mark.parametrize("seed", [TAG_SEED, DNA_SEED, AUDIT_SEED], ids=["tag", "dna", "audit"])
def test_every_encoding_gives_the_same_event(encode: Any, seed: str) -> None:
    reference = decode(seed)
    event = decode(encode(seed))
    assert type(event) is type(reference)
    assert event == reference
    assert event.dedupe_key == reference.dedupe_key


def test_topic_envelope_with_message_as_an_object() -> None:
    envelope = json.loads(topic_json("x"))
    envelope["Message"] = json.loads(DNA_SEED)
    event = decode(json.dumps(envelope))
    assert isinstance(event, AIMediaDNAComplete)
    assert event.job_id == "88c6ca184c0edj384a5b665e2a12****"


def test_message_without_envelope_fields_is_not_unwrapped() -> None:
    assert reason_of(json.dumps({"Message": event_json()})) == "no EventType field"


def test_envelope_message_that_is_not_text() -> None:
    reason = reason_of(topic_json("x").replace('"Message": "x"', '"Message": 42'))
    assert reason == "topic envelope Message is not a string"


def test_envelope_with_an_empty_message() -> None:
    assert reason_of(topic_json("")) == "empty message"


def test_nested_object_envelopes_are_bounded() -> None:
    envelope: dict[str, Any] = json.loads(DNA_SEED)
    for _ in range(6):
        envelope = {"TopicName": "t", "MessageId": "m", "Message": envelope}
    assert reason_of(json.dumps(envelope)) == "too many nested envelopes or encodings"


def test_nesting_is_bounded() -> None:
    body = DNA_SEED
    for _ in range(6):
        body = b64(body)
    assert reason_of(body) == "too many nested envelopes or encodings"


# --- XML safety ------------------------------------------------------------------------------


def test_xml_with_a_doctype_is_refused_before_parsing() -> None:
    laughs = (
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
        "<Notification><Message>&lol2;</Message></Notification>"
    )
    assert reason_of(laughs) == "XML with a DOCTYPE or ENTITY is refused"


def test_xml_external_entity_is_refused() -> None:
    xxe = (
        '<!DOCTYPE n [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<Notification><Message>&x;</Message></Notification>"
    )
    assert reason_of(xxe) == "XML with a DOCTYPE or ENTITY is refused"


def test_xml_that_is_not_a_notification() -> None:
    reason = reason_of("<Message><MessageBody>x</MessageBody></Message>")
    assert reason == "XML root is <Message>, not <Notification>"


def test_xml_notification_without_message() -> None:
    assert reason_of("<Notification><TopicName>t</TopicName></Notification>") == (
        "XML Notification has no Message"
    )


def test_broken_xml() -> None:
    assert reason_of("<Notification><Message>").startswith("invalid XML: ")


# --- failures --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "empty body"),
        ("   \n", "empty body"),
        (
            b'{"EventType": "FileUploadComplete"\xff}',
            "body is not UTF-8 text (bad byte at offset 34)",
        ),
        ("[1, 2]", "JSON value is an array, not an object"),
        ("null", "JSON value is null, not an object"),
        ("42", "JSON value is a number, not an object"),
        ('"eyJFdmVudFR5cGUiOiJ4In0="', "JSON value is a string, not an object"),
        ("true", "JSON value is a boolean, not an object"),
        ("hello, world", "body is not JSON, XML or Base64"),
        ("{not json", "invalid JSON: Expecting property name enclosed in double quotes"),
        ('{"EventType": "FileUploadComplete", "Size": NaN}', "invalid JSON: NaN is not valid JSON"),
        ("{}", "no EventType field"),
        ('{"EventType": 7}', "EventType is not a string"),
        ('{"EventType": "  "}', "EventType is empty"),
        (b64("hello, world"), "unwrapped message is not JSON, XML or Base64"),
        (base64.b64encode(b"\xff\xfe\xfd").decode(), "Base64 content is not UTF-8 text"),
        ('{"a":' * 100_000, "invalid JSON: JSON nested too deeply"),
    ],
    ids=lambda value: repr(value)[:40],
)
def test_undecodable_bodies_raise_decode_error_with_a_reason(
    body: bytes | str, reason: str
) -> None:
    assert reason_of(body).startswith(reason)


def test_a_body_of_the_wrong_type_is_a_decode_error() -> None:
    assert reason_of(cast(Any, 42)) == "body must be bytes or str, not int"


def test_excerpt_is_short_printable_and_truncated() -> None:
    body = b"\x00\x01garbage\xff\n\t" + b"x" * 10_000
    with pytest.raises(DecodeError) as caught:
        decode(body)
    excerpt = caught.value.excerpt
    assert len(excerpt) == EXCERPT_LIMIT
    assert excerpt.startswith("??garbage? x")
    assert excerpt.endswith("...")
    assert excerpt.isprintable()
    assert str(caught.value) == f"{caught.value.reason} (input: {excerpt})"


def test_excerpt_of_a_short_body_is_the_body() -> None:
    with pytest.raises(DecodeError) as caught:
        decode('{"EventType": 7}')
    assert caught.value.excerpt == '{"EventType": 7}'


# --- tolerance -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2017-03-20T07:49:17Z", datetime(2017, 3, 20, 7, 49, 17, tzinfo=UTC)),
        ("2017-03-20T07:49:17:025Z", datetime(2017, 3, 20, 7, 49, 17, 25000, tzinfo=UTC)),
        ("2017-03-20T07:49:17.025Z", datetime(2017, 3, 20, 7, 49, 17, 25000, tzinfo=UTC)),
        ("2017-03-20T15:49:17+08:00", datetime(2017, 3, 20, 7, 49, 17, tzinfo=UTC)),
        ("2017-03-20T07:49:17", datetime(2017, 3, 20, 7, 49, 17, tzinfo=UTC)),
        ("2017-03-20 07:49:17", datetime(2017, 3, 20, 7, 49, 17, tzinfo=UTC)),
        ("yesterday", None),
        ("0001-01-01T00:00:00+01:00", None),  # before year 1 in UTC
    ],
)
def test_event_time_formats(raw: str, expected: datetime | None) -> None:
    event = decode(event_json(EventTime=raw))
    assert event.event_time == expected
    assert event.event_time_raw == raw
    if event.event_time is not None:
        assert event.event_time.tzinfo is UTC


def test_missing_event_time() -> None:
    event = decode(event_json(EventTime=None))
    assert (event.event_time, event.event_time_raw) == (None, None)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        ("success", "success"),
        ("fail", "fail"),
        ("Success", "success"),
        ("Failed", "fail"),
        ("Succeed", "success"),
        ("SUCCESS", "success"),
        (" success ", "success"),
        ("processing", None),
    ],
)
def test_status_is_normalised_and_kept_raw(raw: str, status: str | None) -> None:
    event = decode(event_json(Status=raw))
    assert (event.status, event.status_raw) == (status, raw)


def test_success_code_zero_is_not_an_error() -> None:
    event = decode(event_json(Code="0", Message="OK"))
    assert (event.error_code, event.error_message) == (None, None)


def test_numeric_code_zero_is_not_an_error() -> None:
    event = decode(event_json(Code=0, Message="OK"))
    assert (event.error_code, event.error_message) == (None, None)


def test_failure_code_and_message() -> None:
    event = decode(event_json(Status="fail", Code="InvalidMedia", Message="bad file"))
    assert (event.error_code, event.error_message) == ("InvalidMedia", "bad file")


def test_error_code_and_error_message_spelling() -> None:
    event = decode(event_json(Status="fail", ErrorCode="Timeout", ErrorMessage="took too long"))
    assert (event.error_code, event.error_message) == ("Timeout", "took too long")


def test_message_without_code_is_kept() -> None:
    event = decode(event_json(Status="fail", ErrorMessage="source gone"))
    assert (event.error_code, event.error_message) == (None, "source gone")


def test_numbers_as_strings_and_unreadable_numbers() -> None:
    body = event_json(
        EventType="VideoAnalysisComplete",
        Width="1920",
        Height=1080.0,
        Duration="12",
        Fps="not a number",
        Size="1e3",
        Bitrate=True,
    )
    event = decode(body)
    assert isinstance(event, VideoAnalysisComplete)
    assert (event.width, event.height, event.duration) == (1920, 1080, 12.0)
    assert (event.fps, event.size, event.bitrate) == (None, 1000, None)
    assert event.raw["Fps"] == "not a number"  # the unreadable value is still there
    assert event.extra == {}


def test_booleans_as_strings() -> None:
    event = decode(event_json(EventType="StreamTranscodeComplete", Encrypt="true"))
    assert isinstance(event, StreamTranscodeComplete)
    assert event.encrypt is True


def test_keys_with_stray_whitespace() -> None:
    body = event_json(EventType="UploadByURLComplete", JobId="j-1")
    padded = json.loads(body)
    padded["SourceURL "] = "https://example.org/a.mp4"
    padded[" Size"] = "12"
    padded[" AppId "] = "app-1000000"
    event = decode(json.dumps(padded))
    assert isinstance(event, UploadByURLComplete)
    assert (event.source_url, event.size) == ("https://example.org/a.mp4", 12)
    assert event.extra == {" AppId ": "app-1000000"}  # unknown fields are kept as sent


def test_event_type_under_a_padded_key() -> None:
    body = json.loads(event_json())
    body[" EventType "] = body.pop("EventType")
    assert type(decode(json.dumps(body))) is FileUploadComplete


def test_an_exact_key_wins_over_a_padded_duplicate() -> None:
    body = json.loads(event_json(EventType="UploadByURLComplete"))
    body["SourceURL "] = "padded"
    body["SourceURL"] = "exact"
    event = decode(json.dumps(body))
    assert isinstance(event, UploadByURLComplete)
    assert event.source_url == "exact"


def test_extend_is_passed_through_as_sent() -> None:
    event = decode(event_json(Extend='{"localId": "42"}'))
    assert event.extend == '{"localId": "42"}'


def test_extend_sent_as_an_object_becomes_compact_json() -> None:
    event = decode(event_json(Extend={"localId": "42", "n": 1}))
    assert event.extend == '{"localId":"42","n":1}'


def test_unknown_event_type_is_a_generic_event_keeping_everything() -> None:
    body = json.dumps(
        {
            "EventType": "FancyNewComplete",
            "EventTime": "2024-05-13T02:11:48Z",
            "VideoId": "v-9",
            "Status": "success",
            "Data": '{"Answer": 42}',
            "Weight": "3",
        }
    )
    event = decode(body)
    assert type(event) is GenericEvent
    assert (event.event_type, event.media_id, event.status) == (
        "FancyNewComplete",
        "v-9",
        "success",
    )
    assert event.data == {"Answer": 42}
    assert event.extra == {"Weight": "3"}
    assert event.dedupe_key.startswith("FancyNewComplete:")


def test_data_is_decoded_for_every_event() -> None:
    as_string = decode(event_json(Data='{"k": [1, 2]}'))
    as_object = decode(event_json(Data={"k": [1, 2]}))
    not_json = decode(event_json(Data="plain text"))
    assert as_string.data == as_object.data == {"k": [1, 2]}
    assert not_json.data == "plain text"


def test_unknown_fields_are_kept_in_extra() -> None:
    event = decode(event_json(AppId="app-1000000", Region="cn-shanghai"))
    assert event.extra == {"AppId": "app-1000000", "Region": "cn-shanghai"}


def test_missing_optional_fields_read_as_none() -> None:
    event = decode('{"EventType": "FileUploadComplete"}')
    assert isinstance(event, FileUploadComplete)
    assert (event.media_id, event.status, event.size, event.file_url) == (None, None, None, None)


def test_events_are_frozen() -> None:
    event = decode(TAG_SEED)
    with pytest.raises(AttributeError):
        event.status = "fail"  # type: ignore[misc]


# --- the AI Data policy ----------------------------------------------------------------------


def ai_event(event_type: str, status: str, data: Any) -> str:
    return json.dumps(
        {
            "EventTime": "2024-05-13T11:06:00Z",
            "EventType": event_type,
            "JobId": "job-1",
            "MediaId": "media-1",
            "Status": status,
            "Data": data,
        }
    )


AI_TYPES = ["AIVideoTagComplete", "AIMediaDNAComplete", "AIMediaAuditComplete"]


@pytest.mark.parametrize("event_type", AI_TYPES)
def test_success_with_data_that_is_not_json_is_a_decode_error(event_type: str) -> None:
    reason = reason_of(ai_event(event_type, "success", '{"VideoDNA": ['))
    prefix = event_type.removesuffix("Complete")
    assert reason.startswith(f"{event_type} succeeded but {prefix} Data is not valid JSON")


@pytest.mark.parametrize("event_type", AI_TYPES)
def test_success_with_data_that_is_not_an_object_is_a_decode_error(event_type: str) -> None:
    reason = reason_of(ai_event(event_type, "success", "[1, 2]"))
    prefix = event_type.removesuffix("Complete")
    assert reason == f"{event_type} succeeded but {prefix} Data is a list, not an object"


@pytest.mark.parametrize(
    ("event_type", "data", "problem"),
    [
        ("AIVideoTagComplete", {"Person": "Zhang San"}, "Person is a string, not a list"),
        ("AIVideoTagComplete", {"Keyword": ["Cushion"]}, "Keyword holds a string, not an object"),
        (
            "AIMediaDNAComplete",
            {"VideoDNA": {"PrimaryKey": "x"}},
            "VideoDNA is an object, not a list",
        ),
        ("AIMediaAuditComplete", {"VideoResult": []}, "VideoResult is a list, not an object"),
        (
            "AIMediaAuditComplete",
            {" CoverResult": [1]},
            "CoverResult holds a number, not an object",
        ),
    ],
)
def test_success_with_data_of_the_wrong_structure_is_a_decode_error(
    event_type: str, data: Any, problem: str
) -> None:
    assert (
        reason_of(ai_event(event_type, "success", data)) == f"{event_type} succeeded but {problem}"
    )


@pytest.mark.parametrize("event_type", AI_TYPES)
@pytest.mark.parametrize("data", ["{broken", "[]", {"VideoDNA": 1, "Person": 1, "VideoResult": 1}])
def test_failed_job_with_unreadable_data_has_no_result(event_type: str, data: Any) -> None:
    event = decode(ai_event(event_type, "fail", data))
    assert getattr(event, "result", "missing") is None
    assert event.status == "fail"


@pytest.mark.parametrize("event_type", AI_TYPES)
@pytest.mark.parametrize("data", [None, "", "   "])
def test_missing_or_empty_data_has_no_result_whatever_the_status(
    event_type: str, data: Any
) -> None:
    for status in ("success", "fail"):
        event = decode(ai_event(event_type, status, data))
        assert getattr(event, "result", "missing") is None


def test_readable_data_of_a_failed_job_is_still_read() -> None:
    event = decode(ai_event("AIVideoTagComplete", "fail", {"Keyword": [{"Tag": "partial"}]}))
    assert isinstance(event, AIVideoTagComplete)
    assert event.result is not None
    assert [tag.tag for tag in event.result.keyword] == ["partial"]


def test_audit_without_video_result() -> None:
    event = decode(ai_event("AIMediaAuditComplete", "success", {"Suggestion": "pass"}))
    assert isinstance(event, AIMediaAuditComplete)
    assert event.result is not None
    assert (event.result.suggestion, event.result.video, event.result.covers) == ("pass", None, [])


# --- dedupe key ------------------------------------------------------------------------------


def test_dedupe_key_shape() -> None:
    key = decode(TAG_SEED).dedupe_key
    prefix, digest = key.split(":")
    assert prefix == "AIVideoTagComplete"
    assert len(digest) == 32
    assert int(digest, 16) >= 0


def test_dedupe_key_ignores_key_order_and_formatting() -> None:
    compact = json.dumps(json.loads(TAG_SEED), separators=(",", ":"))
    reordered = json.dumps(dict(reversed(list(json.loads(TAG_SEED).items()))), indent=4)
    keys = {decode(body).dedupe_key for body in (TAG_SEED, compact, reordered)}
    assert len(keys) == 1


def test_success_after_failure_has_another_key() -> None:
    failed = decode(ai_event("AIVideoTagComplete", "fail", ""))
    succeeded = decode(ai_event("AIVideoTagComplete", "success", {"Keyword": []}))
    assert failed.dedupe_key != succeeded.dedupe_key


def test_same_id_and_status_at_another_time_has_another_key() -> None:
    first = decode(event_json(EventTime="2024-05-13T02:11:48Z"))
    second = decode(event_json(EventTime="2024-05-13T02:11:49Z"))
    assert first.dedupe_key != second.dedupe_key


def test_job_id_takes_precedence_over_media_id() -> None:
    one = decode(ai_event("AIMediaDNAComplete", "success", {"VideoDNA": []}))
    other_job = decode(ai_event("AIMediaDNAComplete", "success", {}).replace("job-1", "job-2"))
    assert one.dedupe_key != other_job.dedupe_key


def test_streams_of_one_video_in_one_second_have_distinct_keys() -> None:
    keys = {
        decode(event_json(EventType="StreamTranscodeComplete", Definition=definition)).dedupe_key
        for definition in ("LD", "SD", "HD")
    }
    assert len(keys) == 3


def test_without_ids_the_key_is_a_hash_of_the_whole_event() -> None:
    snapshot = (SAMPLES / "SnapshotComplete.no-id.json").read_text(encoding="utf-8")
    same = {decode(body).dedupe_key for body in (snapshot, b64(snapshot), topic_xml(snapshot))}
    assert len(same) == 1
    changed = json.loads(snapshot)
    changed["SnapshotInfos"][0]["SnapshotCount"] = 4
    assert decode(json.dumps(changed)).dedupe_key not in same


def test_without_event_time_the_key_is_a_hash_of_the_whole_event() -> None:
    first = decode(event_json(EventTime=None, Size=1))
    second = decode(event_json(EventTime=None, Size=2))
    assert first.dedupe_key != second.dedupe_key
    assert decode(event_json(EventTime=None, Size=1)).dedupe_key == first.dedupe_key


def test_unknown_type_with_odd_characters_gets_a_safe_prefix() -> None:
    event = decode(event_json(EventType="Weird Type\n\u2603" + "x" * 300))
    assert event.dedupe_key.startswith("unknown:")
    assert len(event.dedupe_key) == len("unknown:") + 32


def test_dedupe_key_length_is_bounded() -> None:
    event = decode(event_json(VideoId="v" * 5000, EventTime="t" * 5000))
    assert len(event.dedupe_key) <= 200
