"""`vod-events demo`: the daemon against an embedded local MNS server, with real payloads.

It starts the local MNS server, sends every sample payload that ships with the package (the
seeds' AI results among them, raw and again Base64-encoded, as VOD may send either) plus one
poison body, and runs the real consumer with two handlers: one printing each event, and the
built-in `jsonl` handler. The Base64 copies decode to the same events, so the idempotency
store skips them; the poison body is dead-lettered with its reason. It stops once every
message is done (or runs on with `--forever`, for `vod-events send` to feed it).

One poller and one worker, so that every run prints the same lines in the same order and
the same counts: with several workers, two copies of one event can be handled at once, and
which copy runs which of the two handlers (so whether a copy counts as "handled" or as a
"duplicate") would depend on thread timing. Each handler still runs once per event either
way; `tests/test_demo.py` runs the command 20 times and checks the summary every time.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

from vod_events import samples
from vod_events.config import from_dict
from vod_events.events import (
    AIMediaAuditComplete,
    AIMediaDNAComplete,
    AIVideoTagComplete,
    VodEvent,
)
from vod_events.mns_server import LocalMNSServer
from vod_events.router import HandlerContext
from vod_events.service import logs
from vod_events.service.assemble import build_consumer, build_router
from vod_events.transports.mns import MNSTransport

QUEUE = "vod-events"
POISON = "<html>502 Bad Gateway</html>"
TIMEOUT = 30  # seconds for every message to be done (it takes well under one)


def describe(event: VodEvent) -> str:
    """One human line about an event, with the gist of an AI result."""
    head = f"{event.event_type:<32} {event.status or '-':<7} media={event.media_id or '-'}"
    if isinstance(event, AIVideoTagComplete) and event.result is not None:
        tags = [t.tag for t in [*event.result.person, *event.result.keyword]][:5]
        return f"{head}  tags={', '.join(tags)}"
    if isinstance(event, AIMediaDNAComplete) and event.result is not None:
        matches = [f"{m.primary_key}@{m.similarity}" for m in event.result.matches]
        return f"{head}  duplicates={', '.join(matches) or 'none'}"
    if isinstance(event, AIMediaAuditComplete) and event.result is not None:
        return f"{head}  suggestion={event.result.suggestion} labels={event.result.labels}"
    if event.error_code:
        return f"{head}  error={event.error_code}: {event.error_message}"
    return head


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="local MNS port (default: any free)")
    parser.add_argument("--state-dir", help="where dedupe state, dead letters and events go")
    parser.add_argument("--forever", action="store_true", help="keep running after the samples")


def run(args: argparse.Namespace) -> int:
    state = Path(args.state_dir or tempfile.mkdtemp(prefix="vod-events-demo-"))
    logs.configure("warning", "console")
    printed = threading.Lock()

    def show(event: VodEvent, ctx: HandlerContext) -> None:
        with printed:
            print(f"  handled  {describe(event)}", flush=True)

    key_id, secret = "demo-key-id", "demo-key-secret"  # the server checks signatures
    with LocalMNSServer(
        port=args.port, queues=(QUEUE,), access_key_id=key_id, access_key_secret=secret
    ) as server:
        config = from_dict(
            {
                "mns": {"endpoint": server.endpoint, "queue": QUEUE},
                "consumer": {"pollers": 1, "workers": 1, "wait_seconds": 2},
                "state": {"dir": str(state)},
                "handlers": [{"type": "jsonl", "path": str(state / "events.jsonl")}],
            },
            "<demo>",
            {"ALIBABA_CLOUD_ACCESS_KEY_ID": key_id, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": secret},
        )
        router = build_router(config)  # the configured jsonl handler...
        router.add(show, name="demo:show")  # ...and one that prints
        consumer = build_consumer(config, router=router)

        sender = MNSTransport(
            server.endpoint, QUEUE, access_key_id=key_id, access_key_secret=secret
        )
        payloads = samples.payloads()
        for body in payloads.values():
            sender.send(body)
        seeds = [n for n in payloads if n.startswith("AI") and n.count(".") == 1]
        for name in seeds:  # the same AI events again, Base64-encoded: duplicates
            sender.send(base64.b64encode(payloads[name].encode()).decode())
        sender.send(POISON)
        total = len(payloads) + len(seeds) + 1
        sender.close()

        print(f"local MNS server at {server.endpoint}, queue {QUEUE!r}: {total} messages sent")
        print(f"  ({len(payloads)} sample events, {len(seeds)} Base64 duplicates, 1 poison body)")
        if consumer.start() != 0:
            return 1
        deadline = time.monotonic() + TIMEOUT
        while args.forever or time.monotonic() < deadline:
            counters = consumer.stats.snapshot().counters
            if not args.forever and counters["deleted"] >= total:
                break
            time.sleep(0.1)
        code = consumer.shutdown()
        counters = consumer.stats.snapshot().counters
        print()
        print(
            "done: {received} received, {handled} handled, {duplicates} duplicates skipped, "
            "{dead_lettered} dead-lettered, {deleted} deleted".format(**counters)
        )
        letters = sorted(config.dead_letter_dir.glob("*.json"))
        for letter in letters:
            reason = json.loads(letter.read_text())["reason"]
            print(f"  dead letter {letter.name}: {reason}")
        print(f"events written as JSON lines to {state / 'events.jsonl'}")
        if counters["deleted"] < total:
            print(
                f"vod-events demo: only {counters['deleted']} of {total} messages were done "
                f"within {TIMEOUT} s",
                file=sys.stderr,
            )
            return 1
        return code


def main() -> int:
    parser = argparse.ArgumentParser(prog="vod-events demo")
    configure(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
