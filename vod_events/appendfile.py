"""A file that many threads append whole lines to, each in the OS's hands when the call returns.

`AppendFile.append(data)` hands `data` to the kernel in one write(2) on a file opened with
O_APPEND. The kernel puts each write at the end of the file whole, so lines appended by
concurrent threads never interleave, and data whose append returned is in the page cache: it
survives a crash of this process (not of the machine: nothing here calls fsync).

Why not just `FileIO.write`: it releases the GIL around write(2). In the daemon other threads
are nearly always waiting for the GIL, so each release hands it over and the writer then
waits to get it back: two thread switches for a call that takes a few microseconds. With the
`jsonl` handler at the defaults that was ~50 µs of CPU per message, against ~9 µs for the
handler's own work. So write(2) is called through `ctypes.PyDLL`, which keeps the GIL for
the call, where that is safe.

While such a write blocks, every thread waits (the heartbeat too). Hence the limits:
- only a regular file on a local file system (`LOCAL_FILE_SYSTEMS`, read from
  /proc/self/mountinfo) is written with the GIL kept. A network or FUSE file system can hang
  a write for minutes, and a pipe, terminal or device (`path = "/dev/stdout"`) can block for
  as long as its reader likes: their writes always release it;
- a write that takes longer than `SLOW_WRITE_SECONDS` (the kernel throttling dirty pages, a
  busy disk) makes the file's writes release the GIL for the next `SLOW_PAUSE_SECONDS`, with
  a warning in the log.

Invariant: `close()` only after every `append` has returned (as for any file: a write through
a closed descriptor's number could reach a file opened since).
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from time import monotonic
from typing import Final

import structlog

log = structlog.get_logger("vod_events.appendfile")

SLOW_WRITE_SECONDS: Final = 0.002  # a page-cache write of a line takes microseconds
SLOW_PAUSE_SECONDS: Final = 60.0
LOCAL_FILE_SYSTEMS: Final = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "zfs", "bcachefs", "tmpfs", "ramfs"}
    | {"overlay", "jfs", "reiserfs"}  # overlay: a container's own layer
)
MOUNTINFO: Final = Path("/proc/self/mountinfo")
_OCTAL: Final = re.compile(r"\\([0-7]{3})")

_RawWrite = Callable[[int, bytes, int], int]


def _raw_write() -> _RawWrite | None:
    """write(2) through ctypes.PyDLL (the GIL kept); None where there is no C library to
    load this way (Windows)."""
    try:
        write = ctypes.PyDLL(None, use_errno=True).write
    except (OSError, AttributeError, TypeError):
        return None
    write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
    write.restype = ctypes.c_ssize_t
    return write


_WRITE_HOLDING_GIL: Final = _raw_write()


def file_system_type(path: str, mountinfo: str) -> str | None:
    """The type of the file system holding `path` (absolute, symlinks resolved), from the
    text of /proc/self/mountinfo: that of the longest mount point above it."""
    best, kind = "", None
    for line in mountinfo.splitlines():
        fields, _, after = line.partition(" - ")
        parts = fields.split(" ")
        if len(parts) < 5 or not after:
            continue
        point = _OCTAL.sub(lambda m: chr(int(m[1], 8)), parts[4])  # \040 is a space
        inside = path == point or path.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):  # the later of equal mounts is on top
            best, kind = point, after.split(" ")[0]
    return kind


def _on_local_file_system(path: Path) -> bool:
    try:
        mountinfo = MOUNTINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False  # not Linux, or no /proc: nothing says the disk is local
    return file_system_type(str(path.resolve()), mountinfo) in LOCAL_FILE_SYSTEMS


class AppendFile:
    """`path` opened for appending (created if missing, with its parent directories)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("ab", buffering=0)  # O_APPEND, no buffer of ours
        regular = stat.S_ISREG(os.fstat(self._file.fileno()).st_mode)
        self._may_hold = (
            _WRITE_HOLDING_GIL is not None and regular and _on_local_file_system(self.path)
        )
        # set by whichever thread saw a slow write; a race only moves it a few µs
        self._release_until = 0.0

    @property
    def holds_gil(self) -> bool:
        """Whether the next append keeps the GIL during its write(2)."""
        return self._may_hold and monotonic() >= self._release_until

    def append(self, data: bytes) -> None:
        """Write `data` at the end of the file in one write(2), or raise OSError."""
        started = monotonic()
        if self._may_hold and started >= self._release_until:
            written = self._write_holding_gil(data)
            took = monotonic() - started
            if took > SLOW_WRITE_SECONDS:
                self._release_until = started + took + SLOW_PAUSE_SECONDS
                log.warning(
                    "slow_append",
                    path=str(self.path),
                    seconds=round(took, 4),
                    detail=f"the next {SLOW_PAUSE_SECONDS:g} s of writes to this file let "
                    "other threads run while they wait",
                )
        else:
            written = self._write_releasing_gil(data)
        if written != len(data):  # a regular file takes a write whole, or fails (disk full)
            raise OSError(f"{self.path}: only {written} of {len(data)} bytes written")

    def _write_holding_gil(self, data: bytes) -> int:
        assert _WRITE_HOLDING_GIL is not None
        fd = self._file.fileno()  # ValueError once closed, as FileIO.write would raise
        while True:
            written = _WRITE_HOLDING_GIL(fd, data, len(data))
            if written >= 0:
                return written
            code = ctypes.get_errno()
            if code != errno.EINTR:
                raise OSError(code, os.strerror(code), str(self.path))

    def _write_releasing_gil(self, data: bytes) -> int:
        try:
            return self._file.write(data) or 0  # None only for a non-blocking file
        except OSError as exc:
            if exc.filename is not None or exc.errno is None:
                raise
            raise OSError(exc.errno, exc.strerror, str(self.path)) from exc

    def close(self) -> None:
        self._file.close()
