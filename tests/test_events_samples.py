"""The packaged sample payloads: the seeds decode exactly, field by field, and every one of the
22 event types has a sample that decodes into its class with the values it carries."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from vod_events.decoder import decode
from vod_events.events import (
    EVENT_TYPES,
    AIMediaAuditComplete,
    AIMediaDNAComplete,
    AIVideoTagComplete,
    GenericEvent,
    MediaFieldChange,
    SnapshotInfo,
    StreamInfo,
    VodEvent,
    WorkflowTaskComplete,
)
from vod_events.results import (
    AsrSentence,
    AuditCover,
    AuditFrame,
    AuditScene,
    AuditTitle,
    AuditVerdict,
    AuditVideo,
    DnaMatch,
    DnaSegment,
    MediaAuditResult,
    MediaDnaResult,
    VideoTag,
    VideoTagResult,
)

SAMPLES = Path(str(resources.files("vod_events") / "samples"))
SEEDS = Path(__file__).resolve().parents[2] / "shared" / "seeds"


def sample(name: str) -> VodEvent:
    return decode((SAMPLES / name).read_bytes())


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --- the package ships a sample per type -----------------------------------------------------


def test_every_event_type_has_a_sample_named_after_it() -> None:
    names = {path.name.split(".")[0] for path in SAMPLES.glob("*.json")}
    assert len(EVENT_TYPES) == 22
    assert set(EVENT_TYPES) <= names
    assert all((SAMPLES / f"{name}.json").is_file() for name in EVENT_TYPES)


@pytest.mark.parametrize("path", sorted(SAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_every_sample_is_a_flat_event_of_the_type_in_its_name(path: Path) -> None:
    event = decode(path.read_bytes())
    expected_type = path.name.split(".")[0]
    assert event.event_type == expected_type
    assert type(event) is EVENT_TYPES[expected_type]
    assert type(event).__name__ == expected_type
    assert event.raw == json.loads(path.read_text(encoding="utf-8"))
    assert event.event_time is not None
    assert event.event_time.tzinfo is UTC


@pytest.mark.skipif(not SEEDS.is_dir(), reason="shared seeds are not checked out here")
@pytest.mark.parametrize(
    ("seed", "sample_name"),
    [
        ("000_b4a452eebf5451fa.txt", "AIVideoTagComplete.json"),
        ("001_49d0ae7c48662e8f.txt", "AIMediaDNAComplete.json"),
        ("002_1d8d5367907a6c2d.txt", "AIVideoTagComplete.seed002.json"),
        ("003_0947b32963ee9c11.txt", "AIMediaAuditComplete.json"),
    ],
)
def test_seed_samples_are_the_seed_payloads_verbatim(seed: str, sample_name: str) -> None:
    payload = (SAMPLES / sample_name).read_text(encoding="utf-8").strip()
    assert payload in (SEEDS / seed).read_text(encoding="utf-8")


# --- the seeds, field by field ---------------------------------------------------------------


def test_seed_000_video_tag() -> None:
    event = sample("AIVideoTagComplete.json")
    assert isinstance(event, AIVideoTagComplete)
    assert event.event_type == "AIVideoTagComplete"
    assert event.event_time == datetime(2017, 3, 20, 7, 49, 17, tzinfo=UTC)
    assert event.event_time_raw == "2017-03-20T07:49:17Z"
    assert (event.status, event.status_raw) == ("success", "success")
    assert event.job_id == "jd83k4184c0e47098a5b665e2aj3****"
    assert event.media_id == "sj83k40d92c641401fab46a0b842e9****"
    assert (event.error_code, event.error_message) == (None, None)  # "0"/"OK" is no error
    assert event.extend is None
    assert event.extra == {}
    assert event.result == VideoTagResult(
        keyword=[
            VideoTag(
                tag="Cushion",
                times_ms=[3260, 4000, 5000, 8410, 10000, 12000, 13000, 14000, 15000],
            ),
            VideoTag(
                tag="lancome", times_ms=[2000, 4000, 5000, 7000, 8000, 10000, 12000, 13000, 14000]
            ),
            VideoTag(tag="Lancome", times_ms=[3260, 4000, 5000, 8410, 12000, 13000, 14000]),
            VideoTag(tag="CC cream", times_ms=[4000, 5000, 12000, 13000, 14000, 15000]),
            VideoTag(tag="Light", times_ms=[8000, 8410, 10000]),
            VideoTag(tag="cc cream", times_ms=[3260, 8410]),
            VideoTag(tag="Petal", times_ms=[3260]),
            VideoTag(tag="Air", times_ms=[8410]),
            VideoTag(tag="Bright", times_ms=[900]),
            VideoTag(tag="Clear", times_ms=[900]),
            VideoTag(tag="Skin", times_ms=[900]),
            VideoTag(tag="French Lancome", times_ms=[8410]),
        ],
        person=[
            VideoTag(
                tag="Zhang San",
                times_ms=[10760],
                face_url="http://example.com/aivideotag/11111B65-1955-4B84-823D-7921A742****/Index_00016.jpg",
            )
        ],
        location=[VideoTag(tag="Asia", times_ms=[8410])],
    )
    assert event.result.asr_text is None


def test_seed_002_video_tag() -> None:
    event = sample("AIVideoTagComplete.seed002.json")
    assert isinstance(event, AIVideoTagComplete)
    assert event.event_time == datetime(2017, 3, 20, 7, 49, 17, tzinfo=UTC)
    assert event.job_id == "jd83k4184c0e47098a5b665e2aj3****"
    assert event.media_id == "sj83k40d92c641401fab46a0b842e9****"
    assert event.status == "success"
    assert event.result is not None
    assert [tag.tag for tag in event.result.keyword] == [
        "Cushion",
        "lancome",
        "Lancome",
        "CC cream",
        "Light",
        "CC cream",
        "Petal",
        "Air",
        "Bright",
        "Clean",
        "Skin",
        "Lancome",
    ]
    assert event.result.keyword[5] == VideoTag(tag="CC cream", times_ms=[3260, 8410])
    assert event.result.person == [
        VideoTag(
            tag="Sam",
            times_ms=[10760],
            face_url="http://test.com/aivideotag/11111B65-1955-4B84-823D-7921A742****/Index_00016.jpg",
        )
    ]
    assert event.result.location == [VideoTag(tag="Asia", times_ms=[8410])]
    assert (event.result.time, event.result.category, event.result.asr) == ([], [], [])


def test_seed_001_media_dna() -> None:
    event = sample("AIMediaDNAComplete.json")
    assert isinstance(event, AIMediaDNAComplete)
    assert event.event_time == datetime(2017, 3, 20, 7, 49, 17, 25000, tzinfo=UTC)
    assert event.event_time_raw == "2017-03-20T07:49:17:025Z"
    assert event.complete_time == datetime(2017, 3, 20, 7, 49, 35, tzinfo=UTC)
    assert event.job_id == "88c6ca184c0edj384a5b665e2a12****"
    assert event.media_id == "3D12340d92cjsw83k1fab46a0b847fd****"
    assert (event.status, event.error_code, event.error_message) == ("success", None, None)
    assert event.extra == {}
    assert event.result == MediaDnaResult(
        matches=[
            DnaMatch(
                primary_key="7a1d275cc8da4jw93mkde0e182e80****",
                similarity=0.99,
                segments=[
                    DnaSegment(
                        input_start_s=0.0,
                        input_duration_s=14.0,
                        duplicate_start_s=0.5,
                        duplicate_duration_s=14.4,
                    )
                ],
            )
        ]
    )


def test_seed_003_media_audit() -> None:
    event = sample("AIMediaAuditComplete.json")
    assert isinstance(event, AIMediaAuditComplete)
    assert event.event_time == datetime(2022, 10, 20, 10, 29, 46, 540000, tzinfo=UTC)
    assert event.event_time_raw == "2022-10-20T10:29:46:540Z"
    assert event.job_id == "43q91jdh7df****"
    assert event.media_id == "SHEN38505NDF9****"
    assert (event.status, event.error_code, event.error_message) == ("success", None, None)
    assert isinstance(event.data, dict)  # Data came as an object, not a JSON string
    cover_url = "http://example.aliyundoc.com/43q91jdh7df****.jpg"
    terror_url = "http://example-bucket-****.oss-cn-shanghai.aliyuncs.com/aivideocensor/1****.jpg"
    porn_url = "http://example.aliyundoc.com/aivideocensor/****.jpg"
    assert event.result == MediaAuditResult(
        suggestion="review",
        labels=["porn"],
        abnormal_modules=["video"],
        video=AuditVideo(
            suggestion="review",
            label="porn",
            scenes={
                "terrorism": AuditScene(
                    suggestion="pass",
                    label="normal",
                    max_score=100.0,
                    average_score=100.0,
                    counters={
                        "terrorism": 0,
                        "outfit": 0,
                        "logo": 0,
                        "weapon": 0,
                        "politics": 0,
                        "others": 0,
                        "normal": 16,
                    },
                    top=[
                        AuditFrame(label="normal", score=100.0, timestamp_ms=3005, url=terror_url),
                        AuditFrame(label="normal", score=100.0, timestamp_ms=15005, url=terror_url),
                    ],
                ),
                "porn": AuditScene(
                    suggestion="review",
                    label="sexy",
                    max_score=92.48,
                    average_score=81.7066666667,
                    counters={"porn": 0, "sexy": 6, "normal": 10},
                    top=[
                        AuditFrame(label="sexy", score=92.48, timestamp_ms=1005, url=porn_url),
                        AuditFrame(label="sexy", score=91.82, timestamp_ms=9005, url=porn_url),
                    ],
                ),
            },
        ),
        covers=[  # sent as " CoverResult", with a leading space
            AuditCover(
                suggestion="pass",
                label="normal",
                url=cover_url,
                results=[
                    AuditVerdict(scene="porn", label="normal", suggestion="pass", score=65.25),
                    AuditVerdict(scene="terrorism", label="normal", suggestion="pass", score=100.0),
                ],
            )
        ],
        titles=[
            AuditTitle(
                suggestion="pass", label="normal", score=99.91, content="1111", scene="antispam"
            )
        ],
        audio=[],
    )


# --- one sample per type, with the values it carries -----------------------------------------

EXPECTED: list[tuple[str, dict[str, Any]]] = [
    (
        "FileUploadComplete.json",
        {
            "media_id": "a2f6c83e10f171ef80b14531859c****",
            "status": "success",
            "size": 33828307,
            "file_url": "https://outin-5d2b****.oss-cn-shanghai.aliyuncs.com/sv/4d8e8f3a-18f6d2a1****/4d8e8f3a-18f6d2a1****.mp4",
            "extend": '{"localId":"clip-20240513-0042","tenant":"acme"}',
        },
    ),
    (
        "ImageUploadComplete.json",
        {
            "media_id": "c61a0f5f10f271ef9a8e6723b4d9****",
            "event_time": datetime(2024, 5, 13, 2, 15, 3, 118000, tzinfo=UTC),
            "size": 208114,
            "file_url": "https://outin-5d2b****.oss-cn-shanghai.aliyuncs.com/image/default/B3C1E2A9F07D4C8E9A1B2C3D4E5F****.png",
            "extra": {"AppId": "app-1000000"},
        },
    ),
    (
        "StreamTranscodeComplete.json",
        {
            "media_id": "a2f6c83e10f171ef80b14531859c****",
            "job_id": "7b0c1e9d2f3a4b5c8d6e7f8091a2****",
            "definition": "HD",
            "format": "m3u8",
            "bitrate": 1043.715,
            "duration": 182.44,
            "fps": 25.0,
            "width": 1280,
            "height": 720,
            "size": 23805121,
            "encrypt": False,
        },
    ),
    (
        "StreamTranscodeComplete.fail.json",
        {
            "status": "fail",
            "error_code": "InvalidParameter.ResolutionTooHigh",
            "error_message": "The target resolution exceeds the source resolution.",
            "definition": "4K",
            "width": None,
            "extend": "batch-17",
        },
    ),
    (
        "TranscodeComplete.json",
        {
            "media_id": "a2f6c83e10f171ef80b14531859c****",
            "job_id": None,
            "extend": "batch-17",
            "stream_infos": [
                StreamInfo(
                    status="success",
                    job_id="7b0c1e9d2f3a4b5c8d6e7f8091a2****",
                    definition="HD",
                    format="m3u8",
                    file_url="https://vod.example.com/a2f6c83e10f171ef80b14531859c****/hd.m3u8",
                    bitrate=1043.715,
                    duration=182.44,
                    fps=25.0,
                    width=1280,
                    height=720,
                    size=23805121,
                    encrypt=False,
                    is_audio=False,
                    start_time=at("2024-05-13T02:12:01"),
                    finish_time=at("2024-05-13T02:19:40"),
                ),
                StreamInfo(
                    status="success",
                    job_id="9d2e3f1a4b5c6d7e0f8a9b1c2d3e****",
                    definition="AUTO",
                    format="mp3",
                    file_url="https://vod.example.com/a2f6c83e10f171ef80b14531859c****/audio.mp3",
                    bitrate=128.0,
                    duration=182.44,
                    size=2919040,
                    encrypt=False,
                    is_audio=True,
                    start_time=at("2024-05-13T02:12:01"),
                    finish_time=at("2024-05-13T02:13:10"),
                ),
                StreamInfo(
                    status="fail",
                    job_id="8c1d2e0f3a4b5c6d9e7f8a9b0c1d****",
                    error_code="InvalidParameter.ResolutionTooHigh",
                    error_message="The target resolution exceeds the source resolution.",
                    definition="4K",
                    format="mp4",
                ),
            ],
        },
    ),
    (
        "SnapshotComplete.json",
        {
            "media_id": "a2f6c83e10f171ef80b14531859c****",
            "sub_type": "SpecifiedTime",
            "cover_url": "https://vod.example.com/a2f6c83e10f171ef80b14531859c****/snapshots/normal/cover-00001.jpg",
            "snapshot_infos": [
                SnapshotInfo(
                    status="success",
                    job_id="2a3b4c5d6e7f8091a2b3c4d5e6f7****",
                    snapshot_type="NormalSnapshot",
                    snapshot_count=10,
                    snapshot_format="jpg",
                    snapshot_regular="https://vod.example.com/a2f6c83e10f171ef80b14531859c****/snapshots/normal/{SnapshotCount}.jpg",
                )
            ],
        },
    ),
    (
        "SnapshotComplete.no-id.json",  # as documented: neither VideoId nor Status
        {"media_id": None, "status": None, "status_raw": None, "sub_type": "SpriteSnapshot"},
    ),
    (
        "DynamicImageComplete.json",
        {
            "job_id": "4c5d6e7f8091a2b3c4d5e6f7a8b9****",
            "dynamic_image_job_info": {
                "JobId": "4c5d6e7f8091a2b3c4d5e6f7a8b9****",
                "VideoId": "a2f6c83e10f171ef80b14531859c****",
                "Status": "success",
                "DynamicImage": {
                    "Format": "gif",
                    "Fps": "10",
                    "Width": "320",
                    "Height": "180",
                    "Duration": "5.0",
                    "FileSize": "481202",
                    "FileURL": "https://vod.example.com/a2f6c83e10f171ef80b14531859c****/dynamic/preview.gif",
                },
            },
        },
    ),
    (
        "AddLiveRecordVideoComplete.json",
        {
            "media_id": "f1e2d3c410f371efb3a46623a0c1****",
            "stream_name": "evening-show",
            "domain_name": "live.example.com",
            "app_name": "studio",
            "record_start_time": at("2024-05-12T19:00:00"),
            "record_end_time": at("2024-05-12T20:58:31"),
        },
    ),
    (
        "LiveRecordVideoComposeStart.json",
        {"stream_name": "evening-show", "domain_name": "live.example.com", "app_name": "studio"},
    ),
    (
        "UploadByURLComplete.json",
        {
            "media_id": "0b1c2d3e10f471ef8c5d6723b4e5****",
            "job_id": "5d6e7f8091a2b3c4d5e6f7a8b9c0****",
            "source_url": "https://media.example.org/raw/interview-2024-05-10.mp4",
            "size": 98244016,
            "file_type": None,
        },
    ),
    (
        "UploadByURLComplete.stream.json",  # padded keys "SourceURL " and "Size ", Size a string
        {
            "source_url": "https://media.example.org/transcoded/interview-2024-05-10-720p.mp4",
            "size": 41022875,
            "file_type": "Stream",
            "stream_file_url": "https://vod.example.com/0b1c2d3e10f471ef8c5d6723b4e5****/720p.mp4",
            "extra": {},
        },
    ),
    (
        "UploadByURLComplete.fail.json",  # a failure has no VideoId: the JobId identifies it
        {
            "media_id": None,
            "job_id": "7f8091a2b3c4d5e6f7a8b9c0d1e2****",
            "status": "fail",
            "error_code": "DownloadFailed",
            "error_message": "The source file could not be downloaded: HTTP 404.",
        },
    ),
    (
        "CreateAuditComplete.json",
        {
            "media_id": "a2f6c83e10f171ef80b14531859c****",
            "sub_type": "Video",
            "audit_status": "Blocked",
            "creation_time": at("2024-05-13T04:40:11"),
            "auditor": "reviewer-07",
            "reason": "Contains a third-party logo.",
        },
    ),
    (
        "VideoAnalysisComplete.json",  # every number sent as a string
        {
            "width": 1920,
            "height": 1080,
            "duration": 182.44,
            "bitrate": 1483.2,
            "fps": 29.97,
            "size": 33828307,
        },
    ),
    (
        "AttachedMediaUploadComplete.json",
        {
            "media_id": "d4e5f6a710f571ef9b0c6723b4f6****",
            "size": 18422,
            "file_url": "https://outin-5d2b****.oss-cn-shanghai.aliyuncs.com/attached/watermark/logo-white.png",
        },
    ),
    (
        "ProduceMediaComplete.json",
        {
            "media_id": "e5f6a7b810f671efa1c26723b4a7****",
            "project_id": "fb3c9e0a7d1e4b2a8c6f5e4d3c2b****",
        },
    ),
    (
        "DeleteMediaComplete.json",
        {
            "media_id": "0b1c2d3e10f471ef8c5d6723b4e5****",
            "media_type": "video",
            "delete_type": "stream",
            "job_ids": ["9e0f1a2b3c4d5e6f7a8b9c0d1e2f****", "a0b1c2d3e4f5a6b7c8d9e0f1a2b3****"],
        },
    ),
    (
        "MediaBaseChangeComplete.json",  # MediaContent an object of JSON strings
        {
            "media_type": "video",
            "operate_mode": "update",
            "media_content": {
                "Title": MediaFieldChange(
                    old_value="interview raw", new_value="Interview with the director"
                ),
                "CoverURL": MediaFieldChange(
                    new_value="https://vod.example.com/a2f6c83e10f171ef80b14531859c****/snapshots/normal/cover-00004.jpg"
                ),
                "CateId": MediaFieldChange(old_value=1000281, new_value=1000301),
            },
        },
    ),
    (
        "MediaBaseChangeComplete.string.json",  # MediaContent a JSON string; a masked value
        {
            "operate_mode": "create",
            "media_content": {
                "Title": MediaFieldChange(new_value="interview raw"),
                "Tags": MediaFieldChange(new_value="interview,2024"),
                "CateId": '{"NewValue":100028****}',  # not JSON: kept as sent
            },
        },
    ),
    (
        "UpdateMediaStorageClassComplete.json",  # Status "Success"
        {
            "status": "success",
            "status_raw": "Success",
            "scope": "All",
            "storage_class": "Archive",
            "trigger_by": "API",
        },
    ),
    (
        "RestoreMediaComplete.json",
        {
            "status": "success",
            "status_raw": "Success",
            "restore_expiration": at("2024-05-22T09:44:30"),
        },
    ),
    (
        "RestoreMediaComplete.fail.json",  # Status "Failed"
        {
            "status": "fail",
            "status_raw": "Failed",
            "error_code": "Forbidden.RestoreMedia",
            "error_message": "The media is not in an archived storage class.",
            "restore_expiration": None,
        },
    ),
    (
        "SubmitMediaRefreshComplete.json",
        {
            "media_id": "a2f6c83e10f171ef80b14531859c****",
            "job_id": "b1c2d3e4f5a6b7c8d9e0f1a2b3c4****",
            "task_type": "refresh",
            "success_play_urls": [
                "https://vod.example.com/a2f6c83e10f171ef80b14531859c****/hd.m3u8",
                "https://vod.example.com/a2f6c83e10f171ef80b14531859c****/audio.mp3",
            ],
            "task_ids": ["17288349****", "17288350****"],
            "filter_policy": {"Stream": {"Definition": "HD,AUTO", "Format": "m3u8,mp3"}},
            "extend": "cdn-refresh-after-edit",
        },
    ),
    (
        "WorkflowTaskComplete.json",  # Status "Succeed"; two JSON-string fields
        {
            "status": "success",
            "status_raw": "Succeed",
            "media_id": "a2f6c83e10f171ef80b14531859c****",
            "job_id": "e2f3a4b5c6d7e8f9a0b1c2d3e4f5****",
            "workflow_id": "d1e2f3a4b5c6d7e8f9a0b1c2d3e4****",
            "user_id": "171879432012",
            "task_input": {"Type": "Media", "Media": "a2f6c83e10f171ef80b14531859c****"},
            "create_time": at("2024-05-13T10:02:10"),
            "modified_time": at("2024-05-13T10:20:31"),
            "finish_time": at("2024-05-13T10:20:31"),
        },
    ),
    (
        "AIVideoTagComplete.fail.json",
        {
            "status": "fail",
            "error_code": "InvalidMedia.NoVideoStream",
            "error_message": "The media has no video stream.",
            "result": None,
            "data": None,
        },
    ),
    (
        "AIMediaDNAComplete.no-match.json",  # an original video: no duplicates found
        {
            "result": MediaDnaResult(matches=[]),
            "event_time": datetime(2024, 5, 13, 11, 30, 7, 402000, tzinfo=UTC),
            "complete_time": at("2024-05-13T11:30:06"),
        },
    ),
]


@pytest.mark.parametrize(("name", "expected"), EXPECTED, ids=[name for name, _ in EXPECTED])
def test_sample_decodes_to_its_values(name: str, expected: dict[str, Any]) -> None:
    event = sample(name)
    actual = {field: getattr(event, field) for field in expected}
    assert actual == expected


def test_every_type_is_covered_by_the_value_checks() -> None:
    checked = {name.split(".")[0] for name, _ in EXPECTED}
    checked |= {"AIVideoTagComplete", "AIMediaDNAComplete", "AIMediaAuditComplete"}  # seeds
    assert checked == set(EVENT_TYPES)


def test_workflow_activity_results_are_decoded() -> None:
    event = sample("WorkflowTaskComplete.json")
    assert isinstance(event, WorkflowTaskComplete)
    assert sorted(event.activity_results) == ["Snapshot", "Transcode"]
    assert event.activity_results["Transcode"]["Status"] == "Succeed"
    assert event.activity_results["Snapshot"]["EndTime"] == "2024-05-13T10:20:30Z"


def test_video_tag_with_transcript_and_object_data() -> None:
    event = sample("AIVideoTagComplete.asr.json")
    assert isinstance(event, AIVideoTagComplete)
    assert event.event_time == datetime(2024, 5, 13, 11, 4, 52, 316000, tzinfo=UTC)
    assert event.result == VideoTagResult(
        person=[
            VideoTag(
                tag="Li Wei",
                times_ms=[1200, 64000],
                face_url="https://vod.example.com/aivideotag/0f1e2d3c****/Index_00003.jpg",
            )
        ],
        keyword=[VideoTag(tag="director", times_ms=[5400, 72100])],
        time=[VideoTag(tag="evening", times_ms=[0])],
        category=[VideoTag(tag="Interview"), VideoTag(tag="Film")],
        asr=[
            AsrSentence(
                text="Thanks for joining us tonight.",
                start_ms=1200,
                end_ms=4350,
                channel_id=0,
                speech_rate=214,
            ),
            AsrSentence(
                text="It is a pleasure to be here.",
                start_ms=5400,
                end_ms=9120,
                channel_id=0,
                speech_rate=188,
            ),
        ],
    )
    assert event.result.asr_text == "Thanks for joining us tonight.\nIt is a pleasure to be here."


def test_audit_with_image_and_text_results_in_a_json_string() -> None:
    event = sample("AIMediaAuditComplete.imageresult.json")
    assert isinstance(event, AIMediaAuditComplete)
    result = event.result
    assert result is not None
    assert (result.suggestion, result.labels) == ("block", ["ad", "logo"])
    assert result.abnormal_modules == ["video", "cover"]
    assert result.video is not None
    assert sorted(result.video.scenes) == ["ad", "live", "logo"]
    assert result.video.scenes["ad"].counters == {"ad": 4, "normal": 12}  # counts as strings
    assert result.video.scenes["ad"].top == [
        AuditFrame(
            label="ad",
            score=99.8,
            timestamp_ms=41005,
            url="https://vod.example.com/aivideocensor/3c4d****-41005.jpg",
        )
    ]
    assert result.video.scenes["live"].top == []
    assert result.covers == [
        AuditCover(
            suggestion="block",
            label="ad",
            url="https://vod.example.com/a2f6c83e10f171ef80b14531859c****/cover.jpg",
            results=[
                AuditVerdict(scene="ad", label="ad", suggestion="block", score=97.3),
                AuditVerdict(scene="porn", label="normal", suggestion="pass", score=99.9),
            ],
        )
    ]
    assert result.titles == [
        AuditTitle(
            suggestion="pass",
            label="normal",
            score=99.5,
            content="Interview with the director",
            scene="antispam",
        )
    ]
    assert result.audio == [
        AuditVerdict(scene="antispam", label="normal", suggestion="pass", score=99.0)
    ]


def test_sample_types_are_not_generic() -> None:
    assert not any(isinstance(sample(f"{name}.json"), GenericEvent) for name in EVENT_TYPES)
