"""The typed VOD events: one frozen dataclass per ``EventType``, on a common base.

This module only declares. Each event-specific field says where it comes from on the wire
(``wire("FileUrl", "FileURL", kind=Kind.STR)``: the first key present wins) and how to read it;
``vod_events.decoder`` turns those declarations into lookup tables once, at import, and fills the
classes from message bodies.

Common to every event (``VodEvent``):

- ``event_type``; ``event_time`` (UTC, or ``None``) and ``event_time_raw`` (as sent);
- ``status`` ("success" / "fail", normalised from success/fail, Success/Failed, Succeed/Failed;
  ``None`` when absent or unrecognised) and ``status_raw``;
- ``media_id`` (VideoId, MediaId, ImageId or AttachedMediaId, whichever the event carries) and
  ``job_id`` (JobId; MediaRefreshJobId or TaskId where that is the job);
- ``error_code`` / ``error_message`` from ErrorCode/ErrorMessage or Code/Message; a success's
  ``"Code": "0", "Message": "OK"`` is not an error and reads as ``None``;
- ``extend``: the ``UserData.Extend`` pass-through, as the string VOD sent;
- ``data``: the ``Data`` field decoded (JSON string or object alike), for any event carrying one;
- ``raw``: the decoded JSON object exactly as sent, and ``extra``: its fields this class does not
  know, as sent - nothing the sender wrote is lost;
- ``dedupe_key``: equal for redeliveries of one event, whatever their encoding.

An ``EventType`` this module does not know decodes to ``GenericEvent``, which is the base with
nothing added.
"""

# wire() wraps dataclasses.field(): its defaults are Field objects, not shared mutable values.
# ruff: noqa: RUF009

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any, ClassVar

from vod_events.results import MediaAuditResult, MediaDnaResult, VideoTagResult

__all__ = [
    "EVENT_TYPES",
    "AIMediaAuditComplete",
    "AIMediaDNAComplete",
    "AIVideoTagComplete",
    "AddLiveRecordVideoComplete",
    "AttachedMediaUploadComplete",
    "CreateAuditComplete",
    "DeleteMediaComplete",
    "DynamicImageComplete",
    "FileUploadComplete",
    "GenericEvent",
    "ImageUploadComplete",
    "JsonValue",
    "Kind",
    "LiveRecordVideoComposeStart",
    "MediaBaseChangeComplete",
    "MediaFieldChange",
    "ProduceMediaComplete",
    "RestoreMediaComplete",
    "SnapshotComplete",
    "SnapshotInfo",
    "StreamInfo",
    "StreamTranscodeComplete",
    "SubmitMediaRefreshComplete",
    "TranscodeComplete",
    "UpdateMediaStorageClassComplete",
    "UploadByURLComplete",
    "VideoAnalysisComplete",
    "VodEvent",
    "WireField",
    "WorkflowTaskComplete",
    "wire",
]

JsonValue = Any
"""A value as ``json.loads`` returns it: dict, list, str, int, float, bool or None."""


class Kind(enum.Enum):
    """How the decoder reads one wire value into a field."""

    STR = "str"  # a string; numbers become their text
    INT = "int"  # an integer, also from "1024"
    FLOAT = "float"  # a finite float, also from "6.25"
    BOOL = "bool"  # also from "true"/"false"
    TIME = "time"  # a UTC datetime, in any of VOD's time formats
    STATUS = "status"  # "success" / "fail", normalised like the event's own Status
    STR_LIST = "str_list"  # a list of strings, also from "a,b,c"
    JSON = "json"  # a JSON-string field: decoded, or kept as the original string if not JSON
    MEDIA_CONTENT = "media_content"  # MediaBaseChangeComplete's MediaContent
    PARTS = "parts"  # a list of nested objects, each read into ``part`` (a dataclass here)
    RESULT = "result"  # an AI result: ``part.from_data`` (see vod_events.results)


@dataclass(frozen=True, slots=True)
class WireField:
    """Where a field comes from: the wire keys to try, in order, and how to read the value."""

    keys: tuple[str, ...]
    kind: Kind
    part: type | None = None


