"""The AI result types on their own: every input form, the query APIs' variants of the shapes,
and the strict-structure / lenient-values rule."""

from __future__ import annotations

import json
from types import MappingProxyType
from typing import Any

import pytest

from vod_events.results import (
    AsrSentence,
    AuditCover,
    AuditScene,
    AuditTitle,
    AuditVerdict,
    DnaMatch,
    DnaSegment,
    MediaAuditResult,
    MediaDnaResult,
    ResultFormatError,
    VideoTag,
    VideoTagResult,
)

DNA_DATA = {
    "VideoDNA": [
        {
            "Similarity": "0.87",
            "PrimaryKey": "older-video",
            "Detail": [
                {
                    "Input": {"Start": "1.5", "Duration": "3"},
                    "Duplication": {"Start": 0, "Duration": 3.0},
                },
                {"Input": {"Start": "10.0", "Duration": "2.5"}},
            ],
        }
    ]
}


@pytest.mark.parametrize(
    "data",
    [
        DNA_DATA,
        json.dumps(DNA_DATA),
        json.dumps(DNA_DATA).encode("utf-8"),
        MappingProxyType(DNA_DATA),
    ],
    ids=["object", "json text", "json bytes", "read-only mapping"],
)
def test_dna_result_from_every_input_form(data: Any) -> None:
    assert MediaDnaResult.from_data(data) == MediaDnaResult(
        matches=[
            DnaMatch(
                primary_key="older-video",
                similarity=0.87,
                segments=[
                    DnaSegment(
                        input_start_s=1.5,
                        input_duration_s=3.0,
                        duplicate_start_s=0.0,
                        duplicate_duration_s=3.0,
                    ),
                    DnaSegment(input_start_s=10.0, input_duration_s=2.5),
                ],
            )
        ]
    )


def test_get_ai_media_audit_job_data_shape() -> None:
    """GetAIMediaAuditJob's Data: ImageResult/TextResult, Count as a string, more scenes."""
    data = {
        "Suggestion": "block",
        "Label": "porn,ad",
        "AbnormalModules": "video,cover,title",
        "VideoResult": {
            "Suggestion": "block",
            "Label": "porn",
            "PornResult": {
                "Suggestion": "block",
                "Label": "porn",
                "MaxScore": "99.91",
                "AverageScore": "62.5",
                "CounterList": [{"Label": "porn", "Count": "3"}, {"Label": "normal", "Count": "x"}],
                "TopList": [{"Label": "porn", "Score": "99.91", "Timestamp": "5000", "Url": "u1"}],
            },
            "GreenEnhancedResult": {"Suggestion": "pass", "Label": "normal"},
            "FrameResult": None,
        },
        "ImageResult": [
            {
                "Suggestion": "review",
                "Type": "cover",
                "Label": "ad",
                "Url": "cover-url",
                "Result": [{"Suggestion": "review", "Label": "ad", "Scene": "ad", "Score": "80"}],
            }
        ],
        "TextResult": [
            {
                "Suggestion": "block",
                "Type": "title",
                "Label": "abuse",
                "Scene": "antispam",
                "Score": "90.5",
                "Content": "a rude title",
            }
        ],
        "AudioResult": [
            {"Suggestion": "pass", "Label": "normal", "Scene": "antispam", "Score": "99"}
        ],
    }
    result = MediaAuditResult.from_data(data)
    assert result.suggestion == "block"
    assert result.labels == ["porn", "ad"]
    assert result.abnormal_modules == ["video", "cover", "title"]
    assert result.video is not None
    assert result.video.scenes == {
        "porn": AuditScene(
            suggestion="block",
            label="porn",
            max_score=99.91,
            average_score=62.5,
            counters={"porn": 3, "normal": None},  # an unreadable count is None, not dropped
            top=result.video.scenes["porn"].top,
        ),
        "green_enhanced": AuditScene(suggestion="pass", label="normal"),
    }
    assert result.video.scenes["porn"].top[0].timestamp_ms == 5000
    assert result.covers == [
        AuditCover(
            suggestion="review",
            label="ad",
            url="cover-url",
            results=[AuditVerdict(scene="ad", label="ad", suggestion="review", score=80.0)],
        )
    ]
    assert result.titles == [
        AuditTitle(
            suggestion="block", label="abuse", score=90.5, content="a rude title", scene="antispam"
        )
    ]
    assert result.audio == [
        AuditVerdict(scene="antispam", label="normal", suggestion="pass", score=99.0)
    ]
    assert result.extra == {}


def test_both_cover_spellings_are_read() -> None:
    data = {
        " CoverResult": [{"Url": "a"}],
        "ImageResult": [{"Url": "b"}],
        "TitleResult": [{"Content": "t1"}],
        "TextResult": [{"Content": "t2"}],
    }
    result = MediaAuditResult.from_data(data)
    assert [cover.url for cover in result.covers] == ["a", "b"]
    assert [title.content for title in result.titles] == ["t1", "t2"]


def test_video_tag_result_of_the_query_api() -> None:
    """GetAIVideoTagResult's VideoTagResult has the event's shape, including Time and Category."""
    data = {
        "Time": [{"Tag": "night", "Times": ["0", "4000"]}],
        "Category": [{"Tag": "Sports"}],
        "Person": [{"Tag": "A", "Times": ["1"], "FaceUrl": "face"}],
    }
    assert VideoTagResult.from_data(data) == VideoTagResult(
        time=[VideoTag(tag="night", times_ms=[0, 4000])],
        category=[VideoTag(tag="Sports")],
        person=[VideoTag(tag="A", times_ms=[1], face_url="face")],
    )


