"""Throughput of the local MNS server driven by the real aliyun-mns-sdk.

Producer threads batch-send 16 messages at a time; consumer threads batch-receive 16
(long poll) and batch-delete them, each thread with its own Account as the SDK requires.
The run ends when every message has been received and deleted.

The server runs in its own process, as it would beside a consumer. The baseline, measured
in the same run with the same clients, is a "canned" server: the same HTTP front answering
every request with a fixed, pre-encoded reply and no queue, no XML parsing and no signature
check. The ratio local/canned is the share of the clients' best possible rate that the real
server leaves them; the server's own CPU time per 1000 messages shows how far it is from
being the bottleneck.

    .venv/bin/python bench/bench_mns_server.py [--messages 16000] [--latency-ms 0 10]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType
from typing import Any

from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Message

from vod_events.mns_server import LocalMNSServer
from vod_events.mns_server.faults import FaultInjector
from vod_events.mns_server.httpd import HTTPServer, Request, Response
from vod_events.mns_server.model import MessageView, SentMessage, body_md5
from vod_events.mns_server.wire import encode_messages, encode_sent_batch

QUEUE = "bench"
KEY_ID, KEY_SECRET = "bench-id", "bench-secret"
BATCH = 16
# About the size of a VOD AI event notification.
BODY = (
    '{"EventTime":"2024-05-01T08:00:00Z","EventType":"AIMediaDNAComplete","JobId":'
    '"88c6ca184c0e47098a5b665e2****","MediaId":"3D3D12340d92c641401fab46a0b7****",'
    '"Status":"success","Data":"{\\"VideoDNAResult\\":{\\"VideoFrames\\":[{\\"Similarity\\":'
    '\\"0.99\\",\\"PrimaryVideo\\":{\\"MediaId\\":\\"a1b2\\",\\"Duration\\":\\"30\\"}}]}}",'
    '"UserData":"{\\"Extend\\":{\\"trace\\":\\"bench\\"}}"}'
)


# ------------------------------------------------------------------ the servers


def _canned_replies() -> tuple[bytes, bytes]:
    now = int(time.time() * 1000)
    sent = encode_sent_batch([SentMessage(f"ID-{i}", body_md5(BODY)) for i in range(BATCH)])
    received = encode_messages(
        [
            MessageView(
                message_id=f"ID-{i}",
                body=BODY,
                body_md5=body_md5(BODY),
                enqueue_time=now,
                first_dequeue_time=now,
                dequeue_count=1,
                priority=8,
                receipt_handle="1-" + "A" * 24,
                next_visible_time=now + 30000,
            )
            for i in range(BATCH)
        ]
    )
    return sent, received


async def _serve_canned(latency_ms: float, ports: Any, stop: EventType) -> None:
    sent, received = _canned_replies()

    async def canned(request: Request) -> Response:
        if request.method == "POST":
            return Response(201, sent)
        if request.method == "GET":
            return Response(200, received)
        return Response(204)

    http = HTTPServer(canned, FaultInjector(latency_ms=latency_ms))
    ports.put(await http.start("127.0.0.1", 0))
    while not stop.is_set():
        await asyncio.sleep(0.05)
    await http.close()


def _server_process(kind: str, latency_ms: float, ports: Any, stop: EventType) -> None:
    if kind == "canned":
        asyncio.run(_serve_canned(latency_ms, ports, stop))
        return
    with LocalMNSServer(
        queues=(QUEUE,),
        access_key_id=KEY_ID,
        access_key_secret=KEY_SECRET,
        latency_ms=latency_ms,
        visibility_timeout=60,
    ) as server:
        ports.put(server.port)
        stop.wait()


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux), or None where /proc is missing."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ the clients


@dataclass
class Result:
    """One phase: how many messages, how long, and the server's CPU time meanwhile."""

    messages: int
    seconds: float
    server_cpu_seconds: float | None

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    def cpu_per_1000(self) -> str:
        if self.server_cpu_seconds is None:
            return "n/a"
        return f"{1000 * self.server_cpu_seconds / self.messages:.3f} s"


