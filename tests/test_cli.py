"""The `vod-events` dispatcher: help, unknown commands, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vod_events import cli


def test_help_lists_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: vod-events COMMAND")


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    assert "usage:" in capsys.readouterr().out


def test_unknown_command_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "vod-events"
    done = subprocess.run([str(script), "--help"], check=False, capture_output=True, text=True)
    assert done.returncode == 0
    assert "commands:" in done.stdout