def wire(*keys: str, kind: Kind = Kind.STR, part: type | None = None) -> Any:
    """Declare a dataclass field read from the first of ``keys`` present in the payload."""
    spec = WireField(keys, kind, part)
    if kind in (Kind.STR_LIST, Kind.PARTS):
        return field(default_factory=list, metadata={"wire": spec})
    return field(default=None, metadata={"wire": spec})


def _known(keys: str) -> tuple[str, ...]:
    return tuple(keys.split())


# The id keys an event may carry. Each class lists its own first; the rest still count as known
# (and so are not repeated in ``extra``) because the decoder takes the first one present.
_ID_KEYS = _known("VideoId MediaId ImageId AttachedMediaId")


@dataclass(frozen=True, slots=True, kw_only=True)
class VodEvent:
    """The fields every VOD event has. See the module docstring for what each one holds."""

    event_type: str
    event_time: datetime | None = None
    event_time_raw: str | None = None
    status: str | None = None
    status_raw: str | None = None
    media_id: str | None = None
    job_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    extend: str | None = None
    data: JsonValue = None
    raw: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)
    dedupe_key: str = ""

    # Which wire keys hold the media id and the job id, most specific first.
    ID_KEYS: ClassVar[tuple[str, ...]] = _ID_KEYS
    JOB_ID_KEYS: ClassVar[tuple[str, ...]] = ("JobId",)
    # Wire keys that tell apart several legitimate events sharing one id, status and second
    # (e.g. one StreamTranscodeComplete per definition); they join the dedupe key.
    DEDUPE_KEYS: ClassVar[tuple[str, ...]] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class GenericEvent(VodEvent):
    """An event of a type this package does not know: the common fields, everything else in
    ``extra`` (and ``Data``, if any, decoded in ``data``)."""


# --- upload ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class FileUploadComplete(VodEvent):
    """A video or audio file finished uploading (no event is sent for a failed upload)."""

    size: int | None = wire("Size", kind=Kind.INT)
    file_url: str | None = wire("FileUrl", "FileURL")


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageUploadComplete(VodEvent):
    """An image finished uploading; ``media_id`` is the ImageId."""

    ID_KEYS: ClassVar[tuple[str, ...]] = ("ImageId", *_ID_KEYS)

    size: int | None = wire("Size", kind=Kind.INT)
    file_url: str | None = wire("FileURL", "FileUrl")


@dataclass(frozen=True, slots=True, kw_only=True)
class AttachedMediaUploadComplete(VodEvent):
    """An auxiliary media file (watermark, subtitle, ...) finished uploading; ``media_id`` is
    the AttachedMediaId."""

    ID_KEYS: ClassVar[tuple[str, ...]] = ("AttachedMediaId", *_ID_KEYS)

    size: int | None = wire("Size", kind=Kind.INT)
    file_url: str | None = wire("FileURL", "FileUrl")


@dataclass(frozen=True, slots=True, kw_only=True)
class UploadByURLComplete(VodEvent):
    """A pull-from-URL upload finished. A failure may carry no VideoId, only the JobId; the
    stream variant adds ``file_type="Stream"`` and ``stream_file_url``."""

    source_url: str | None = wire("SourceURL", "SourceUrl")
    size: int | None = wire("Size", kind=Kind.INT)
    file_type: str | None = wire("FileType")
    stream_file_url: str | None = wire("StreamFileURL", "StreamFileUrl")


