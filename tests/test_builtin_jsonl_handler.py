"""The built-in `jsonl` handler: whole lines from concurrent workers, each in the OS's hands
(readable by another process) as soon as the call returns."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path

from helpers import event_body

from vod_events import decode
from vod_events.handlers import JsonlHandler
from vod_events.router import HandlerContext


def body_with_extend(job: str, extend: str) -> str:
    body = json.loads(event_body(job))
    body["Extend"] = extend
    return json.dumps(body)


def context(i: int) -> HandlerContext:
    return HandlerContext(message_id=f"m{i}", dequeue_count=1, enqueue_time=datetime.now(UTC))


def test_a_line_is_in_the_file_as_soon_as_the_call_returns(tmp_path: Path) -> None:
    handler = JsonlHandler(tmp_path / "events.jsonl")
    try:
        handler(decode(event_body("job-1")), context(1))
        lines = (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()
        assert [json.loads(line)["message"]["id"] for line in lines] == ["m1"]
    finally:
        handler.close()


def test_concurrent_workers_write_whole_lines_never_interleaved(tmp_path: Path) -> None:
    handler = JsonlHandler(tmp_path / "events.jsonl")
    big = decode(body_with_extend("job-big", "x" * 20_000))  # larger than a pipe buffer
    small = decode(event_body("job-small"))

    def work(worker: int) -> None:
        for i in range(200):
            handler(big if i % 10 == 0 else small, context(worker * 1000 + i))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.close()
    lines = (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()
    ids = sorted(json.loads(line)["message"]["id"] for line in lines)  # each parses whole
    assert ids == sorted(f"m{w * 1000 + i}" for w in range(8) for i in range(200))


def test_an_unpaired_surrogate_is_written_escaped(tmp_path: Path) -> None:
    handler = JsonlHandler(tmp_path / "events.jsonl")
    try:
        handler(decode(body_with_extend("job-1", "\ud800")), context(1))
    finally:
        handler.close()
    (line,) = (tmp_path / "events.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(line)["extend"] == "\ud800"
