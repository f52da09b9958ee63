"""`vod-events send`: send each file's content as one message to an MNS queue.

Works against the local server and the real service alike. Files go in batches of up to 16
(BatchSendMessage, through `MNSTransport.send_batch`). Bodies are sent exactly as they are
in the file; `--base64` sends the Base64 of the file's bytes instead, which is also how to
send a file that is not UTF-8 text. One line per file is printed: `PATH<TAB>MESSAGE_ID`.

Credentials: `--access-key-id` / `--access-key-secret`, else ALIBABA_CLOUD_ACCESS_KEY_ID /
_SECRET (and ALIBABA_CLOUD_SECURITY_TOKEN), resolved by `vod_events.config.credentials`.
The secret is never printed.

Exit codes: 0 every file sent; 1 otherwise, after printing the files that were sent.
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path

from vod_events.config.credentials import (
    ENV_ACCESS_KEY_ID,
    ENV_ACCESS_KEY_SECRET,
    Credentials,
    how_to_supply,
    resolve,
)
from vod_events.transports import TransportError

PROG = "vod-events send"


class SendError(Exception):
    """A failure to report in one line, without a traceback."""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the command's options to `parser`."""
    parser.add_argument(
        "--endpoint",
        required=True,
        help="MNS endpoint, e.g. http://127.0.0.1:9876 or https://<account>.mns.<region>.aliyuncs.com",
    )
    parser.add_argument("--queue", required=True, help="queue to send to")
    parser.add_argument(
        "--base64", action="store_true", help="send the Base64 of each file's bytes"
    )
    parser.add_argument("--access-key-id", help=f"AccessKey id (default: ${ENV_ACCESS_KEY_ID})")
    parser.add_argument(
        "--access-key-secret", help=f"AccessKey secret (default: ${ENV_ACCESS_KEY_SECRET})"
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="one message per file")


def run(args: argparse.Namespace) -> int:
    """Send the files; 0 if all were sent, 1 otherwise (after printing what was sent)."""
    try:
        credentials = _credentials(args)
        if not args.endpoint.startswith(("http://", "https://")):
            raise SendError(f"endpoint must start with http:// or https://, got {args.endpoint!r}")
        bodies = [(path, _body(Path(path), args.base64)) for path in args.files]
        _send(args.endpoint, args.queue, credentials, bodies)
    except SendError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    return 0


def _credentials(args: argparse.Namespace) -> Credentials:
    credentials = resolve(flags=Credentials(args.access_key_id or "", args.access_key_secret or ""))
    if not credentials.has_access_key:
        raise SendError(
            f"no credentials: {how_to_supply(flags=True)} (any non-empty pair works with a "
            "local server started without keys)"
        )
    return credentials


def _body(path: Path, as_base64: bool) -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SendError(f"cannot read {path}: {error.strerror or error}") from None
    if not data:
        raise SendError(f"{path} is empty; MNS does not accept empty messages")
    if as_base64:
        return base64.b64encode(data).decode("ascii")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SendError(f"{path} is not UTF-8 text; send it with --base64") from None


def _send(
    endpoint: str, queue: str, credentials: Credentials, bodies: list[tuple[str, str]]
) -> None:
    """Send in batches, printing each file's message id as soon as its batch is sent."""
    from vod_events.transports.mns import BATCH_SIZE, MNSTransport, Unreachable

    transport = MNSTransport(
        endpoint.rstrip("/"),
        queue,
        access_key_id=credentials.access_key_id,
        access_key_secret=credentials.access_key_secret,
        security_token=credentials.security_token,
    )
    try:
        for start in range(0, len(bodies), BATCH_SIZE):
            batch = bodies[start : start + BATCH_SIZE]
            try:
                ids = transport.send_batch([body for _, body in batch])
            except Unreachable as error:
                raise SendError(f"cannot talk to the endpoint: {error.code} ({error})") from None
            except TransportError as error:
                raise SendError(f"the service refused the batch: {error}") from None
            for (path, _), message_id in zip(batch, ids, strict=True):
                print(f"{path}\t{message_id}", flush=True)
    finally:
        transport.close()