# --- transcoding and processing --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamTranscodeComplete(VodEvent):
    """One output stream (one definition and format) finished transcoding."""

    DEDUPE_KEYS: ClassVar[tuple[str, ...]] = ("Definition", "Format")

    definition: str | None = wire("Definition")
    format: str | None = wire("Format")
    file_url: str | None = wire("FileUrl", "FileURL")
    bitrate: float | None = wire("Bitrate", kind=Kind.FLOAT)  # Kbit/s
    duration: float | None = wire("Duration", kind=Kind.FLOAT)  # seconds
    fps: float | None = wire("Fps", kind=Kind.FLOAT)
    width: int | None = wire("Width", kind=Kind.INT)
    height: int | None = wire("Height", kind=Kind.INT)
    size: int | None = wire("Size", kind=Kind.INT)  # bytes
    encrypt: bool | None = wire("Encrypt", kind=Kind.BOOL)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamInfo:
    """One output stream of a TranscodeComplete event."""

    status: str | None = wire("Status", kind=Kind.STATUS)
    job_id: str | None = wire("JobId")
    error_code: str | None = wire("ErrorCode")
    error_message: str | None = wire("ErrorMessage")
    definition: str | None = wire("Definition")
    format: str | None = wire("Format")
    file_url: str | None = wire("FileUrl", "FileURL")
    bitrate: float | None = wire("Bitrate", kind=Kind.FLOAT)
    duration: float | None = wire("Duration", kind=Kind.FLOAT)
    fps: float | None = wire("Fps", kind=Kind.FLOAT)
    width: int | None = wire("Width", kind=Kind.INT)
    height: int | None = wire("Height", kind=Kind.INT)
    size: int | None = wire("Size", kind=Kind.INT)
    encrypt: bool | None = wire("Encrypt", kind=Kind.BOOL)
    is_audio: bool | None = wire("IsAudio", kind=Kind.BOOL)
    start_time: datetime | None = wire("StartTime", kind=Kind.TIME)
    finish_time: datetime | None = wire("FinishTime", kind=Kind.TIME)


@dataclass(frozen=True, slots=True, kw_only=True)
class TranscodeComplete(VodEvent):
    """All streams of a transcoding job finished; one entry per stream."""

    stream_infos: list[StreamInfo] = wire("StreamInfos", kind=Kind.PARTS, part=StreamInfo)


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotInfo:
    """One snapshot job of a SnapshotComplete event."""

    status: str | None = wire("Status", kind=Kind.STATUS)
    job_id: str | None = wire("JobId")
    error_code: str | None = wire("ErrorCode")
    error_message: str | None = wire("ErrorMessage")
    snapshot_type: str | None = wire("SnapshotType")
    snapshot_count: int | None = wire("SnapshotCount", kind=Kind.INT)
    snapshot_format: str | None = wire("SnapshotFormat")
    snapshot_regular: str | None = wire("SnapshotRegular")


@dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotComplete(VodEvent):
    """Snapshots were captured. The documented example has neither VideoId nor Status."""

    DEDUPE_KEYS: ClassVar[tuple[str, ...]] = ("SubType",)

    sub_type: str | None = wire("SubType")
    cover_url: str | None = wire("CoverUrl", "CoverURL")
    snapshot_infos: list[SnapshotInfo] = wire("SnapshotInfos", kind=Kind.PARTS, part=SnapshotInfo)


@dataclass(frozen=True, slots=True, kw_only=True)
class DynamicImageComplete(VodEvent):
    """An animated image (GIF/WebP) was generated. ``dynamic_image_job_info`` is VOD's JSON
    string decoded, or the original string when it is not JSON."""

    dynamic_image_job_info: JsonValue = wire("DynamicImageJobInfo", kind=Kind.JSON)


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoAnalysisComplete(VodEvent):
    """The source file was analysed (its numbers usually arrive as strings)."""

    width: int | None = wire("Width", kind=Kind.INT)
    height: int | None = wire("Height", kind=Kind.INT)
    duration: float | None = wire("Duration", kind=Kind.FLOAT)  # seconds
    bitrate: float | None = wire("Bitrate", kind=Kind.FLOAT)  # Kbit/s
    fps: float | None = wire("Fps", kind=Kind.FLOAT)
    size: int | None = wire("Size", kind=Kind.INT)  # bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class ProduceMediaComplete(VodEvent):
    """An online editing project was produced into a new video."""

    ID_KEYS: ClassVar[tuple[str, ...]] = ("MediaId", *_ID_KEYS)

    project_id: str | None = wire("ProjectId")


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkflowTaskComplete(VodEvent):
    """Every node of a (new-style) workflow task finished; ``job_id`` is the TaskId.
    ``activity_results`` and ``task_input`` are VOD's JSON strings decoded (or the original
    strings when they are not JSON)."""

    JOB_ID_KEYS: ClassVar[tuple[str, ...]] = ("TaskId", "JobId")

    workflow_id: str | None = wire("WorkflowId")
    user_id: str | None = wire("UserId")
    activity_results: JsonValue = wire("ActivityResults", kind=Kind.JSON)
    task_input: JsonValue = wire("TaskInput", kind=Kind.JSON)
    create_time: datetime | None = wire("CreateTime", kind=Kind.TIME)
    modified_time: datetime | None = wire("ModifiedTime", kind=Kind.TIME)
    finish_time: datetime | None = wire("FinishTime", kind=Kind.TIME)