def _open(endpoint: str) -> Any:
    queue = Account(endpoint, KEY_ID, KEY_SECRET).get_queue(QUEUE)
    queue.set_encoding(False)
    return queue


def _in_threads(target: Callable[..., None], args: list[tuple[Any, ...]]) -> float:
    """Run `target` once per argument tuple, each in its own thread; return the seconds."""
    threads = [threading.Thread(target=target, args=a) for a in args]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def send_phase(endpoint: str, messages: int, producers: int) -> float:
    """Batch-send `messages` from `producers` threads; return the seconds it took."""

    def produce(batches: int) -> None:
        queue = _open(endpoint)
        for _ in range(batches):
            queue.batch_send_message([Message(BODY) for _ in range(BATCH)])

    batches = messages // BATCH
    shares = [batches // producers + (i < batches % producers) for i in range(producers)]
    return _in_threads(produce, [(n,) for n in shares])


def consume_phase(endpoint: str, messages: int, consumers: int) -> float:
    """Batch-receive and batch-delete until `messages` are consumed; return the seconds."""
    lock = threading.Lock()
    consumed = 0
    finished = threading.Event()
    started = time.perf_counter()
    done_at = started

    def consume() -> None:
        nonlocal consumed, done_at
        queue = _open(endpoint)
        while not finished.is_set():
            try:
                batch = queue.batch_receive_message(BATCH, wait_seconds=1)
            except MNSServerException as error:
                if error.type == "MessageNotExist":
                    continue
                raise
            queue.batch_delete_message([m.receipt_handle for m in batch])
            with lock:
                consumed += len(batch)
                if consumed >= messages and not finished.is_set():
                    done_at = time.perf_counter()
                    finished.set()

    _in_threads(consume, [() for _ in range(consumers)])
    return done_at - started


def measure(
    kind: str, latency_ms: float, messages: int, producers: int, consumers: int
) -> tuple[Result, Result]:
    """(send phase, consume phase) against a fresh server of `kind` in its own process."""
    context = multiprocessing.get_context("spawn")
    ports = context.Queue()
    stop = context.Event()
    process = context.Process(target=_server_process, args=(kind, latency_ms, ports, stop))
    process.start()
    try:
        endpoint = f"http://127.0.0.1:{ports.get(timeout=30)}"
        send_phase(endpoint, BATCH * producers * 4, producers)  # warm up both paths
        consume_phase(endpoint, BATCH * producers * 4, consumers)
        results = []
        for phase, threads in ((send_phase, producers), (consume_phase, consumers)):
            cpu_before = _cpu_seconds(process.pid or 0)
            seconds = phase(endpoint, messages, threads)
            cpu_after = _cpu_seconds(process.pid or 0)
            cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
            results.append(Result(messages, seconds, cpu))
    finally:
        stop.set()
        process.join(10)
    return results[0], results[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=16000)
    parser.add_argument("--producers", type=int, default=4)
    parser.add_argument("--consumers", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 10.0])
    args = parser.parse_args()

    print(
        f"{args.messages} messages; {args.producers} producer threads batch-send, "
        f"{args.consumers} consumer threads batch-receive + batch-delete; batches of {BATCH}; "
        f"{os.cpu_count()} CPUs"
    )
    print(
        f"{'latency':>8}  {'phase':>7}  {'server':>7}  {'msg/s':>7}  {'vs canned':>9}  "
        f"{'server CPU/1k msg':>17}"
    )
    for latency in args.latency_ms:
        canned = measure("canned", latency, args.messages, args.producers, args.consumers)
        local = measure("local", latency, args.messages, args.producers, args.consumers)
        for index, phase in enumerate(("send", "consume")):
            baseline = canned[index]
            for kind, result in (("canned", baseline), ("local", local[index])):
                print(
                    f"{latency:>6.0f}ms  {phase:>7}  {kind:>7}  {result.rate:>7.0f}  "
                    f"{result.rate / baseline.rate:>9.2f}  {result.cpu_per_1000():>17}"
                )


if __name__ == "__main__":
    main()
