"""`vod-events mns-server`: run the local MNS server until SIGINT or SIGTERM.

Prints `vod-events mns-server listening on http://HOST:PORT` (the real port, also with
`--port 0`) once it accepts connections, and exits 0 when stopped by a signal.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from types import FrameType

from vod_events.mns_server.server import LocalMNSServer

PROG = "vod-events mns-server"


def _dead_letter(text: str) -> tuple[str, str, int]:
    """SOURCE:TARGET:MAX_RECEIVE_COUNT -> (source, target, count)."""
    parts = text.split(":")
    if len(parts) != 3 or not all(parts):
        raise argparse.ArgumentTypeError(f"expected SOURCE:TARGET:MAX_RECEIVE_COUNT, got {text!r}")
    source, target, count = parts
    try:
        return source, target, int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"MAX_RECEIVE_COUNT must be a whole number, got {count!r}"
        ) from None


def _port(text: str) -> int:
    """A TCP port, 0 (any free one) to 65535."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be in 0..65535, got {port}")
    return port


def _non_negative(text: str) -> float:
    """A finite number >= 0 (no nan, no inf)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text!r}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the server's options to `parser`."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=_port, default=9876, help="port to listen on (0: any free port)"
    )
    parser.add_argument(
        "--queue",
        dest="queues",
        action="append",
        default=[],
        metavar="NAME",
        help="create this queue at start (repeatable)",
    )
    parser.add_argument(
        "--access-key-id", help="verify V2 signatures made with this AccessKey id..."
    )
    parser.add_argument(
        "--access-key-secret", help="...and this secret (without both, any signature passes)"
    )
    parser.add_argument(
        "--latency-ms",
        type=_non_negative,
        default=0.0,
        help="add this much latency to every request, like a network round trip",
    )
    parser.add_argument(
        "--fault-rate",
        type=_non_negative,
        default=0.0,
        help="fraction of requests that fail: half 500 InternalError, half a dropped connection",
    )
    parser.add_argument("--seed", type=int, help="seed for reproducible faults")
    parser.add_argument(
        "--max-long-polls",
        type=int,
        default=0,
        metavar="N",
        help="answer a long poll at once with MessageNotExist while N others wait, as MNS "
        "does per IP (default 0: no cap)",
    )
    parser.add_argument(
        "--dead-letter",
        dest="dead_letters",
        action="append",
        default=[],
        type=_dead_letter,
        metavar="SOURCE:TARGET:MAX_RECEIVE_COUNT",
        help="move messages of SOURCE received more than MAX_RECEIVE_COUNT times to TARGET "
        "(repeatable; both queues are created)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=30,
        metavar="N",
        help="VisibilityTimeout (s) of queues created without one (default: 30)",
    )


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; 0 on a clean stop, 1 if it cannot listen, 2 on bad
    options."""
    try:
        server = LocalMNSServer(
            host=args.host,
            port=args.port,
            queues=args.queues,
            access_key_id=args.access_key_id,
            access_key_secret=args.access_key_secret,
            latency_ms=args.latency_ms,
            fault_rate=args.fault_rate,
            seed=args.seed,
            max_long_polls=args.max_long_polls,
            dead_letter=args.dead_letters,
            visibility_timeout=args.visibility_timeout,
        )
    except ValueError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {
        signum: signal.signal(signum, request_stop) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        try:
            server.start()
        except OSError as error:
            print(
                f"{PROG}: cannot listen on {args.host}:{args.port}: {error.strerror or error}",
                file=sys.stderr,
            )
            return 1
        if not server.verifies_signatures:
            print(
                f"{PROG}: warning: no --access-key-id/--access-key-secret given, so request "
                "signatures are not verified (any well-formed Authorization is accepted)",
                file=sys.stderr,
                flush=True,
            )
        print(f"{PROG} listening on {server.endpoint}", flush=True)
        while not stop.wait(0.5):  # a timed wait lets the signal handler run promptly
            pass
        return 0
    finally:
        server.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
