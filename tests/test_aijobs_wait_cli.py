"""`submit-ai-job --wait` and `ai-jobs --wait` as real processes, against the local fake VOD
endpoint (tests/fake_vod.py) over HTTP: exit codes, one JSON line per finished job in the
events' shape, what goes to stderr with and without a terminal (a pseudo-terminal from `pty`).

The polling itself (pacing, batches, throttling, timeouts with a fake clock) is tested through
the API in tests/test_aijobs_wait.py; here the waits are real but short (--poll-interval)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from fake_vod import NEVER, SAMPLE_DATA, AIJobBook, FakeVod, Fault, throttling

from vod_events.decoder import decode
from vod_events.serialize import event_to_dict

KEY_ID = "LTAI-test-key-id"
KEY_SECRET = "test-secret-do-not-print"
FAST = ("--poll-interval", "0.1")  # the pacing floor (0.5 s between calls) still applies


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
    env.update(
        ALIBABA_CLOUD_ACCESS_KEY_ID=KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET=KEY_SECRET, **extra
    )
    return env


def command(vod: FakeVod, arguments: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "vod_events", *arguments, "--endpoint", vod.endpoint]


@dataclass
class Done:
    code: int
    out: str
    err: str

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.splitlines()]


def run(vod: FakeVod, *arguments: str) -> Done:
    done = subprocess.run(
        command(vod, arguments),
        env=environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert KEY_SECRET not in done.stdout + done.stderr
    return Done(done.returncode, done.stdout, done.stderr)


def run_on_terminal(
    vod: FakeVod, *arguments: str, term: str = "xterm", interrupt_on: str | None = None
) -> Done:
    """Run with stderr on a pseudo-terminal (120 columns), stdout a pipe; ``err`` is all that
    was written to the terminal. ``interrupt_on``: send SIGINT once this has been written."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(
        command(vod, arguments),
        env=environment(TERM=term),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    written = bytearray()

    def read_terminal() -> None:
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: every end of the terminal is closed
                return
            if not chunk:
                return
            written.extend(chunk)
            if interrupt_on and interrupt_on.encode() in written and not interrupted.is_set():
                process.send_signal(signal.SIGINT)
                interrupted.set()

    interrupted = threading.Event()
    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        out, _ = process.communicate(timeout=60)
    finally:
        reader.join(timeout=10)
        os.close(controller)
    err = written.decode()
    assert KEY_SECRET not in out.decode() + err
    return Done(process.returncode, out.decode(), err)


def event_shape(job_type: str, job_id: str, media_id: str) -> dict[str, Any]:
    """What `vod-events parse` prints for the matching event with the same Data."""
    body = {
        "EventTime": "2024-05-01T10:02:00Z",
        "EventType": f"{job_type}Complete",
        "JobId": job_id,
        "MediaId": media_id,
        "Status": "success",
        "Code": "0",
        "Message": "OK",
        "Data": SAMPLE_DATA[job_type],
    }
    return event_to_dict(decode(json.dumps(body)))


COMMON = ("event_type", "status", "media_id", "job_id", "error_code", "error_message", "result")


# --- without a terminal ----------------------------------------------------------------------


def test_each_finished_job_is_one_line_in_the_events_shape_and_stderr_stays_empty(
    vod: FakeVod, book: AIJobBook
) -> None:
    book.add("tag-1", type="AIVideoTag", media_id="m-1", polls=2)
    book.add("dna-1", type="AIMediaDNA", media_id="m-2", polls=1)
    book.add("audit-1", type="AIMediaAudit", media_id="m-3")

    done = run(vod, "ai-jobs", "tag-1", "dna-1", "audit-1", "--wait", *FAST)

    assert (done.code, done.err) == (0, "")
    lines = done.lines()
    assert [line["job_id"] for line in lines] == ["tag-1", "dna-1", "audit-1"]
    for line, (job_type, media_id) in zip(
        lines, [("AIVideoTag", "m-1"), ("AIMediaDNA", "m-2"), ("AIMediaAudit", "m-3")], strict=True
    ):
        parsed = event_shape(job_type, line["job_id"], media_id)
        assert {key: line[key] for key in COMMON} == {key: parsed[key] for key in COMMON}
        assert line["type"] == job_type
        assert line["result_error"] is None
    assert lines[0]["result"]["keyword"][0] == {
        "tag": "Cushion",
        "times_ms": [3260, 4000, 5000, 8410, 10000, 12000, 13000, 14000, 15000],
        "face_url": None,
    }
    # finished jobs are not asked about again
    assert vod.job_ids_asked() == [["tag-1", "dna-1", "audit-1"], ["tag-1", "dna-1"], ["tag-1"]]


