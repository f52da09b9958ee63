"""`vod-events parse`: in-process through the CLI dispatcher, and as the installed console
script."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import pytest

from vod_events import cli

SAMPLES = Path(str(resources.files("vod_events") / "samples"))
SCRIPT = Path(sys.executable).parent / "vod-events"
DNA = SAMPLES / "AIMediaDNAComplete.json"
TAG = SAMPLES / "AIVideoTagComplete.json"


def lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


# --- in process ------------------------------------------------------------------------------


def test_files_print_one_json_line_each(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["parse", str(DNA), str(TAG)]) == 0
    captured = capsys.readouterr()
    out = lines(captured.out)
    assert [event["event_type"] for event in out] == ["AIMediaDNAComplete", "AIVideoTagComplete"]
    assert out[0]["event_time"] == "2017-03-20T07:49:17.025000+00:00"
    assert out[0]["job_id"] == "88c6ca184c0edj384a5b665e2a12****"
    assert out[1]["media_id"] == "sj83k40d92c641401fab46a0b842e9****"
    assert captured.err == ""


def test_failures_are_reported_per_file_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"Status": "success"}')
    missing = tmp_path / "missing.json"
    assert cli.main(["parse", str(broken), str(DNA), str(missing)]) == 2
    captured = capsys.readouterr()
    assert [event["event_type"] for event in lines(captured.out)] == ["AIMediaDNAComplete"]
    assert captured.err.splitlines() == [
        f"{broken}: no EventType field",
        f"{missing}: cannot read: No such file or directory",
    ]


def test_stdin_when_no_file_is_given(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    body = base64.b64encode(DNA.read_bytes())
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(body)))
    assert cli.main(["parse"]) == 0
    assert lines(capsys.readouterr().out)[0]["event_type"] == "AIMediaDNAComplete"


def test_dash_reads_stdin_among_files(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"[]")))
    assert cli.main(["parse", str(TAG), "-"]) == 2
    captured = capsys.readouterr()
    assert [event["event_type"] for event in lines(captured.out)] == ["AIVideoTagComplete"]
    assert captured.err == "<stdin>: JSON value is an array, not an object\n"


# --- the installed console script ------------------------------------------------------------


def run_script(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [str(SCRIPT), "parse", *args], input=stdin, capture_output=True, check=False, timeout=60
    )


def test_console_script_decodes_every_sample() -> None:
    paths = sorted(SAMPLES.glob("*.json"))
    done = run_script(*map(str, paths))
    assert done.returncode == 0, done.stderr
    out = lines(done.stdout.decode("utf-8"))
    assert [event["event_type"] for event in out] == [path.name.split(".")[0] for path in paths]
    assert done.stderr == b""


def test_console_script_reads_stdin_and_fails_cleanly() -> None:
    good = run_script(stdin=TAG.read_bytes())
    assert good.returncode == 0
    assert lines(good.stdout.decode("utf-8"))[0]["status"] == "success"

    bad = run_script("-", stdin=b"\xff\xfe not an event")
    assert bad.returncode == 2
    assert bad.stdout == b""
    assert bad.stderr.decode() == "<stdin>: body is not UTF-8 text (bad byte at offset 0)\n"
    assert b"Traceback" not in bad.stderr


def test_console_script_writes_utf8_whatever_the_locale(tmp_path: Path) -> None:
    event = tmp_path / "title.json"
    event.write_text('{"EventType": "X", "Title": "\u6807\u9898"}', encoding="utf-8")
    done = subprocess.run(
        [str(SCRIPT), "parse", str(event)],
        capture_output=True,
        check=False,
        timeout=60,
        env={"PYTHONIOENCODING": "ascii", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.decode("utf-8"))["extra"] == {"Title": "\u6807\u9898"}