# --- live recording --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AddLiveRecordVideoComplete(VodEvent):
    """A live stream recording was added to VOD as a video."""

    stream_name: str | None = wire("StreamName")
    domain_name: str | None = wire("DomainName")
    app_name: str | None = wire("AppName")
    record_start_time: datetime | None = wire("RecordStartTime", kind=Kind.TIME)
    record_end_time: datetime | None = wire("RecordEndTime", kind=Kind.TIME)


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveRecordVideoComposeStart(VodEvent):
    """Composition of a live recording into a video started."""

    stream_name: str | None = wire("StreamName")
    domain_name: str | None = wire("DomainName")
    app_name: str | None = wire("AppName")


# --- review ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CreateAuditComplete(VodEvent):
    """A manual review was recorded; ``audit_status`` is Normal or Blocked."""

    ID_KEYS: ClassVar[tuple[str, ...]] = ("MediaId", *_ID_KEYS)
    DEDUPE_KEYS: ClassVar[tuple[str, ...]] = ("AuditStatus",)

    sub_type: str | None = wire("SubType")
    audit_status: str | None = wire("AuditStatus")
    creation_time: datetime | None = wire("CreationTime", kind=Kind.TIME)
    auditor: str | None = wire("Auditor")
    reason: str | None = wire("Reason")


# --- AI --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AIVideoTagComplete(VodEvent):
    """A smart tagging job finished. ``result`` is ``None`` for a failed job without data."""

    ID_KEYS: ClassVar[tuple[str, ...]] = ("MediaId", *_ID_KEYS)

    result: VideoTagResult | None = wire("Data", kind=Kind.RESULT, part=VideoTagResult)


@dataclass(frozen=True, slots=True, kw_only=True)
class AIMediaDNAComplete(VodEvent):
    """A fingerprinting job finished. ``result.matches`` lists the library videos this one
    duplicates; ``result`` is ``None`` for a failed job without data."""

    ID_KEYS: ClassVar[tuple[str, ...]] = ("MediaId", *_ID_KEYS)

    result: MediaDnaResult | None = wire("Data", kind=Kind.RESULT, part=MediaDnaResult)
    complete_time: datetime | None = wire("CompleteTime", kind=Kind.TIME)


@dataclass(frozen=True, slots=True, kw_only=True)
class AIMediaAuditComplete(VodEvent):
    """An automated review finished. ``result`` is ``None`` for a failed job without data.
    The image URLs in the result expire two weeks after the review."""

    ID_KEYS: ClassVar[tuple[str, ...]] = ("MediaId", *_ID_KEYS)

    result: MediaAuditResult | None = wire("Data", kind=Kind.RESULT, part=MediaAuditResult)


