"""`AppendFile`: which files are written with the GIL kept (regular files on local file
systems), the pause after a slow write, and errors that name the file (a real file size limit
in a child process)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from pytest_mock import MockerFixture
from structlog.testing import capture_logs

from vod_events import appendfile
from vod_events.appendfile import AppendFile


def assert_appends_releasing_the_gil(path: Path) -> None:
    file = AppendFile(path)
    assert not file.holds_gil
    file.append(b"line\n")
    file.close()
    assert path.read_bytes() == b"line\n"


def test_a_regular_file_is_written_holding_the_gil(tmp_path: Path) -> None:
    file = AppendFile(tmp_path / "deep" / "out.jsonl")  # parents made
    try:
        assert file.holds_gil
        file.append(b"one\n")
        file.append(b"two\n")
        assert (tmp_path / "deep" / "out.jsonl").read_bytes() == b"one\ntwo\n"
    finally:
        file.close()


def test_appends_to_an_existing_file_never_truncate_it(tmp_path: Path) -> None:
    (tmp_path / "out.jsonl").write_bytes(b"before\n")
    file = AppendFile(tmp_path / "out.jsonl")
    file.append(b"after\n")
    file.close()
    assert (tmp_path / "out.jsonl").read_bytes() == b"before\nafter\n"


def test_a_pipe_is_written_letting_other_threads_run(tmp_path: Path) -> None:
    """A reader can stall a pipe as long as it likes: its writes must not hold the GIL."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    file = AppendFile(fifo)
    assert not file.holds_gil
    file.append(b"through the pipe\n")
    file.close()
    reader.join(timeout=10)
    assert received == [b"through the pipe\n"]


def test_a_device_is_written_letting_other_threads_run() -> None:
    file = AppendFile("/dev/null")
    try:
        assert not file.holds_gil
        file.append(b"gone\n")
    finally:
        file.close()


class Clock:
    """`monotonic` for the module: the readings given, then `after` for good."""

    def __init__(self, *readings: float, after: float) -> None:
        self.readings = list(readings)
        self.after = after

    def __call__(self) -> float:
        return self.readings.pop(0) if self.readings else self.after


def test_a_slow_write_lets_other_threads_run_for_a_while(
    tmp_path: Path, mocker: MockerFixture
) -> None:
    file = AppendFile(tmp_path / "out.jsonl")
    clock = Clock(100.0, 100.5, after=101.0)  # the write took 0.5 s
    mocker.patch("vod_events.appendfile.monotonic", clock)
    with capture_logs() as logs:
        file.append(b"slow\n")
    assert not file.holds_gil
    file.append(b"next\n")
    clock.after = 100.5 + appendfile.SLOW_PAUSE_SECONDS + 0.1
    assert file.holds_gil  # the pause is over
    file.append(b"held again\n")
    file.close()
    assert (tmp_path / "out.jsonl").read_bytes() == b"slow\nnext\nheld again\n"
    (warning,) = [entry for entry in logs if entry["event"] == "slow_append"]
    assert warning["log_level"] == "warning"
    assert warning["path"] == str(tmp_path / "out.jsonl")
    assert warning["seconds"] == 0.5


def test_a_file_on_a_network_file_system_is_written_letting_other_threads_run(
    tmp_path: Path, mocker: MockerFixture
) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        f"1 0 8:1 / / rw - ext4 /dev/vda rw\n2 1 0:50 / {tmp_path} rw - nfs4 server:/x rw\n"
    )
    mocker.patch.object(appendfile, "MOUNTINFO", mountinfo)
    assert_appends_releasing_the_gil(tmp_path / "out.jsonl")


MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 27 0:40 / /mnt/media rw shared:5 - nfs4 nas:/media rw,vers=4.2
31 30 0:41 / /mnt/media/cache rw - tmpfs tmpfs rw
32 27 0:42 / /srv/my\\040events rw - fuse.sshfs host: rw
33 27 0:43 / /mnt/media rw - ext4 /dev/vdb rw
"""


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/", "ext4"),
        ("/var/lib/vod-events/events.jsonl", "ext4"),
        ("/proc/self/status", "proc"),
        ("/mnt/media/cache/events.jsonl", "tmpfs"),
        ("/mnt/mediaX/events.jsonl", "ext4"),  # not under /mnt/media
        ("/srv/my events/out.jsonl", "fuse.sshfs"),  # \040 in mountinfo is a space
        ("/mnt/media/events.jsonl", "ext4"),  # mounted over the nfs4 one: the later wins
    ],
)
def test_the_file_system_of_a_path_is_that_of_its_longest_mount_point(path: str, kind: str) -> None:
    assert appendfile.file_system_type(path, MOUNTINFO) == kind


def test_without_a_c_library_to_call_writes_release_the_gil(
    tmp_path: Path, mocker: MockerFixture
) -> None:
    mocker.patch.object(appendfile, "_WRITE_HOLDING_GIL", None)
    assert_appends_releasing_the_gil(tmp_path / "out.jsonl")


def test_an_append_after_close_raises() -> None:
    file = AppendFile("/dev/null")
    file.close()
    with pytest.raises(ValueError):
        file.append(b"late\n")


CHILD = """
import resource, signal, sys
from vod_events import appendfile
if sys.argv[2] == "releasing":
    appendfile._WRITE_HOLDING_GIL = None
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of the signal
resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))
file = appendfile.AppendFile(sys.argv[1])
assert file.holds_gil == (sys.argv[2] == "holding")
file.append(b"a" * 59 + b"\\n")
for attempt in range(2):
    try:
        file.append(b"b" * 59 + b"\\n")
    except OSError as exc:
        print(type(exc).__name__, exc.errno, exc)
"""


@pytest.mark.parametrize("mode", ["holding", "releasing"])
def test_a_short_or_failed_write_raises_naming_the_file(tmp_path: Path, mode: str) -> None:
    """Past the file size limit: first a short write (the rest of the limit), then EFBIG."""
    path = tmp_path / "out.jsonl"
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), mode],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    short, failed = run.stdout.splitlines()
    assert short == f"OSError None {path}: only 40 of 60 bytes written"
    assert failed.startswith("OSError 27 [Errno 27] File too large")
    assert str(path) in failed
    assert path.stat().st_size == 100
