"""`vod-events parse [FILE ...]`: decode event payloads and print them as JSON Lines.

Each FILE holds one message body as it would arrive (raw JSON, Base64, or a topic envelope);
``-`` or no FILE at all reads one body from standard input. For each input, one line of JSON
(see ``vod_events.serialize``) goes to standard output. An input that cannot be read or
decoded is reported on standard error as ``FILE: reason``; the exit status is then 2
(0 when every input decoded).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vod_events.decoder import decode
from vod_events.errors import DecodeError
from vod_events.serialize import event_to_json

__all__ = ["configure", "run"]

STDIN = "-"
_STDIN_NAME = "<stdin>"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments."""
    parser.add_argument(
        "files",
        nargs="*",
        metavar="FILE",
        help="a file holding one message body; '-' or none: standard input",
    )


def _read(name: str) -> bytes:
    return sys.stdin.buffer.read() if name == STDIN else Path(name).read_bytes()


def _write_line(line: str) -> None:
    """Write one output line as UTF-8 (what JSON Lines mandates), whatever the locale."""
    sys.stdout.flush()
    sys.stdout.buffer.write(line.encode("utf-8") + b"\n")


def run(args: argparse.Namespace) -> int:
    """Decode every input; return 0 if all decoded, 2 if any failed."""
    names: list[str] = args.files or [STDIN]
    failed = 0
    for name in names:
        shown = _STDIN_NAME if name == STDIN else name
        try:
            body = _read(name)
        except OSError as exc:
            print(f"{shown}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            failed += 1
            continue
        try:
            event = decode(body)
        except DecodeError as exc:
            print(f"{shown}: {exc.reason}", file=sys.stderr)
            failed += 1
            continue
        _write_line(event_to_json(event))
    sys.stdout.buffer.flush()
    return 2 if failed else 0
