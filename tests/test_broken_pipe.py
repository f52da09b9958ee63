"""`vod-events parse ... | head` and `vod-events dlq list | head`: when the reader of standard
output goes away, the command stops quietly - no BrokenPipeError traceback, no "Exception
ignored" - and exits 141 (128 + SIGPIPE), as `cat` or `grep` would. Real processes, real pipes.
Dead letters `dlq list` received from a queue are handed back even so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

from vod_events.deadletter import DeadLetter, DirectorySink
from vod_events.mns_server import LocalMNSServer
from vod_events.transports.mns import MNSTransport

REPO = Path(__file__).resolve().parent.parent
SAMPLE = Path(str(resources.files("vod_events") / "samples")) / "AIVideoTagComplete.json"
KEY_ID, SECRET = "pipe-id", "pipe-secret-PLANTED"
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # what a shell reports for a process SIGPIPE stopped


def first_line_then_close(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run `python -m vod_events ARGS`, read one line of its output, close the pipe as `head -1`
    does, and return (exit code, that line, everything on stderr)."""
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("VOD_EVENTS_", "ALIBABA_CLOUD_"))
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "vod_events", *args],
        cwd=REPO,
        env={**environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    line = process.stdout.readline()
    process.stdout.close()
    code = process.wait(timeout=60)
    stderr = process.stderr.read()
    process.stderr.close()
    return code, line, stderr


def test_exit_code_is_what_a_shell_reports_for_sigpipe() -> None:
    from vod_events.cli import EXIT_BROKEN_PIPE as documented

    assert documented == EXIT_BROKEN_PIPE == 141


def test_parse_into_a_closed_pipe_exits_quietly() -> None:
    # Far more than a pipe holds (64 KiB), so the writer meets the closed end.
    code, line, stderr = first_line_then_close("parse", *[str(SAMPLE)] * 300)
    assert json.loads(line)["event_type"] == "AIVideoTagComplete"
    assert (code, stderr) == (EXIT_BROKEN_PIPE, "")


def test_parse_through_a_shell_pipeline_into_head() -> None:
    files = " ".join([str(SAMPLE)] * 300)
    done = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {sys.executable} -m vod_events parse {files} | head -1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.count("\n") == 1
    assert (done.returncode, done.stderr) == (EXIT_BROKEN_PIPE, "")


def letter(i: int) -> DeadLetter:
    return DeadLetter(
        body=f'{{"EventType": "AIVideoTagComplete", "JobId": "job-{i}", "Pad": "{"x" * 300}"}}',
        reason="undecodable: test letter",
        source_queue="vod-events",
        message_id=f"message-{i}",
        dequeue_count=1,
        enqueue_time="",
        first_failure="",
        last_failure="",
    )


def test_dlq_list_from_a_directory_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    sink = DirectorySink(tmp_path / "letters")
    for i in range(400):
        sink.put(letter(i))
    config = tmp_path / "config.toml"
    config.write_text(
        f'[mns]\nendpoint = "http://127.0.0.1:1"\n[dead_letter]\ndir = "{tmp_path / "letters"}"\n'
    )
    code, line, stderr = first_line_then_close("dlq", "--config", str(config), "list")
    assert line.strip() == sorted(p.name for p in (tmp_path / "letters").glob("*.json"))[0]
    assert (code, stderr) == (EXIT_BROKEN_PIPE, "")
    assert len(list((tmp_path / "letters").glob("*.json"))) == 400  # listing removes nothing


def test_dlq_list_from_a_queue_hands_every_letter_back_when_the_pipe_closes(
    tmp_path: Path,
) -> None:
    with LocalMNSServer(access_key_id=KEY_ID, access_key_secret=SECRET) as server:
        server.create_queue("dlq", visibility_timeout=60)
        dlq = MNSTransport(server.endpoint, "dlq", access_key_id=KEY_ID, access_key_secret=SECRET)
        for i in range(300):
            dlq.send(letter(i).body)
        config = tmp_path / "config.toml"
        config.write_text(f'[mns]\nendpoint = "{server.endpoint}"\n[dead_letter]\nqueue = "dlq"\n')
        credentials = {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
        }
        code, _, stderr = first_line_then_close(
            "dlq", "--config", str(config), "list", env=credentials
        )
        assert (code, stderr) == (EXIT_BROKEN_PIPE, "")
        # Handed back (visible again within a couple of seconds), not hidden for 60 s.
        seen: set[str] = set()
        deadline = time.monotonic() + 10
        while len(seen) < 300 and time.monotonic() < deadline:
            batch = dlq.receive(16, 1)
            seen.update(m.message_id for m in batch)
        dlq.close()
    assert len(seen) == 300
