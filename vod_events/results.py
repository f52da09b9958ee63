"""Typed results of the three VOD AI jobs: smart tagging, media fingerprinting (DNA) and
automated review (audit).

The same shapes arrive in two places: the ``Data`` field of the ``AIVideoTagComplete``,
``AIMediaDNAComplete`` and ``AIMediaAuditComplete`` events, and the query APIs (``ListAIJob``
``Data``, ``GetAIVideoTagResult`` ``VideoTagResult``, ``GetMediaDNAResult`` ``DNAResult``,
``GetAIMediaAuditJob`` ``Data``). Each result class has ``from_data``, which takes that value
as sent - a JSON string or an already-parsed object with VOD's PascalCase keys - and returns
the typed result.

What is strict and what is lenient:

- Structure is strict. ``Data`` must be a JSON object, each documented list must be a list
  of objects, each documented object an object. Anything else raises ``ResultFormatError``:
  a result read from the wrong structure would be wrong silently (an unreadable DNA result is
  not "no duplicates found").
- Leaf values are lenient. Numbers sent as strings become numbers; a value that cannot be read
  becomes ``None`` (or is left out of a list of numbers) - the caller still has the raw data.
- Keys with stray whitespace (``" CoverResult"``) are read as if trimmed. A missing or
  ``null`` part reads as empty.
- Unknown top-level keys are kept, as sent, in ``extra``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar, cast

from vod_events._coerce import load_json, to_float, to_int, to_str, to_str_list, trim_keys
from vod_events._construct import constructor

__all__ = [
    "AsrSentence",
    "AuditCover",
    "AuditFrame",
    "AuditScene",
    "AuditTitle",
    "AuditVerdict",
    "AuditVideo",
    "DnaMatch",
    "DnaSegment",
    "MediaAuditResult",
    "MediaDnaResult",
    "ResultFormatError",
    "VideoTag",
    "VideoTagResult",
]


class ResultFormatError(ValueError):
    """An AI result that is not valid JSON or does not have the documented structure."""


# --- reading helpers -------------------------------------------------------------------------
#
# Speed matters here: one AI event holds dozens of items. So the readers build each object with
# a ``constructor()`` (``_NEW_<CLASS>``, made below each class; the frozen ``__init__`` costs
# 2-4 times as much), and take a string value as it is (``v if type(v) is str else to_str(v)``)
# rather than calling ``to_str`` for every field.

_T = TypeVar("_T")


def _object(value: Any, where: str, known: frozenset[str]) -> dict[str, Any]:
    """``value`` as an object, keys trimmed. ``known`` are the keys its reader looks up: when
    the object has no others (the usual case) no key can need trimming, so none is checked."""
    if not isinstance(value, dict):
        raise ResultFormatError(f"{where} is {_json_type(value)}, not an object")
    return value if known.issuperset(value) else trim_keys(value)


def _optional_object(value: Any, where: str, known: frozenset[str]) -> dict[str, Any]:
    """Like ``_object``, but a missing (``None``) object reads as empty."""
    return {} if value is None else _object(value, where, known)


def _objects(
    value: Any, where: str, known: frozenset[str], build: Callable[[dict[str, Any]], _T]
) -> list[_T]:
    """Build one item per object of the list ``value`` (``None`` reads as an empty list)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ResultFormatError(f"{where} is {_json_type(value)}, not a list")
    # A loop, not a list comprehension: one would need closure cells for where/known/build,
    # which costs more than the loop itself for the short lists VOD sends.
    built: list[_T] = []
    for item in value:
        if type(item) is not dict or not known.issuperset(item):
            item = _item(item, where, known)  # noqa: PLW2901 - the same item, checked
        built.append(build(item))
    return built


def _item(value: Any, where: str, known: frozenset[str]) -> dict[str, Any]:
    """The slow path of ``_objects``: an item that is not an object, or has unknown keys."""
    if not isinstance(value, dict):
        raise ResultFormatError(f"{where} holds {_json_type(value)}, not an object")
    return _object(value, where, known)


def _keys(names: str) -> frozenset[str]:
    return frozenset(names.split())


