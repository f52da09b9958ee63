"""``event_to_dict`` / ``event_to_json``: the JSON shape `vod-events parse` prints."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from vod_events.decoder import decode
from vod_events.events import VodEvent
from vod_events.serialize import event_fields, event_to_dict, event_to_json, json_line

SAMPLES = Path(str(resources.files("vod_events") / "samples"))


def sample_dict(name: str) -> dict[str, object]:
    return event_to_dict(decode((SAMPLES / name).read_bytes()))


def test_ai_event_as_a_dict() -> None:
    out = sample_dict("AIMediaDNAComplete.json")
    assert list(out) == [
        "event_type",
        "event_time",
        "status",
        "media_id",
        "job_id",
        "error_code",
        "error_message",
        "dedupe_key",
        "result",
        "complete_time",
        "extend",
        "event_time_raw",
        "status_raw",
        "extra",
    ]
    assert out["event_time"] == "2017-03-20T07:49:17.025000+00:00"
    assert out["complete_time"] == "2017-03-20T07:49:35+00:00"
    assert out["event_time_raw"] == "2017-03-20T07:49:17:025Z"
    assert out["result"] == {
        "matches": [
            {
                "primary_key": "7a1d275cc8da4jw93mkde0e182e80****",
                "similarity": 0.99,
                "segments": [
                    {
                        "input_start_s": 0.0,
                        "input_duration_s": 14.0,
                        "duplicate_start_s": 0.5,
                        "duplicate_duration_s": 14.4,
                    }
                ],
            }
        ],
        "extra": {},
    }
    assert str(out["dedupe_key"]).startswith("AIMediaDNAComplete:")


def test_other_events_print_their_fields_and_data() -> None:
    out = sample_dict("ImageUploadComplete.json")
    assert out == {
        "event_type": "ImageUploadComplete",
        "event_time": "2024-05-13T02:15:03.118000+00:00",
        "status": "success",
        "media_id": "c61a0f5f10f271ef9a8e6723b4d9****",
        "job_id": None,
        "error_code": None,
        "error_message": None,
        "dedupe_key": out["dedupe_key"],
        "size": 208114,
        "file_url": "https://outin-5d2b****.oss-cn-shanghai.aliyuncs.com/image/default/B3C1E2A9F07D4C8E9A1B2C3D4E5F****.png",
        "extend": None,
        "event_time_raw": "2024-05-13T02:15:03:118Z",
        "status_raw": "success",
        "data": None,
        "extra": {"AppId": "app-1000000"},
    }


def test_nested_parts_and_their_times() -> None:
    out = sample_dict("TranscodeComplete.json")
    streams = out["stream_infos"]
    assert isinstance(streams, list)
    assert streams[0]["start_time"] == "2024-05-13T02:12:01+00:00"
    assert streams[2] == {
        "status": "fail",
        "job_id": "8c1d2e0f3a4b5c6d9e7f8a9b0c1d****",
        "error_code": "InvalidParameter.ResolutionTooHigh",
        "error_message": "The target resolution exceeds the source resolution.",
        "definition": "4K",
        "format": "mp4",
        "file_url": None,
        "bitrate": None,
        "duration": None,
        "fps": None,
        "width": None,
        "height": None,
        "size": None,
        "encrypt": None,
        "is_audio": None,
        "start_time": None,
        "finish_time": None,
    }


def test_media_changes() -> None:
    out = sample_dict("MediaBaseChangeComplete.string.json")
    assert out["media_content"] == {
        "Title": {"old_value": None, "new_value": "interview raw"},
        "Tags": {"old_value": None, "new_value": "interview,2024"},
        "CateId": '{"NewValue":100028****}',
    }


def test_every_sample_serialises_to_strict_json() -> None:
    for path in SAMPLES.glob("*.json"):
        out = event_to_dict(decode(path.read_bytes()))
        assert "raw" not in out
        assert ("result" in out) != ("data" in out)
        assert json.loads(json.dumps(out, allow_nan=False)) == out


def test_event_to_json_is_one_line_of_utf8_text() -> None:
    event = decode('{"EventType": "X", "Title": "\u6807\u9898", "Note": "a\\nb"}')
    line = event_to_json(event)
    assert "\n" not in line
    assert "\u6807\u9898" in line
    assert json.loads(line)["extra"] == {"Title": "\u6807\u9898", "Note": "a\nb"}


def test_event_to_json_escapes_unpaired_surrogates() -> None:
    event = decode('{"EventType": "X", "Odd": "\\ud800"}')
    line = event_to_json(event)
    line.encode("utf-8")  # would raise if the surrogate were written as is
    assert '"Odd":"\\ud800"' in line


def _lines_agree(event: VodEvent) -> None:
    line = json_line(event_fields(event))
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert list(json.loads(line)) == list(event_to_dict(event))  # the same keys in order
    assert json.loads(line) == json.loads(json.dumps(event_to_dict(event)))


def test_json_line_writes_every_sample_as_event_to_dict_does() -> None:
    for path in SAMPLES.glob("*.json"):
        _lines_agree(decode(path.read_bytes()))


def test_json_line_falls_back_for_what_orjson_refuses() -> None:
    for body in (
        '{"EventType": "X", "Odd": "\\ud800"}',  # an unpaired surrogate
        '{"EventType": "X", "Huge": 123456789012345678901234567890}',  # beyond 64 bits
        '{"EventType": "X", "Title": "\u6807\u9898", "Nested": {"1": [1.5, null, true]}}',
    ):
        _lines_agree(decode(body))
    line = json_line(event_fields(decode('{"EventType": "X", "Odd": "\\ud800"}')))
    assert b'"Odd": "\\ud800"' in line  # ASCII-escaped, so still UTF-8