# --- media management ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteMediaComplete(VodEvent):
    """Media (all of it, the mezzanine file only, or some streams) was deleted."""

    ID_KEYS: ClassVar[tuple[str, ...]] = ("MediaId", *_ID_KEYS)
    DEDUPE_KEYS: ClassVar[tuple[str, ...]] = ("MediaType", "DeleteType")

    media_type: str | None = wire("MediaType")
    delete_type: str | None = wire("DeleteType")  # all / mezzanine / stream
    job_ids: list[str] = wire("JobIds", kind=Kind.STR_LIST)


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaFieldChange:
    """One changed field of a MediaBaseChangeComplete event (``None`` on the side that did not
    exist: OldValue on create, NewValue on delete)."""

    old_value: JsonValue = None
    new_value: JsonValue = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaBaseChangeComplete(VodEvent):
    """Basic information (title, description, cover, category, tags) was created, updated or
    deleted. ``media_content`` maps each field name to its change; a value that is not a JSON
    ``{"OldValue", "NewValue"}`` object is kept as the string VOD sent. When MediaContent itself
    is not JSON, ``media_content`` is that original string."""

    ID_KEYS: ClassVar[tuple[str, ...]] = ("MediaId", *_ID_KEYS)
    DEDUPE_KEYS: ClassVar[tuple[str, ...]] = ("MediaType", "OperateMode", "MediaContent")

    media_type: str | None = wire("MediaType")
    operate_mode: str | None = wire("OperateMode")  # create / update / delete
    media_content: Mapping[str, MediaFieldChange | str] | str | None = wire(
        "MediaContent", kind=Kind.MEDIA_CONTENT
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class UpdateMediaStorageClassComplete(VodEvent):
    """The storage class of media changed (Status is ``Success``/``Failed`` on the wire)."""

    ID_KEYS: ClassVar[tuple[str, ...]] = ("MediaId", *_ID_KEYS)
    DEDUPE_KEYS: ClassVar[tuple[str, ...]] = ("StorageClass", "Scope")

    scope: str | None = wire("Scope")
    storage_class: str | None = wire("StorageClass")
    trigger_by: str | None = wire("TriggerBy")


@dataclass(frozen=True, slots=True, kw_only=True)
class RestoreMediaComplete(VodEvent):
    """Archived media was restored (Status is ``Success``/``Failed`` on the wire)."""

    ID_KEYS: ClassVar[tuple[str, ...]] = ("MediaId", *_ID_KEYS)

    restore_expiration: datetime | None = wire("RestoreExpiration", kind=Kind.TIME)


@dataclass(frozen=True, slots=True, kw_only=True)
class SubmitMediaRefreshComplete(VodEvent):
    """A CDN refresh or preload of media finished; ``job_id`` is the MediaRefreshJobId."""

    ID_KEYS: ClassVar[tuple[str, ...]] = ("MediaId", *_ID_KEYS)
    JOB_ID_KEYS: ClassVar[tuple[str, ...]] = ("MediaRefreshJobId", "JobId")

    task_type: str | None = wire("TaskType")  # refresh / preload
    success_play_urls: list[str] = wire("SuccessPlayUrls", kind=Kind.STR_LIST)
    task_ids: list[str] = wire("TaskIds", kind=Kind.STR_LIST)
    filter_policy: JsonValue = wire("FilterPolicy", kind=Kind.JSON)


_ALL_EVENT_CLASSES: tuple[type[VodEvent], ...] = (
    FileUploadComplete,
    ImageUploadComplete,
    StreamTranscodeComplete,
    TranscodeComplete,
    SnapshotComplete,
    DynamicImageComplete,
    AddLiveRecordVideoComplete,
    LiveRecordVideoComposeStart,
    UploadByURLComplete,
    CreateAuditComplete,
    VideoAnalysisComplete,
    AIMediaDNAComplete,
    AIVideoTagComplete,
    AIMediaAuditComplete,
    AttachedMediaUploadComplete,
    ProduceMediaComplete,
    DeleteMediaComplete,
    MediaBaseChangeComplete,
    UpdateMediaStorageClassComplete,
    RestoreMediaComplete,
    SubmitMediaRefreshComplete,
    WorkflowTaskComplete,
)

EVENT_TYPES: Mapping[str, type[VodEvent]] = MappingProxyType(
    {cls.__name__: cls for cls in _ALL_EVENT_CLASSES}
)
"""Every documented ``EventType`` and the class it decodes to (the class is named after it)."""
