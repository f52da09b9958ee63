"""``constructor(cls)``: instances built without the frozen ``__init__`` are the same as those
built with it - type, equality, hash, immutability, pickling - for every class the decoder
builds that way."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass, field
from typing import Any

import pytest

from vod_events import results
from vod_events._construct import constructor
from vod_events.events import (
    EVENT_TYPES,
    AIVideoTagComplete,
    GenericEvent,
    MediaFieldChange,
    SnapshotInfo,
    StreamInfo,
)
from vod_events.results import DnaMatch, DnaSegment, VideoTag, VideoTagResult

RESULT_CLASSES = [getattr(results, name) for name in results.__all__ if name[0].isupper()]
RESULT_CLASSES.remove(results.ResultFormatError)
REQUIRED = {"event_type": "SomeEvent", "tag": "a tag", "text": "a sentence"}


def _fields_of(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


@pytest.mark.parametrize(
    "cls",
    [
        *EVENT_TYPES.values(),
        GenericEvent,
        StreamInfo,
        SnapshotInfo,
        MediaFieldChange,
        *RESULT_CLASSES,
    ],
    ids=lambda cls: cls.__name__,
)
def test_builds_the_same_instance_as_init(cls: type[Any]) -> None:
    names = {f.name for f in dataclasses.fields(cls)}
    by_init = cls(**{key: value for key, value in REQUIRED.items() if key in names})
    built = constructor(cls)(**_fields_of(by_init))
    assert type(built) is cls
    assert built == by_init
    assert repr(built) == repr(by_init)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(built, next(iter(names)), None)


def test_event_with_values_is_frozen_hashable_and_picklable() -> None:
    segment = constructor(DnaSegment)(
        input_start_s=0.0, input_duration_s=14.0, duplicate_start_s=0.5, duplicate_duration_s=None
    )
    same = DnaSegment(input_start_s=0.0, input_duration_s=14.0, duplicate_start_s=0.5)
    assert segment == same
    assert hash(segment) == hash(same)
    assert pickle.loads(pickle.dumps(segment)) == same  # noqa: S301 - our own bytes
    assert dataclasses.replace(segment, input_start_s=1.0).input_start_s == 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        del segment.duplicate_start_s

    tag = constructor(VideoTag)(tag="Zhang San", times_ms=[10760], face_url="http://f/1.jpg")
    result = VideoTagResult(person=[tag])
    event = constructor(AIVideoTagComplete)(
        **{**_fields_of(AIVideoTagComplete(event_type="AIVideoTagComplete")), "result": result}
    )
    assert isinstance(event, AIVideoTagComplete)
    assert event.result is result
    assert event.event_type == "AIVideoTagComplete"
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.status = "fail"  # type: ignore[misc]


def test_nested_values_are_kept_as_given() -> None:
    segment = DnaSegment(input_start_s=0.0, input_duration_s=14.0)
    match = constructor(DnaMatch)(primary_key="older", similarity=0.99, segments=[segment])
    assert match.segments[0] is segment
    assert match == DnaMatch(primary_key="older", similarity=0.99, segments=[segment])


def test_every_field_must_be_given() -> None:
    build = constructor(VideoTag)
    assert build("a", [1], "u") == VideoTag(tag="a", times_ms=[1], face_url="u")
    with pytest.raises(TypeError, match="face_url"):
        build(tag="a", times_ms=[])
    with pytest.raises(TypeError, match="face_url"):
        build("a", [])
    with pytest.raises(TypeError, match="colour"):
        build(tag="a", times_ms=[], face_url=None, colour="red")


@dataclass(frozen=True)
class _NoSlots:
    value: int = 0


@dataclass(slots=True)
class _NotFrozen:
    value: int = 0


@dataclass(frozen=True, slots=True)
class _PostInit:
    value: int = 0

    def __post_init__(self) -> None:
        pass


@dataclass(frozen=True, slots=True)
class _NoInitField:
    value: int = field(default=0, init=False)


class _NotADataclass:
    __slots__ = ("value",)


@pytest.mark.parametrize(
    ("cls", "reason"),
    [
        (_NoSlots, "not a frozen, slotted dataclass"),
        (_NotFrozen, "not a frozen, slotted dataclass"),
        (_NotADataclass, "not a frozen, slotted dataclass"),
        (_PostInit, "__post_init__"),
        (_NoInitField, "a field that __init__ does not set"),
    ],
)
def test_refuses_classes_it_cannot_build_faithfully(cls: type[Any], reason: str) -> None:
    with pytest.raises(TypeError, match=reason):
        constructor(cls)