def test_a_failed_job_exits_1_with_its_code_and_message(vod: FakeVod, book: AIJobBook) -> None:
    book.add("tag-1", polls=1)
    book.add("bad-1", outcome="fail", code="InvalidMedia.NoVideoStream", message="No video.")

    done = run(vod, "ai-jobs", "tag-1", "bad-1", "--wait", *FAST)

    assert done.code == 1
    assert done.err == "vod-events ai-jobs: job bad-1 (AIVideoTag) failed: " + (
        "InvalidMedia.NoVideoStream: No video.\n"
    )
    tag, bad = done.lines()
    assert (tag["job_id"], tag["status"]) == ("tag-1", "success")
    assert (bad["status"], bad["error_code"], bad["error_message"], bad["result"]) == (
        "fail",
        "InvalidMedia.NoVideoStream",
        "No video.",
        None,
    )


def test_a_timeout_exits_124_listing_the_jobs_still_running(vod: FakeVod, book: AIJobBook) -> None:
    book.add("tag-1")
    book.add("stuck-1", type="AIMediaDNA", outcome=NEVER)

    done = run(vod, "ai-jobs", "tag-1", "stuck-1", "--wait", "--timeout", "1.5", *FAST)

    assert done.code == 124
    assert done.err == (
        "vod-events ai-jobs: timed out after 1.5 s\n"
        "vod-events ai-jobs: 1 job still running:\n"
        "  stuck-1  AIMediaDNA  processing\n"
    )
    assert [line["job_id"] for line in done.lines()] == ["tag-1"]  # what did finish
    assert len(vod.job_ids_asked()) >= 2


def test_a_result_that_cannot_be_read_exits_1_and_keeps_the_data(
    vod: FakeVod, book: AIJobBook
) -> None:
    book.add("dna-1", type="AIMediaDNA", data='{"VideoDNA": "not a list"}')

    done = run(vod, "ai-jobs", "dna-1", "--wait")

    assert done.code == 1
    assert done.err == (
        "vod-events ai-jobs: job dna-1 (AIMediaDNA) succeeded, but its result is unreadable: "
        "VideoDNA is a string, not a list\n"
    )
    [line] = done.lines()
    assert (line["status"], line["result"], line["data"]) == (
        "success",
        None,
        '{"VideoDNA": "not a list"}',
    )


def test_an_unknown_job_id_exits_1_at_once(vod: FakeVod, book: AIJobBook) -> None:
    book.add("tag-1", polls=10)

    done = run(vod, "ai-jobs", "tag-1", "nope-1", "--wait", "--timeout", "600")

    assert done.code == 1
    assert done.err == (
        "vod-events ai-jobs: job nope-1 not found: VOD does not know this job id\n"
        "vod-events ai-jobs: 1 job still running:\n"
        "  tag-1  AIVideoTag  init\n"
    )
    assert done.out == ""
    assert vod.job_ids_asked() == [["tag-1", "nope-1"]]  # one call, no waiting


def test_more_than_ten_ids_are_asked_in_batches(vod: FakeVod, book: AIJobBook) -> None:
    ids = [f"tag-{i:02d}" for i in range(12)]
    for job_id in ids:
        book.add(job_id)

    done = run(vod, "ai-jobs", *ids, "--wait")

    assert done.code == 0
    assert [line["job_id"] for line in done.lines()] == ids
    assert vod.job_ids_asked() == [ids[:10], ids[10:]]