_NO_KEYS: frozenset[str] = frozenset()  # for objects whose keys are open-ended: always trimmed


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def _root(
    data: Mapping[str, Any] | str | bytes, what: str, known: frozenset[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The top-level object of a result given as JSON text or as a parsed object, and its
    unknown keys (``extra``)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ResultFormatError(f"{what} is not UTF-8 text") from None
    if isinstance(data, str):
        try:
            data = load_json(data)
        except ValueError as exc:
            raise ResultFormatError(f"{what} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) and isinstance(data, Mapping):
        data = dict(data)
    obj = _object(data, what, known)
    if known.issuperset(obj):
        return obj, {}
    return obj, {key: value for key, value in obj.items() if key not in known}


def _ints(value: Any) -> list[int]:
    """Millisecond offsets sent as ["3260", "4000"] (or numbers, or "3260,4000")."""
    if isinstance(value, list):
        try:
            return list(map(int, value))  # the common case: all clean
        except (TypeError, ValueError):
            converted = (to_int(item) for item in value)
            return [item for item in converted if item is not None]
    if isinstance(value, str):
        converted = (to_int(part) for part in value.split(","))
        return [item for item in converted if item is not None]
    return []


# --- AIVideoTag ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoTag:
    """One tag and the moments (milliseconds from the start) it was seen at."""

    tag: str
    times_ms: list[int] = field(default_factory=list)
    face_url: str | None = None  # Person tags only: the matched face


_NEW_VIDEO_TAG = constructor(VideoTag)


@dataclass(frozen=True, slots=True, kw_only=True)
class AsrSentence:
    """One recognised utterance of the speech track (OrigASRData.AsrTextList)."""

    text: str
    start_ms: int | None = None
    end_ms: int | None = None
    channel_id: int | None = None
    speech_rate: int | None = None


_NEW_ASR_SENTENCE = constructor(AsrSentence)


_TAG_ITEM_KEYS = _keys("Tag Times FaceUrl")
_ASR_KEYS = _keys("Text StartTime EndTime ChannelId SpeechRate")
_ASR_BLOCK_KEYS = _keys("Duration AsrTextList")


def _video_tag(item: dict[str, Any]) -> VideoTag:
    tag, times, face_url = item.get("Tag"), item.get("Times"), item.get("FaceUrl")
    if type(times) is list:  # _ints() inlined for its usual case: the bulk of a tagging result
        try:
            times_ms = [*map(int, times)]
        except (TypeError, ValueError):
            times_ms = _ints(times)
    else:
        times_ms = _ints(times)
    return _NEW_VIDEO_TAG(
        tag=tag if type(tag) is str else to_str(tag) or "",
        times_ms=times_ms,
        face_url=face_url if type(face_url) is str else to_str(face_url),
    )


def _asr_sentence(item: dict[str, Any]) -> AsrSentence:
    return _NEW_ASR_SENTENCE(
        text=to_str(item.get("Text")) or "",
        start_ms=to_int(item.get("StartTime")),
        end_ms=to_int(item.get("EndTime")),
        channel_id=to_int(item.get("ChannelId")),
        speech_rate=to_int(item.get("SpeechRate")),
    )


def _asr_block(block: dict[str, Any]) -> list[AsrSentence]:
    if "AsrTextList" not in block:  # a bare sentence in a list
        return [_asr_sentence(block)]
    return _objects(block["AsrTextList"], "OrigASRData.AsrTextList", _ASR_KEYS, _asr_sentence)


def _asr(value: Any) -> list[AsrSentence]:
    """OrigASRData comes as one object ``{Duration, AsrTextList}``, as a list of such objects,
    or as a list of bare sentences."""
    if value is None:
        return []
    if isinstance(value, dict):
        return _asr_block(_object(value, "OrigASRData", _ASR_BLOCK_KEYS))
    blocks = _objects(value, "OrigASRData", _ASR_BLOCK_KEYS | _ASR_KEYS, _asr_block)
    return [sentence for block in blocks for sentence in block]


_TAG_KEYS = _keys("Person Keyword Location Time Category OrigASRData")


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoTagResult:
    """Smart tagging result: tags by category, and the speech transcript when requested."""

    person: list[VideoTag] = field(default_factory=list)
    keyword: list[VideoTag] = field(default_factory=list)
    location: list[VideoTag] = field(default_factory=list)
    time: list[VideoTag] = field(default_factory=list)
    category: list[VideoTag] = field(default_factory=list)
    asr: list[AsrSentence] = field(default_factory=list)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def asr_text(self) -> str | None:
        """The transcript as one text (sentences joined by newlines), or ``None``."""
        return "\n".join(sentence.text for sentence in self.asr) if self.asr else None

    @classmethod
    def from_data(cls, data: Mapping[str, Any] | str | bytes) -> Self:
        """Read a tagging result (event ``Data`` or the query API's ``VideoTagResult``)."""
        obj, extra = _root(data, "AIVideoTag Data", _TAG_KEYS)
        # A subclass is built by its own __init__, the class itself by its faster constructor.
        build = cast("type[Self]", _NEW_VIDEO_TAG_RESULT) if cls is VideoTagResult else cls
        return build(
            person=_objects(obj.get("Person"), "Person", _TAG_ITEM_KEYS, _video_tag),
            keyword=_objects(obj.get("Keyword"), "Keyword", _TAG_ITEM_KEYS, _video_tag),
            location=_objects(obj.get("Location"), "Location", _TAG_ITEM_KEYS, _video_tag),
            time=_objects(obj.get("Time"), "Time", _TAG_ITEM_KEYS, _video_tag),
            category=_objects(obj.get("Category"), "Category", _TAG_ITEM_KEYS, _video_tag),
            asr=_asr(obj.get("OrigASRData")),
            extra=extra,
        )


_NEW_VIDEO_TAG_RESULT = constructor(VideoTagResult)


# --- AIMediaDNA ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DnaSegment:
    """A stretch of the input video and the stretch of the older video it duplicates
    (seconds)."""

    input_start_s: float | None = None
    input_duration_s: float | None = None
    duplicate_start_s: float | None = None
    duplicate_duration_s: float | None = None


_NEW_DNA_SEGMENT = constructor(DnaSegment)


@dataclass(frozen=True, slots=True, kw_only=True)
class DnaMatch:
    """An older video in the fingerprint library that the input duplicates."""

    primary_key: str | None = None  # the id of the matching (older) video
    similarity: float | None = None  # 0..1
    segments: list[DnaSegment] = field(default_factory=list)


_NEW_DNA_MATCH = constructor(DnaMatch)


_DNA_KEYS = _keys("VideoDNA")
_DNA_MATCH_KEYS = _keys("PrimaryKey Similarity Detail")
_DNA_DETAIL_KEYS = _keys("Input Duplication")
_DNA_SPAN_KEYS = _keys("Start Duration")


def _dna_segment(item: dict[str, Any]) -> DnaSegment:
    source = _optional_object(item.get("Input"), "Detail.Input", _DNA_SPAN_KEYS)
    copy = _optional_object(item.get("Duplication"), "Detail.Duplication", _DNA_SPAN_KEYS)
    return _NEW_DNA_SEGMENT(
        input_start_s=to_float(source.get("Start")),
        input_duration_s=to_float(source.get("Duration")),
        duplicate_start_s=to_float(copy.get("Start")),
        duplicate_duration_s=to_float(copy.get("Duration")),
    )


def _dna_match(item: dict[str, Any]) -> DnaMatch:
    primary_key = item.get("PrimaryKey")
    return _NEW_DNA_MATCH(
        primary_key=primary_key if type(primary_key) is str else to_str(primary_key),
        similarity=to_float(item.get("Similarity")),
        segments=_objects(item.get("Detail"), "VideoDNA.Detail", _DNA_DETAIL_KEYS, _dna_segment),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaDnaResult:
    """Fingerprinting result: the library videos the input duplicates (empty: original)."""

    matches: list[DnaMatch] = field(default_factory=list)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: Mapping[str, Any] | str | bytes) -> Self:
        """Read a fingerprinting result (event ``Data`` or the query API's ``DNAResult``)."""
        obj, extra = _root(data, "AIMediaDNA Data", _DNA_KEYS)
        # A subclass is built by its own __init__, the class itself by its faster constructor.
        build = cast("type[Self]", _NEW_MEDIA_DNA_RESULT) if cls is MediaDnaResult else cls
        return build(
            matches=_objects(obj.get("VideoDNA"), "VideoDNA", _DNA_MATCH_KEYS, _dna_match),
            extra=extra,
        )


_NEW_MEDIA_DNA_RESULT = constructor(MediaDnaResult)


# --- AIMediaAudit ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditFrame:
    """One of the highest-scoring frames of a review scene (TopList)."""

    label: str | None = None
    score: float | None = None
    timestamp_ms: int | None = None
    url: str | None = None  # expires two weeks after the review


_NEW_AUDIT_FRAME = constructor(AuditFrame)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditScene:
    """The video review of one scene (porn, terrorism, ad, live, logo, ...)."""

    suggestion: str | None = None  # pass / review / block
    label: str | None = None
    max_score: float | None = None
    average_score: float | None = None
    counters: dict[str, int | None] = field(default_factory=dict)  # label -> frames
    top: list[AuditFrame] = field(default_factory=list)


_NEW_AUDIT_SCENE = constructor(AuditScene)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditVideo:
    """The review of the video frames: overall verdict and one entry per scene."""

    suggestion: str | None = None
    label: str | None = None
    scenes: dict[str, AuditScene] = field(default_factory=dict)  # "porn", "terrorism", ...


_NEW_AUDIT_VIDEO = constructor(AuditVideo)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditVerdict:
    """One scene's verdict on a cover image or on the audio track."""

    scene: str | None = None
    label: str | None = None
    suggestion: str | None = None
    score: float | None = None


_NEW_AUDIT_VERDICT = constructor(AuditVerdict)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditCover:
    """The review of one cover image."""

    suggestion: str | None = None
    label: str | None = None
    url: str | None = None
    results: list[AuditVerdict] = field(default_factory=list)


_NEW_AUDIT_COVER = constructor(AuditCover)


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditTitle:
    """The review of the title (or another text) of the media."""

    suggestion: str | None = None
    label: str | None = None
    score: float | None = None
    content: str | None = None
    scene: str | None = None


_NEW_AUDIT_TITLE = constructor(AuditTitle)


_FRAME_KEYS = _keys("Label Score Timestamp Url")
_COUNTER_KEYS = _keys("Label Count")
_SCENE_KEYS = _keys("Suggestion Label MaxScore AverageScore CounterList TopList")
_VERDICT_KEYS = _keys("Scene Label Suggestion Score Type")
_COVER_ITEM_KEYS = _keys("Suggestion Label Url Result Type")
_TITLE_ITEM_KEYS = _keys("Suggestion Label Score Content Scene Type")


def _audit_frame(item: dict[str, Any]) -> AuditFrame:
    label, url = item.get("Label"), item.get("Url")
    return _NEW_AUDIT_FRAME(
        label=label if type(label) is str else to_str(label),
        score=to_float(item.get("Score")),
        timestamp_ms=to_int(item.get("Timestamp")),
        url=url if type(url) is str else to_str(url),
    )


def _counters(value: Any, scene_key: str) -> dict[str, int | None]:
    """CounterList ``[{Label, Count}]`` as ``{label: count}`` (Count: a string in some APIs)."""
    counters: dict[str, int | None] = {}
    if value is None:
        return counters
    if not isinstance(value, list):
        raise ResultFormatError(f"{scene_key}.CounterList is {_json_type(value)}, not a list")
    for entry in value:
        item = entry
        if type(item) is not dict or not _COUNTER_KEYS.issuperset(item):
            item = _item(entry, f"{scene_key}.CounterList", _COUNTER_KEYS)
        label = item.get("Label")
        if type(label) is not str:
            label = to_str(label)
        if label is not None:
            count = item.get("Count")
            counters[label] = count if type(count) is int else to_int(count)
    return counters


def _audit_scene(item: dict[str, Any], scene_key: str) -> AuditScene:
    suggestion, label = item.get("Suggestion"), item.get("Label")
    return _NEW_AUDIT_SCENE(
        suggestion=suggestion if type(suggestion) is str else to_str(suggestion),
        label=label if type(label) is str else to_str(label),
        max_score=to_float(item.get("MaxScore")),
        average_score=to_float(item.get("AverageScore")),
        counters=_counters(item.get("CounterList"), scene_key),
        top=_objects(
            item.get("TopList"),
            _TOP_LISTS.get(scene_key) or f"{scene_key}.TopList",
            _FRAME_KEYS,
            _audit_frame,
        ),
    )


# The scene keys VOD documents; another "<Name>Result" key is named the same way on the fly.
_SCENE_NAMES = {
    "PornResult": "porn",
    "TerrorismResult": "terrorism",
    "AdResult": "ad",
    "LiveResult": "live",
    "LogoResult": "logo",
    "GreenEnhancedResult": "green_enhanced",
}
_TOP_LISTS = {key: f"{key}.TopList" for key in _SCENE_NAMES}  # labels for errors, made once


def _scene_name(key: str) -> str:
    """'PornResult' -> 'porn', 'GreenEnhancedResult' -> 'green_enhanced'."""
    name = _SCENE_NAMES.get(key)
    if name is None:
        stem = key.removesuffix("Result")
        name = "".join(
            f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(stem)
        )
    return name


def _audit_video(item: dict[str, Any]) -> AuditVideo:
    scenes = {
        _scene_name(key): _audit_scene(_object(value, key, _SCENE_KEYS), key)
        for key, value in item.items()
        if key.endswith("Result") and len(key) > len("Result") and value is not None
    }
    return _NEW_AUDIT_VIDEO(
        suggestion=to_str(item.get("Suggestion")),
        label=to_str(item.get("Label")),
        scenes=scenes,
    )


def _audit_verdict(item: dict[str, Any]) -> AuditVerdict:
    scene, label, suggestion = item.get("Scene"), item.get("Label"), item.get("Suggestion")
    return _NEW_AUDIT_VERDICT(
        scene=scene if type(scene) is str else to_str(scene),
        label=label if type(label) is str else to_str(label),
        suggestion=suggestion if type(suggestion) is str else to_str(suggestion),
        score=to_float(item.get("Score")),
    )


def _audit_cover(item: dict[str, Any]) -> AuditCover:
    suggestion, label, url = item.get("Suggestion"), item.get("Label"), item.get("Url")
    return _NEW_AUDIT_COVER(
        suggestion=suggestion if type(suggestion) is str else to_str(suggestion),
        label=label if type(label) is str else to_str(label),
        url=url if type(url) is str else to_str(url),
        results=_objects(item.get("Result"), "CoverResult.Result", _VERDICT_KEYS, _audit_verdict),
    )


def _audit_title(item: dict[str, Any]) -> AuditTitle:
    suggestion, label, content = item.get("Suggestion"), item.get("Label"), item.get("Content")
    scene = item.get("Scene")
    return _NEW_AUDIT_TITLE(
        suggestion=suggestion if type(suggestion) is str else to_str(suggestion),
        label=label if type(label) is str else to_str(label),
        score=to_float(item.get("Score")),
        content=content if type(content) is str else to_str(content),
        scene=scene if type(scene) is str else to_str(scene),
    )


# Covers and titles each have two spellings, depending on the document and the API version.
_COVER_KEYS = ("CoverResult", "ImageResult")
_TITLE_KEYS = ("TitleResult", "TextResult")
_AUDIT_KEYS = _keys("Suggestion Label AbnormalModules VideoResult AudioResult") | {
    *_COVER_KEYS,
    *_TITLE_KEYS,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaAuditResult:
    """Automated review result: the overall verdict, then video, covers, titles and audio."""

    suggestion: str | None = None  # pass / review / block
    labels: list[str] = field(default_factory=list)  # Label, split at commas
    abnormal_modules: list[str] = field(default_factory=list)  # e.g. ["video", "cover"]
    video: AuditVideo | None = None
    covers: list[AuditCover] = field(default_factory=list)
    titles: list[AuditTitle] = field(default_factory=list)
    audio: list[AuditVerdict] = field(default_factory=list)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_data(cls, data: Mapping[str, Any] | str | bytes) -> Self:
        """Read a review result (event ``Data`` or ``GetAIMediaAuditJob``'s ``Data``)."""
        obj, extra = _root(data, "AIMediaAudit Data", _AUDIT_KEYS)
        video = obj.get("VideoResult")
        covers: list[AuditCover] = []
        for key in _COVER_KEYS:
            covers += _objects(obj.get(key), key, _COVER_ITEM_KEYS, _audit_cover)
        titles: list[AuditTitle] = []
        for key in _TITLE_KEYS:
            titles += _objects(obj.get(key), key, _TITLE_ITEM_KEYS, _audit_title)
        # A subclass is built by its own __init__, the class itself by its faster constructor.
        build = cast("type[Self]", _NEW_MEDIA_AUDIT_RESULT) if cls is MediaAuditResult else cls
        return build(
            suggestion=to_str(obj.get("Suggestion")),
            labels=to_str_list(obj.get("Label")),
            abnormal_modules=to_str_list(obj.get("AbnormalModules")),
            video=None if video is None else _audit_video(_object(video, "VideoResult", _NO_KEYS)),
            covers=covers,
            titles=titles,
            audio=_objects(obj.get("AudioResult"), "AudioResult", _VERDICT_KEYS, _audit_verdict),
            extra=extra,
        )


_NEW_MEDIA_AUDIT_RESULT = constructor(MediaAuditResult)
