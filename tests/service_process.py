"""A real `python -m vod_events.consume` process for end-to-end tests, with its output kept.

stderr (the log) and stdout are read by background threads as the process writes them, so
a test can wait for a log line while the daemon runs and grep everything it wrote after.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

TESTS = Path(__file__).parent


class Daemon:
    """One daemon process; use as a context manager so it is always killed."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        environ = {**os.environ, "PYTHONPATH": str(TESTS), **env}
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            if name not in env:
                environ.pop(name, None)  # only what the test sets
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vod_events.consume", "--config", str(config)],
            env=environ,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.stderr_lines: list[str] = []
        self.stdout_lines: list[str] = []
        assert self.process.stderr is not None and self.process.stdout is not None
        self._readers = [
            threading.Thread(target=_drain, args=(self.process.stderr, self.stderr_lines)),
            threading.Thread(target=_drain, args=(self.process.stdout, self.stdout_lines)),
        ]
        for reader in self._readers:
            reader.start()

    @property
    def output(self) -> str:
        """Everything written so far, stderr then stdout."""
        return "".join(self.stderr_lines) + "".join(self.stdout_lines)

    def log_events(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far, parsed."""
        return [json.loads(line) for line in list(self.stderr_lines) if line.startswith("{")]

    def wait(self, timeout: float = 30.0) -> int:
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *_: object) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.wait()


def _drain(stream: IO[str], into: list[str]) -> None:
    for line in stream:
        into.append(line)