def test_throttling_is_waited_out(vod: FakeVod, book: AIJobBook) -> None:
    book.add("tag-1")
    vod.faults.append(throttling("Throttling.User", 400))

    done = run(vod, "ai-jobs", "tag-1", "--wait", *FAST)

    assert (done.code, done.err) == (0, "")
    assert [line["status"] for line in done.lines()] == ["success"]
    assert vod.actions() == ["ListAIJob", "ListAIJob"]


def test_a_refusal_while_waiting_exits_1_with_one_line(vod: FakeVod, book: AIJobBook) -> None:
    book.add("tag-1", polls=5)
    vod.faults.append(
        Fault(
            403,
            {"Code": "Forbidden.RAM", "Message": "Not authorized.", "RequestId": "req-403"},
            at_call=2,
        )
    )

    done = run(vod, "ai-jobs", "tag-1", "--wait", *FAST)

    assert done.code == 1
    assert done.err == (
        "vod-events ai-jobs: ListAIJob failed: Forbidden.RAM (HTTP 403), request id req-403: "
        "Not authorized.\n"
    )
    assert done.out == ""


def test_submit_and_wait_prints_the_results_of_the_jobs_it_created(
    vod: FakeVod, book: AIJobBook
) -> None:
    book.polls = 1
    done = run(
        vod,
        *("submit-ai-job", "--media-id", "media-9", "--types", "AIVideoTag,AIMediaDNA"),
        *("--wait", *FAST),
    )

    assert (done.code, done.err) == (0, "")
    lines = done.lines()
    assert [(line["event_type"], line["media_id"], line["status"]) for line in lines] == [
        ("AIVideoTagComplete", "media-9", "success"),
        ("AIMediaDNAComplete", "media-9", "success"),
    ]
    assert all(re.fullmatch(r"[0-9a-f]{32}", line["job_id"]) for line in lines)
    assert vod.actions() == ["SubmitAIJob", "ListAIJob", "ListAIJob"]
    assert vod.job_ids_asked()[0] == [line["job_id"] for line in lines]


def test_submit_and_wait_for_a_job_that_fails(vod: FakeVod, book: AIJobBook) -> None:
    done = run(
        vod, "submit-ai-job", "--media-id", "fail-1", "--types", "AIVideoTag", "--wait", *FAST
    )
    assert done.code == 1
    assert re.fullmatch(
        r"vod-events submit-ai-job: job [0-9a-f]{32} \(AIVideoTag\) failed: "
        r"InvalidMedia\.NoVideoStream: The media has no video stream\.\n",
        done.err,
    )
    [line] = done.lines()
    assert line["status"] == "fail"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["ai-jobs", "tag-1", "--timeout", "5"], "--timeout and --poll-interval only apply"),
        (["ai-jobs", "tag-1", "--poll-interval", "5"], "only apply with --wait"),
        (["ai-jobs", "tag-1", "--wait", "--timeout", "0"], "not a positive number of seconds"),
        (["ai-jobs", "tag-1", "--wait", "--timeout", "soon"], "not a number of seconds"),
        (["ai-jobs", " ", "--wait"], "at least one job id is required"),
        (
            ["submit-ai-job", "--media-id", "m", "--types", "AIVideoTag", "--timeout", "5"],
            "only apply with --wait",
        ),
        (
            ["submit-ai-job", "--media-id", "m", "--types", "AIFace", "--wait"],
            "unknown AI job type",
        ),
    ],
)
def test_usage_errors_exit_2_before_any_request(
    vod: FakeVod, book: AIJobBook, arguments: list[str], message: str
) -> None:
    done = run(vod, *arguments)
    assert done.code == 2
    assert message in done.err
    assert done.out == ""
    assert vod.calls == []


