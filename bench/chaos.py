"""The chaos suite: prove that nothing is lost and nothing is done twice.

    .venv/bin/python bench/chaos.py --events 3000 --kills 30 [--replicas 2 --dedupe redis]

Against the local MNS server with faults injected (failed requests, dropped connections,
added latency), it enqueues thousands of distinct events plus poison bodies, then runs the
daemon as real processes (`python -m vod_events.consume`) with a handler that records every
call, SIGKILLs them at random moments many times, restarts them, and finally lets one round
drain the queue and stop with SIGTERM. Then it accounts for every message:

    handled at least once + dead-lettered poison = enqueued, lost = 0, queue left empty,
    and it counts duplicate handler runs (possible only if a kill lands between a handler's
    return and the idempotency store recording it).

`tests/test_chaos.py` runs a short version of it in CI.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from vod_events.mns_server import LocalMNSServer
from vod_events.transports.mns import MNSTransport

QUEUE = "chaos"
KEY_ID, SECRET = "chaos-key", "chaos-secret"
HERE = Path(__file__).resolve().parent
HANDLER = "chaos_handler:record"


def poison_bodies() -> list[str]:
    """Bodies that can never become an event, one of each kind the decoder refuses."""
    truncated = json.dumps({"EventType": "FileUploadComplete", "VideoId": "v", "Status": "x"})
    bad_ai = {
        "EventType": "AIVideoTagComplete",
        "JobId": "poison-job",
        "MediaId": "m",
        "Status": "success",
        "EventTime": "2026-01-01T00:00:00Z",
        "Data": "{not json",
    }
    return [
        "not json at all",
        "null",
        "[1, 2, 3]",
        "{}",
        '{"EventType": 42}',
        truncated[:-7],
        base64.b64encode(b"\x00\xff binary garbage").decode(),
        "<html><body>502 Bad Gateway</body></html>",
        "<Notification><Message>not an event</Message></Notification>",
        json.dumps(bad_ai),
    ]


def event(i: int) -> str:
    """A distinct, valid event per index (mixed types and encodings, as VOD sends them)."""
    body = {
        "EventTime": "2026-11-22T08:00:00:123Z",
        "EventType": "AIMediaDNAComplete" if i % 2 else "FileUploadComplete",
        "JobId": f"chaos-job-{i}",
        "MediaId": f"chaos-media-{i}",
        "VideoId": f"chaos-media-{i}",
        "Status": "success",
        "Data": json.dumps({"VideoDNA": []}),
    }
    text = json.dumps(body)
    return base64.b64encode(text.encode()).decode() if i % 3 == 0 else text


@dataclass
class ChaosReport:
    enqueued_events: int
    enqueued_poison: int
    kills: int
    handled_under_kills: int  # distinct events done before the final, unkilled round
    handled_at_least_once: int
    lost: int
    duplicate_handler_runs: int
    dead_lettered_poison: int
    poison_without_reason: int
    dead_lettered_events: int
    queue_left: int
    final_exit_codes: list[int]
    seconds: float

    @property
    def ok(self) -> bool:
        return (
            self.lost == 0
            and self.dead_lettered_poison == self.enqueued_poison
            and self.poison_without_reason == 0
            and self.dead_lettered_events == 0
            and self.queue_left == 0
            and all(code == 0 for code in self.final_exit_codes)
        )


def write_config(work: Path, endpoint: str, dedupe: str, redis_url: str) -> Path:
    dedupe_lines = [f'backend = "{dedupe}"', "claim_ttl = 4.0"]
    if dedupe == "redis":
        dedupe_lines.append(f'url = "{redis_url}"')
    else:
        dedupe_lines.append(f'path = "{work / "dedupe.sqlite3"}"')
    text = "\n".join(
        [
            "[mns]",
            f'endpoint = "{endpoint}"',
            f'queue = "{QUEUE}"',
            "[consumer]",
            "pollers = 2",
            "workers = 8",
            "wait_seconds = 2",
            "shutdown_timeout = 20",
            "max_deliveries = 1000",  # kills re-deliver a lot: that must not dead-letter events
            "[retry]",
            "redelivery_initial = 1",
            "redelivery_max = 2",
            "[dedupe]",
            *dedupe_lines,
            "[dead_letter]",
            f'dir = "{work / "dead-letters"}"',
            "[state]",
            f'dir = "{work / "state"}"',
            "[log]",
            'level = "error"',
            'format = "json"',
            "[[handlers]]",
            'events = ["*"]',
            f'call = "{HANDLER}"',
        ]
    )
    path = work / "chaos.toml"
    path.write_text(text + "\n")
    return path


def forget_dedupe_keys(
    redis_url: str, bodies: Sequence[str], message_ids: Sequence[str] = ()
) -> None:
    """Delete the Redis keys the daemons write for these bodies and messages, and no others:
    no FLUSHDB, the database may hold anyone's data.

    The daemon's config cannot set RedisStore's key prefix (a unique prefix per run would do
    better), so the keys are the default prefix's: one claim per (event, handler), as the
    processor names it, and one deferral count per message.
    """
    import inspect

    import redis

    from vod_events.decoder import decode
    from vod_events.dedupe import RedisStore
    from vod_events.errors import DecodeError
    from vod_events.router import handler_name, import_handler

    prefix = inspect.signature(RedisStore).parameters["prefix"].default
    handler = handler_name(import_handler(HANDLER))
    keys: list[str] = [f"{prefix}deferrals:{message_id}" for message_id in message_ids]
    for body in bodies:
        try:
            keys.append(f"{prefix}{decode(body).dedupe_key}|{handler}")
        except DecodeError:
            continue  # poison: never claimed
    client = redis.Redis.from_url(redis_url)
    try:
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start : start + 1000])
    finally:
        client.close()


def start_daemon(config: Path, calls: Path, handler_ms: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CHAOS_HANDLER_MS": str(handler_ms),
        "PYTHONPATH": str(HERE),
        "CHAOS_CALLS": str(calls),
        "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "vod_events.consume", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def queue_left(transport: MNSTransport) -> int:
    info = transport.queue_info()
    return info.active_messages + info.inactive_messages + info.delay_messages


def handled_jobs(calls: Path) -> Counter[str]:
    if not calls.exists():
        return Counter()
    return Counter(line.split("\t", 1)[0] for line in calls.read_text().splitlines() if line)


def run_chaos(
    *,
    events: int,
    kills: int,
    replicas: int = 1,
    dedupe: str = "sqlite",
    fault_rate: float = 0.05,
    latency_ms: int = 2,
    seed: int = 7,
    redis_url: str = "redis://127.0.0.1:6379/14",
    drain_timeout: float = 120.0,
    handler_ms: int = 20,
    work: Path | None = None,
) -> ChaosReport:
    rng = random.Random(seed)
    work = work or Path(tempfile.mkdtemp(prefix="vod-events-chaos-"))
    calls = work / "calls.tsv"
    began = time.monotonic()
    poison = poison_bodies()
    with LocalMNSServer(access_key_id=KEY_ID, access_key_secret=SECRET, seed=seed) as server:
        server.create_queue(QUEUE, visibility_timeout=2)
        admin = MNSTransport(server.endpoint, QUEUE, access_key_id=KEY_ID, access_key_secret=SECRET)
        bodies = [event(i) for i in range(events)] + poison
        rng.shuffle(bodies)
        if dedupe == "redis":  # an earlier run's completions would skip these events
            forget_dedupe_keys(redis_url, bodies)
        message_ids = [admin.send(body) for body in bodies]
        config = write_config(work, server.endpoint, dedupe, redis_url)
        server.set_faults(fault_rate=fault_rate, latency_ms=latency_ms)

        for _ in range(kills):
            daemons = [start_daemon(config, calls, handler_ms) for _ in range(replicas)]
            time.sleep(rng.uniform(0.4, 1.6))
            for daemon in daemons:
                daemon.send_signal(signal.SIGKILL)
                daemon.wait()

        handled_under_kills = len(handled_jobs(calls))
        daemons = [start_daemon(config, calls, handler_ms) for _ in range(replicas)]
        time.sleep(3)  # let the final round start up before it may be asked to stop
        deadline = time.monotonic() + drain_timeout
        dead_dir = work / "dead-letters"
        while time.monotonic() < deadline:
            done = len(handled_jobs(calls)) == events
            dead = {json.loads(p.read_text())["body"] for p in dead_dir.glob("[0-9]*.json")}
            if done and set(poison) <= dead:
                break
            time.sleep(0.5)
        for daemon in daemons:
            daemon.send_signal(signal.SIGTERM)
        codes = [daemon.wait(timeout=60) for daemon in daemons]
        server.set_faults(fault_rate=0.0, latency_ms=0)
        # Deletes of the last handled messages may have just failed: they come back and are
        # deleted as duplicates by a short clean-up round without faults.
        if queue_left(admin) > 0:
            cleaner = start_daemon(config, calls, handler_ms)
            end = time.monotonic() + 30
            while queue_left(admin) > 0 and time.monotonic() < end:
                time.sleep(0.5)
            cleaner.send_signal(signal.SIGTERM)
            codes.append(cleaner.wait(timeout=60))
        left = queue_left(admin)
    if dedupe == "redis":
        forget_dedupe_keys(redis_url, bodies, message_ids)

    runs = handled_jobs(calls)
    letters = [json.loads(p.read_text()) for p in (work / "dead-letters").glob("[0-9]*.json")]
    poison_set = set(poison)
    poison_lettered = {letter["body"] for letter in letters if letter["body"] in poison_set}
    return ChaosReport(
        enqueued_events=events,
        enqueued_poison=len(poison),
        kills=kills * replicas,
        handled_under_kills=handled_under_kills,
        handled_at_least_once=len(runs),
        lost=events - len(runs),
        duplicate_handler_runs=sum(count - 1 for count in runs.values()),
        dead_lettered_poison=len(poison_lettered),
        poison_without_reason=sum(1 for letter in letters if not letter.get("reason")),
        dead_lettered_events=sum(1 for letter in letters if letter["body"] not in poison_set),
        queue_left=left,
        final_exit_codes=codes,
        seconds=round(time.monotonic() - began, 1),
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--dedupe", choices=("sqlite", "redis"), default="sqlite")
    parser.add_argument("--fault-rate", type=float, default=0.05)
    parser.add_argument("--latency-ms", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--handler-ms", type=int, default=20, help="mean handler time")
    args = parser.parse_args()
    report = run_chaos(
        events=args.events,
        kills=args.kills,
        replicas=args.replicas,
        dedupe=args.dedupe,
        fault_rate=args.fault_rate,
        latency_ms=args.latency_ms,
        seed=args.seed,
        drain_timeout=600,
        handler_ms=args.handler_ms,
    )
    for name, value in asdict(report).items():
        print(f"{name:>24}: {value}")
    print(f"{'verdict':>24}: {'OK' if report.ok else 'FAILED'}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