def test_times_in_other_forms() -> None:
    data = {
        "Keyword": [
            {"Tag": "a", "Times": "100,200, 300"},
            {"Tag": "b", "Times": [100, "200", "soon", None, "300.0"]},
            {"Tag": "c", "Times": None},
        ]
    }
    result = VideoTagResult.from_data(data)
    assert [tag.times_ms for tag in result.keyword] == [[100, 200, 300], [100, 200, 300], []]


@pytest.mark.parametrize(
    "asr",
    [
        {
            "Duration": "9000",
            "AsrTextList": [{"Text": "hello", "StartTime": "0", "EndTime": "900"}],
        },
        [{"Duration": "9000", "AsrTextList": [{"Text": "hello", "StartTime": 0, "EndTime": 900}]}],
        [{"Text": "hello", "StartTime": "0", "EndTime": "900"}],
    ],
    ids=["object", "list of objects", "list of sentences"],
)
def test_asr_in_every_documented_form(asr: Any) -> None:
    result = VideoTagResult.from_data({"OrigASRData": asr})
    assert result.asr == [AsrSentence(text="hello", start_ms=0, end_ms=900)]
    assert result.asr_text == "hello"


def test_unknown_top_level_keys_are_kept() -> None:
    result = VideoTagResult.from_data({"OrigOCRData": [{"Text": "EXIT"}], "Keyword": []})
    assert result.extra == {"OrigOCRData": [{"Text": "EXIT"}]}
    assert MediaDnaResult.from_data({"Version": 2}).extra == {"Version": 2}


def test_null_parts_read_as_empty() -> None:
    assert VideoTagResult.from_data({"Person": None, "OrigASRData": None}) == VideoTagResult()
    assert MediaDnaResult.from_data({"VideoDNA": [{"Detail": [{"Input": None}]}]}) == (
        MediaDnaResult(matches=[DnaMatch(segments=[DnaSegment()])])
    )
    assert MediaAuditResult.from_data({"VideoResult": None}).video is None


def test_padded_keys_inside_items() -> None:
    data = {"Keyword": [{" Tag": "padded", "Times ": ["5"]}]}
    assert VideoTagResult.from_data(data).keyword == [VideoTag(tag="padded", times_ms=[5])]


@pytest.mark.parametrize(
    ("parse", "data", "message"),
    [
        (VideoTagResult.from_data, "{", "AIVideoTag Data is not valid JSON"),
        (VideoTagResult.from_data, b"\xff", "AIVideoTag Data is not UTF-8 text"),
        (VideoTagResult.from_data, "null", "AIVideoTag Data is null, not an object"),
        (VideoTagResult.from_data, {"OrigASRData": 5}, "OrigASRData is a number, not a list"),
        (MediaDnaResult.from_data, {"VideoDNA": [{"Detail": [{"Input": "0"}]}]}, "Detail.Input"),
        (MediaDnaResult.from_data, {"VideoDNA": [{"Detail": {}}]}, "VideoDNA.Detail is an"),
        (MediaAuditResult.from_data, {"VideoResult": {"PornResult": "x"}}, "PornResult is a"),
        (MediaAuditResult.from_data, {"VideoResult": {"AdResult": {"TopList": [[]]}}}, "TopList"),
        (MediaAuditResult.from_data, {"AudioResult": {}}, "AudioResult is an object, not a list"),
        (MediaAuditResult.from_data, {"TextResult": [True]}, "TextResult holds a boolean"),
    ],
)
def test_wrong_structure_is_a_result_format_error(parse: Any, data: Any, message: str) -> None:
    with pytest.raises(ResultFormatError) as caught:
        parse(data)
    assert message in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_unreadable_leaf_values_become_none() -> None:
    result = MediaDnaResult.from_data(
        {"VideoDNA": [{"PrimaryKey": 12, "Similarity": "high", "Detail": []}]}
    )
    assert result.matches == [DnaMatch(primary_key="12", similarity=None)]


def test_results_are_frozen() -> None:
    tag = VideoTag(tag="a")
    with pytest.raises(AttributeError):
        tag.tag = "b"  # type: ignore[misc]


def test_reads_the_query_apis_through_the_vod_sdk_models() -> None:
    """What `alibabacloud_vod20170321` hands back: GetAIMediaAuditJob's Data as a model (its
    ``to_map()`` has VOD's keys), ListAIJob's Data as a JSON string."""
    models = pytest.importorskip("alibabacloud_vod20170321.models")
    audit = models.GetAIMediaAuditJobResponseBody().from_map(
        {
            "RequestId": "r-1",
            "MediaAuditJob": {
                "JobId": "j-1",
                "Data": {
                    "Suggestion": "pass",
                    "ImageResult": [{"Url": "cover", "Result": [{"Scene": "ad", "Score": "1.5"}]}],
                    "VideoResult": {"LogoResult": {"CounterList": [{"Label": "TV", "Count": "2"}]}},
                },
            },
        }
    )
    result = MediaAuditResult.from_data(audit.media_audit_job.data.to_map())
    assert result.covers == [AuditCover(url="cover", results=[AuditVerdict(scene="ad", score=1.5)])]
    assert result.video is not None
    assert result.video.scenes["logo"].counters == {"TV": 2}

    listed = models.ListAIJobResponseBody().from_map(
        {"AIJobList": {"AIJob": [{"JobId": "j-2", "Data": json.dumps(DNA_DATA)}]}}
    )
    dna = MediaDnaResult.from_data(listed.aijob_list.aijob[0].data)
    assert [match.primary_key for match in dna.matches] == ["older-video"]