def test_without_wait_the_command_prints_one_json_document_as_before(
    vod: FakeVod, book: AIJobBook
) -> None:
    book.add("run-1", polls=3)
    done = run(vod, "ai-jobs", "run-1")
    assert done.code == 0
    [job] = json.loads(done.out)
    assert (job["job_id"], job["status"]) == ("run-1", "init")
    assert len(vod.calls) == 1


# --- on a terminal ---------------------------------------------------------------------------

ERASE = "\x1b[2K"


def last_frame(written: str, jobs: int) -> list[str]:
    """The lines of the last progress frame drawn."""
    lines = [part.split("\r\n")[0] for part in written.split(ERASE)[1:]]
    return lines[-jobs:]


def test_progress_is_drawn_on_a_terminal_and_stdout_holds_only_the_results(
    vod: FakeVod, book: AIJobBook
) -> None:
    book.add("tag-1", polls=2)
    book.add("dna-1", type="AIMediaDNA", polls=1)

    done = run_on_terminal(vod, "ai-jobs", "tag-1", "dna-1", "--wait", *FAST)

    assert done.code == 0
    assert [line["job_id"] for line in done.lines()] == ["tag-1", "dna-1"]
    # a frame per update, redrawn in place: up two lines, then each line erased and rewritten
    assert "\r\x1b[2A" in done.err
    frame = last_frame(done.err, 2)
    assert [line.split()[:3] for line in frame] == [
        ["tag-1", "AIVideoTag", "success"],
        ["dna-1", "AIMediaDNA", "success"],
    ]
    assert all(re.fullmatch(r"\d+s", line.split()[3]) for line in frame)
    # the states it went through were shown
    assert f"{ERASE}tag-1  -  unknown " in done.err  # before the first answer: no type yet
    for status in ("init", "processing"):
        assert f"{ERASE}tag-1  AIVideoTag  {status} " in done.err


def test_problems_follow_the_progress_on_a_terminal(vod: FakeVod, book: AIJobBook) -> None:
    book.add("bad-1", outcome="fail")

    done = run_on_terminal(vod, "ai-jobs", "bad-1", "--wait", *FAST)

    assert done.code == 1
    assert done.err.endswith(
        "vod-events ai-jobs: job bad-1 (AIVideoTag) failed: InvalidMedia.NoVideoStream: "
        "The media has no video stream.\r\n"
    )
    assert last_frame(done.err, 1)[0].split()[:3] == ["bad-1", "AIVideoTag", "fail"]


def test_a_dumb_terminal_gets_a_line_per_change_and_no_escapes(
    vod: FakeVod, book: AIJobBook
) -> None:
    book.add("tag-1", polls=1)

    done = run_on_terminal(vod, "ai-jobs", "tag-1", "--wait", *FAST, term="dumb")

    assert done.code == 0
    assert "\x1b" not in done.err
    assert [line.split()[:3] for line in done.err.splitlines()] == [
        ["tag-1", "-", "unknown"],
        ["tag-1", "AIVideoTag", "init"],
        ["tag-1", "AIVideoTag", "success"],
    ]


def test_interrupting_the_wait_exits_130_listing_the_jobs_still_running(
    vod: FakeVod, book: AIJobBook
) -> None:
    book.add("tag-1")
    book.add("stuck-1", outcome=NEVER)

    # Ctrl-C once the first answer is on the screen: the command is then waiting 2 s
    done = run_on_terminal(
        vod, "ai-jobs", "tag-1", "stuck-1", "--wait", interrupt_on="stuck-1  AIVideoTag  init"
    )

    assert done.code == 130
    assert done.err.endswith(
        "vod-events ai-jobs: interrupted\r\n"
        "vod-events ai-jobs: 1 job still running:\r\n"
        "  stuck-1  AIVideoTag  init\r\n"
    )
    assert [line["job_id"] for line in done.lines()] == ["tag-1"]  # what had finished
    assert len(vod.job_ids_asked()) == 1
