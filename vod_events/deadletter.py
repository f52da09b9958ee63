"""Dead letters: messages that can never succeed, kept with their body and their reason.

A dead letter is written durably BEFORE the source message is deleted; if the write fails,
the message stays in the queue and comes back (docs/design.md rules 7 and 8: never lose the body,
never loop forever on a poison message).

Targets (`[dead_letter]` in the config):
- `DirectorySink`: one JSON file per message, written atomically (temp file, fsync, rename).
- `QueueSink`: another MNS queue; the body unchanged, metadata as user properties.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from vod_events.transports import ReceivedMessage, Transport

# User-property names on a dead letter sent to a queue (MNS names: letters and digits).
PROPERTY_NAMES = {
    "reason": "DeadLetterReason",
    "source_queue": "SourceQueue",
    "message_id": "OriginalMessageId",
    "dequeue_count": "DequeueCount",
    "first_failure": "FirstFailureTime",
    "last_failure": "LastFailureTime",
}
MAX_PROPERTY_TEXT = 1024  # keep the reason well inside MNS's property limits
# The source recorded for events received by HTTP callback (a letter has no queue to go back to).
CALLBACK_SOURCE = "http-callback"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered message. Times are ISO 8601 UTC strings."""

    body: str
    reason: str
    source_queue: str
    message_id: str
    dequeue_count: int
    enqueue_time: str
    first_failure: str
    last_failure: str
    properties: Mapping[str, str] = field(default_factory=dict)
    letter_id: str = ""  # the sink's own id (file name, DLQ message id), set on read

    @classmethod
    def of(cls, message: ReceivedMessage, reason: str, source: str) -> DeadLetter:
        """The dead letter for a delivery that failed just now."""
        return cls(
            body=message.body,
            reason=reason,
            source_queue=source,
            message_id=message.message_id,
            dequeue_count=message.dequeue_count,
            enqueue_time=iso_ms(message.enqueue_time_ms),
            first_failure=iso_ms(message.first_dequeue_time_ms),
            last_failure=now_iso(),
            properties=dict(message.user_properties),
        )

    @classmethod
    def from_queue_message(cls, message: ReceivedMessage, default_source: str) -> DeadLetter:
        """Read back a letter `QueueSink` wrote (its id is the DLQ message id)."""
        props = {key: message.user_properties.get(name, "") for key, name in PROPERTY_NAMES.items()}
        count = props["dequeue_count"]
        return cls(
            body=message.body,
            reason=props["reason"] or "(no reason recorded)",
            source_queue=props["source_queue"] or default_source,
            message_id=props["message_id"],
            dequeue_count=int(count) if count.isdigit() else 0,
            enqueue_time=iso_ms(message.enqueue_time_ms),
            first_failure=props["first_failure"],
            last_failure=props["last_failure"],
            properties={
                k: v for k, v in message.user_properties.items() if k not in PROPERTY_NAMES.values()
            },
            letter_id=message.message_id,
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["properties"] = dict(self.properties)
        data.pop("letter_id")
        return data


def iso_ms(ms: int) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC ("" for 0: unknown)."""
    if ms <= 0:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def now_iso() -> str:
    return iso_ms(int(time.time() * 1000))


class DeadLetterSink(Protocol):
    """Where dead letters go. `put` returns only once the letter is durable, or raises."""

    def put(self, letter: DeadLetter) -> None: ...


class DirectorySink:
    """One `<time>-<message id>.json` file per dead letter in `directory`."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def put(self, letter: DeadLetter) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        safe_id = "".join(c if c.isalnum() else "_" for c in letter.message_id)[:64]
        name = f"{time.time_ns()}-{safe_id}.json"
        payload = json.dumps(letter.to_json(), ensure_ascii=False, indent=1).encode()
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(payload)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.directory / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(self.directory)  # the rename itself must survive a crash

    def list(self) -> Iterator[DeadLetter]:
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob("[0-9]*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            data["properties"] = data.get("properties") or {}
            yield DeadLetter(**data, letter_id=path.name)

    def remove(self, letter_id: str) -> None:
        path = self.directory / Path(letter_id).name  # never outside the directory
        path.unlink()
        _fsync_dir(self.directory)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class QueueSink:
    """Dead letters as messages in another MNS queue (the body unchanged).

    A transport serves one thread, so each calling thread gets its own from `connect`.
    """

    def __init__(self, connect: Callable[[], Transport]) -> None:
        self.connect = connect
        self._local = threading.local()

    @property
    def transport(self) -> Transport:
        transport: Transport | None = getattr(self._local, "transport", None)
        if transport is None:
            transport = self._local.transport = self.connect()
        return transport

    def put(self, letter: DeadLetter) -> None:
        values = {
            "reason": letter.reason,
            "source_queue": letter.source_queue,
            "message_id": letter.message_id,
            "dequeue_count": str(letter.dequeue_count),
            "first_failure": letter.first_failure,
            "last_failure": letter.last_failure,
        }
        properties = {
            PROPERTY_NAMES[key]: value[:MAX_PROPERTY_TEXT] for key, value in values.items() if value
        }
        self.transport.send(letter.body, properties)
