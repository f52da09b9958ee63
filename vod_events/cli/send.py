"""`vod-events send`: send each file's content as one message to an MNS queue.

Works against the local server and the real service alike. Files go in batches of up to 16
(BatchSendMessage). Bodies are sent exactly as they are in the file (the queue is opened
with `set_encoding(False)`); `--base64` sends the Base64 of the file's bytes instead, which
is also how to send a file that is not UTF-8 text. One line per file is printed:
`PATH<TAB>MESSAGE_ID`.

Credentials come from `--access-key-id`/`--access-key-secret` or, failing that, from
ALIBABA_CLOUD_ACCESS_KEY_ID / ALIBABA_CLOUD_ACCESS_KEY_SECRET. The secret is never printed.
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PROG = "vod-events send"
BATCH_SIZE = 16
ENV_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"  # noqa: S105 - a variable name, not a secret


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
    parser.add_argument("--access-key-id", help=f"AccessKey id (default: ${ENV_KEY_ID})")
    parser.add_argument(
        "--access-key-secret", help=f"AccessKey secret (default: ${ENV_KEY_SECRET})"
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="one message per file")


def run(args: argparse.Namespace) -> int:
    """Send the files; 0 if all were sent, 1 otherwise (after printing what was sent)."""
    try:
        key_id, key_secret = _credentials(args)
        if not args.endpoint.startswith(("http://", "https://")):
            raise SendError(f"endpoint must start with http:// or https://, got {args.endpoint!r}")
        bodies = [(path, _body(Path(path), args.base64)) for path in args.files]
        queue = _open_queue(args.endpoint, args.queue, key_id, key_secret)
        for start in range(0, len(bodies), BATCH_SIZE):
            batch = bodies[start : start + BATCH_SIZE]
            for (path, _), message_id in zip(
                batch, _send_batch(queue, [body for _, body in batch]), strict=True
            ):
                print(f"{path}\t{message_id}", flush=True)
    except SendError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1
    return 0


def _credentials(args: argparse.Namespace) -> tuple[str, str]:
    key_id = args.access_key_id or os.environ.get(ENV_KEY_ID, "")
    key_secret = args.access_key_secret or os.environ.get(ENV_KEY_SECRET, "")
    if not key_id or not key_secret:
        raise SendError(
            "no credentials: pass --access-key-id and --access-key-secret, or set "
            f"{ENV_KEY_ID} and {ENV_KEY_SECRET} (any non-empty pair works with a local "
            "server started without keys)"
        )
    return key_id, key_secret


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


def _open_queue(endpoint: str, queue_name: str, key_id: str, key_secret: str) -> Any:
    from mns.account import Account

    queue = Account(endpoint.rstrip("/"), key_id, key_secret).get_queue(queue_name)
    queue.set_encoding(False)  # bodies go as they are; --base64 encoded them already
    return queue


def _send_batch(queue: Any, bodies: Sequence[str]) -> list[str]:
    from mns.mns_exception import MNSClientException, MNSServerException
    from mns.queue import Message

    try:
        sent = queue.batch_send_message([Message(body) for body in bodies])
    except MNSServerException as error:
        raise SendError(
            f"the service refused the batch: {error.type}: {error.message} "
            f"(request id {error.request_id})"
        ) from None
    except MNSClientException as error:
        raise SendError(f"cannot talk to the endpoint: {error.type}: {error.message}") from None
    return [str(message.message_id) for message in sent]
