"""Guarantees that hold at the defaults, over the production scheme (https), from the first
run: no call hangs forever, no one stuck call stops the others, a stuck pipeline is
unhealthy, and a message's first extension comes before the queue's own timeout lapses.

The MNS tests run the real SDK against LocalMNSServer, over http and over https (a local
TLS proxy with a certificate made for the test), through `StallingProxy` where a peer must
stop answering mid-conversation; the others run the consumer over the in-memory fake.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import QUEUE as MEMORY_QUEUE
from helpers import ConsumerThread, Harness, event_body, free_port, wait_for
from netfaults import SeenRequest, StallingProxy, server_context, tls_files
from service_process import Daemon

from vod_events.backoff import RedeliveryBackoff
from vod_events.consumer import (
    EXIT_ABANDONED,
    EXIT_OK,
    Consumer,
    ConsumerSettings,
    InFlight,
    VisibilityClock,
)
from vod_events.dedupe import ClaimState, IdempotencyStore, MemoryStore, NullStore, SQLiteStore
from vod_events.events import VodEvent
from vod_events.mns_server import LocalMNSServer
from vod_events.processing import Processor
from vod_events.retry import RetryPolicy
from vod_events.router import HandlerContext, Router
from vod_events.service.health import Health
from vod_events.service.ops import OpsServer
from vod_events.service.sdnotify import Notifier, ServiceReporter
from vod_events.stats import Stats
from vod_events.transports import ReceivedMessage, Transport, TransportError
from vod_events.transports.memory import MemoryBroker, MemoryTransport
from vod_events.transports.mns import MNSTransport, Timeouts

Make = Callable[..., Harness]

KEY_ID, SECRET = "guarantee-key-id", "guarantee-secret-DO-NOT-LOG"
QUEUE = "events"


# ------------------------------------------------------------------------------ harness


@dataclass
class Calls:
    """What the handler saw: each job's deliveries (DequeueCount) and when each started."""

    deliveries: dict[str, list[int]] = field(default_factory=dict)
    started: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, event: VodEvent, ctx: HandlerContext) -> None:
        job = str(event.job_id)
        with self.lock:
            self.deliveries.setdefault(job, []).append(ctx.dequeue_count)
            self.started.setdefault(job, []).append(time.monotonic())


@dataclass
class Running:
    consumer: Consumer
    calls: Calls
    release: threading.Event  # ends the handlers' sleeps early (teardown)
    running: ConsumerThread | None = None

    def start(self) -> Running:
        self.running = ConsumerThread(self.consumer)
        return self

    def stop(self, timeout: float = 30.0) -> int:
        assert self.running is not None
        return self.running.stop(timeout)

    def count(self, name: Any) -> int:
        return self.consumer.stats.get(name)


@pytest.fixture
def consume() -> Iterator[Callable[..., Running]]:
    """Starts a consumer over `connect` whose one handler records its calls, then sleeps."""
    made: list[Running] = []

    def start(
        connect: Callable[[str], Transport],
        queue: str = QUEUE,
        *,
        sleep: float = 0.0,
        fail: bool = False,
        store: IdempotencyStore | None = None,
        settings: ConsumerSettings | None = None,
        redelivery: RedeliveryBackoff | None = None,
        dead_letters: Path | None = None,
    ) -> Running:
        calls, release = Calls(), threading.Event()

        def handler(event: VodEvent, ctx: HandlerContext) -> None:
            calls.record(event, ctx)
            release.wait(sleep)
            if fail:
                raise RuntimeError("always fails")

        router = Router()
        router.add(handler, name="record")
        processor = Processor(
            router,
            stats=Stats(),
            stopping=threading.Event(),
            source=queue,
            store=store if store is not None else NullStore(),
            retry=RetryPolicy(attempts=1),
            redelivery=redelivery or RedeliveryBackoff(initial=1, maximum=1),
        )
        consumer = Consumer(
            connect,
            queue,
            processor,
            settings or ConsumerSettings(pollers=1, workers=4, wait_seconds=1),
        )
        running = Running(consumer, calls, release).start()
        made.append(running)
        return running

    yield start
    for running in made:
        running.release.set()
        if running.running is not None and running.running.thread.is_alive():
            running.stop()


def mns_connect(endpoint: str, timeouts: Timeouts) -> Callable[[str], Transport]:
    def connect(name: str) -> Transport:
        return MNSTransport(
            endpoint, name, access_key_id=KEY_ID, access_key_secret=SECRET, timeouts=timeouts
        )

    return connect


def memory_connect(broker: MemoryBroker) -> Callable[[str], Transport]:
    return lambda name: MemoryTransport(broker, name)


@pytest.fixture
def server() -> Iterator[LocalMNSServer]:
    with LocalMNSServer(access_key_id=KEY_ID, access_key_secret=SECRET) as srv:
        yield srv


@pytest.fixture(params=["http", "https"])
def proxy(
    request: pytest.FixtureRequest,
    server: LocalMNSServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[StallingProxy]:
    """The local server behind a proxy that can go silent, over http or https (the
    production scheme: the SDK's `HTTPSConnection`, with our certificate trusted)."""
    tls = None
    if request.param == "https":
        cert, key = tls_files(tmp_path)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        tls = server_context(cert, key)
    with StallingProxy((server.host, server.port), tls) as stalling:
        yield stalling


def sender(server: LocalMNSServer) -> MNSTransport:
    return MNSTransport(server.endpoint, QUEUE, access_key_id=KEY_ID, access_key_secret=SECRET)


def queue_is_empty(server: LocalMNSServer) -> bool:
    info = server.queue_info(QUEUE)
    return info.active_messages + info.inactive_messages == 0


def change_visibility(request: SeenRequest) -> bool:
    return request.method == "PUT" and "visibilitytimeout=" in request.target.lower()


def batch_delete(request: SeenRequest) -> bool:
    return request.method == "DELETE"


# ------------------------------------------------- item 4: nothing hangs, nothing starves


def test_a_hung_extension_holds_up_only_its_own_message(
    server: LocalMNSServer, proxy: StallingProxy, consume: Callable[..., Running]
) -> None:
    server.create_queue(QUEUE, visibility_timeout=2)
    for job in ("a", "b"):
        sender(server).send(event_body(job))
    # The first extension's connection goes silent for longer than the visibility lasts.
    proxy.stall_once(change_visibility)
    run = consume(mns_connect(proxy.endpoint, Timeouts(call=3, poll_margin=3)), sleep=3)
    wait_for(lambda: run.count("deleted") == 2, timeout=30, what="both messages deleted")
    assert len(proxy.stalled) == 1
    # The stalled extension's message lapsed and ran again; the other one was kept
    # invisible throughout by the other extender.
    assert sorted(len(d) for d in run.calls.deliveries.values())[0] == 1, run.calls.deliveries
    assert run.stop() == EXIT_OK
    assert queue_is_empty(server)


def test_a_hung_delete_times_out_and_deletion_goes_on(
    server: LocalMNSServer, proxy: StallingProxy, consume: Callable[..., Running]
) -> None:
    server.create_queue(QUEUE, visibility_timeout=30)
    for i in range(6):
        sender(server).send(event_body(f"job-{i}"))
    proxy.stall_once(batch_delete)
    run = consume(mns_connect(proxy.endpoint, Timeouts(call=1, poll_margin=3)))
    wait_for(lambda: run.count("deleted") == 6, timeout=30, what="every message deleted")
    assert len(proxy.stalled) == 1
    assert all(d == [1] for d in run.calls.deliveries.values())
    assert len(run.calls.deliveries) == 6
    assert run.stop() == EXIT_OK
    assert queue_is_empty(server)


class FakeSystemd:
    """A notify socket: what the service manager would read."""

    def __init__(self, path: Path) -> None:
        self.address = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.address)
        self.sock.settimeout(0.05)

    def receive(self) -> list[str]:
        messages = []
        while True:
            try:
                messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                return messages


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_a_deleter_stuck_in_a_call_is_unhealthy_and_gets_no_watchdog_ping(
    server: LocalMNSServer,
    proxy: StallingProxy,
    consume: Callable[..., Running],
    tmp_path: Path,
) -> None:
    server.create_queue(QUEUE, visibility_timeout=30)
    for i in range(3):
        sender(server).send(event_body(f"job-{i}"))
    proxy.stall_once(batch_delete)
    # Timeouts far longer than the test: only liveness can tell this call is stuck.
    run = consume(mns_connect(proxy.endpoint, Timeouts(call=120, poll_margin=3)))
    health = Health(run.consumer, call_bound=1.0)
    systemd = FakeSystemd(tmp_path / "notify")
    environ = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "200000"}  # ping 0.1 s
    reporter = ServiceReporter(run.consumer, health, Notifier(environ), status_interval=0.2)
    reporter.ready()
    reporter.start()
    ops = OpsServer("127.0.0.1:0", run.consumer.stats, health).start()
    try:
        wait_for(lambda: len(proxy.stalled) == 1, what="the delete to stall")
        wait_for(lambda: get(f"{ops.url}/healthz")[0] == 503, what="/healthz to fail")
        body = get(f"{ops.url}/healthz")[1]
        assert body.startswith("deleter-"), body
        assert ": delete has not returned for " in body
        assert body.endswith(" s (limit 1 s)\n")
        assert run.count("handled") == 3
        assert run.count("deleted") == 0
        systemd.receive()  # what was sent so far; a ping may have been decided just now
        time.sleep(0.3)
        time.sleep(0.3)  # six ping intervals
        later = systemd.receive()
        assert "WATCHDOG=1" not in later
        assert any(m.startswith("STATUS=unhealthy: deleter-") for m in later), later

        proxy.drop_stalled()  # the peer resets: the call ends, the delete goes through
        wait_for(lambda: run.count("deleted") == 3, what="the deletes")
        wait_for(lambda: get(f"{ops.url}/healthz") == (200, "ok\n"), what="healthy again")
        wait_for(lambda: "WATCHDOG=1" in systemd.receive(), what="pings again")
    finally:
        ops.close()
        reporter.close()
    assert run.stop() == EXIT_OK


class StalledHeartbeat(Consumer):
    """A heartbeat that stops moving outside any call (as a deadlock would)."""

    def _heartbeat_loop(self) -> None:
        self._finished.wait()


class StalledDeleters(Consumer):
    """Deleters that stop moving until shutdown, outside any call."""

    def _deleter_loop(self) -> None:
        self.stopping.wait()
        super()._deleter_loop()


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        (StalledHeartbeat, "heartbeat: an extension is "),
        (StalledDeleters, "deleters: a delete has waited "),
    ],
)
def test_a_heartbeat_or_deleter_that_stops_moving_is_unhealthy(
    kind: type[Consumer], reason: str, tmp_path: Path
) -> None:
    broker = MemoryBroker()
    broker.create_queue(MEMORY_QUEUE, visibility_timeout=2)  # extensions due after 1 s
    broker.put(MEMORY_QUEUE, event_body("job-1"))
    router = Router()
    release = threading.Event()
    router.add(lambda event, ctx: release.wait(3), name="slow")
    processor = Processor(router, stats=Stats(), stopping=threading.Event(), source=MEMORY_QUEUE)
    consumer = kind(
        memory_connect(broker),
        MEMORY_QUEUE,
        processor,
        ConsumerSettings(pollers=1, workers=2, wait_seconds=1),
    )
    health = Health(consumer, call_bound=1.0)
    h = Harness(broker, consumer, router, tmp_path).start()
    try:
        wait_for(lambda: not health.liveness().ok, timeout=15, what="liveness to fail")
        verdict = health.liveness()
        assert verdict.reason.startswith(reason), verdict.reason
        assert verdict.reason.endswith("(limit 1 s)")
        assert consumer.alive()  # every thread runs: only their progress tells
    finally:
        release.set()
        h.stop()


class HangingStore(MemoryStore):
    """A store whose claim renewal hangs until `unblock` is set (a store without timeouts)."""

    def __init__(self, claim_ttl: float) -> None:
        super().__init__(claim_ttl=claim_ttl)
        self.unblock = threading.Event()

    def renew(self) -> None:
        self.unblock.wait(60)
        super().renew()


def test_a_hung_claim_renewal_does_not_stop_visibility_extensions(
    consume: Callable[..., Running],
) -> None:
    broker = MemoryBroker()
    broker.create_queue(QUEUE, visibility_timeout=2)
    broker.put(QUEUE, event_body("job-1"))
    store = HangingStore(claim_ttl=1.5)
    run = consume(memory_connect(broker), sleep=4, store=store)
    try:
        wait_for(lambda: run.count("deleted") == 1, timeout=20, what="the delete")
    finally:
        store.unblock.set()
    assert run.calls.deliveries == {"job-1": [1]}  # kept invisible: never redelivered
    assert run.count("received") == 1
    assert run.count("delete_failures") == 0
    assert run.stop() == EXIT_OK


def test_a_hung_claim_renewal_is_unhealthy(consume: Callable[..., Running]) -> None:
    broker = MemoryBroker()
    broker.create_queue(QUEUE, visibility_timeout=30)
    store = HangingStore(claim_ttl=0.6)
    run = consume(memory_connect(broker), store=store)
    health = Health(run.consumer, call_bound=0.5)
    try:
        wait_for(lambda: not health.liveness().ok, what="liveness to fail")
        assert health.liveness().reason.startswith("renewer: renew claims has not returned")
    finally:
        store.unblock.set()
    wait_for(lambda: health.liveness().ok, what="healthy again")
    assert run.stop() == EXIT_OK


def test_claims_are_renewed_on_the_stores_schedule_not_the_queues(
    consume: Callable[..., Running], tmp_path: Path
) -> None:
    broker = MemoryBroker()
    broker.create_queue(QUEUE, visibility_timeout=60)  # a long visibility: few extensions
    body = event_body("job-1")
    broker.put(QUEUE, body)
    path = tmp_path / "dedupe.sqlite3"
    run = consume(memory_connect(broker), sleep=4, store=SQLiteStore(path, claim_ttl=1.5))
    wait_for(lambda: bool(run.calls.deliveries), what="the handler to start")
    time.sleep(3)  # two leases: held only if renewed
    # Another replica (its own connection to the same store) finds the claim still held.
    other = SQLiteStore(path, claim_ttl=1.5)
    key = f"{run.consumer.processor.decoder(body).dedupe_key}|record"
    try:
        assert other.claim(key).state is ClaimState.IN_PROGRESS
    finally:
        other.close()
    wait_for(lambda: run.count("deleted") == 1, what="the delete")
    assert run.stop() == EXIT_OK


def test_a_queue_that_stops_answering_is_not_ready_and_says_why(
    server: LocalMNSServer, consume: Callable[..., Running]
) -> None:
    server.create_queue(QUEUE, visibility_timeout=30)
    run = consume(mns_connect(server.endpoint, Timeouts(call=0.5, poll_margin=0.5)))
    health = Health(run.consumer)
    run.consumer.on_ready = health.mark_connected
    wait_for(lambda: run.count("empty_polls") >= 1, what="a first receive")
    health.mark_connected()
    assert health.readiness().ok
    server.set_faults(latency_ms=4000)  # answers after the receive's 1.5 s timeout
    wait_for(lambda: not health.readiness().ok, timeout=15, what="not ready")
    reason = health.readiness().reason
    assert reason.startswith(f"queue 'events' at {server.endpoint} failing for ")
    assert reason.endswith(": network error: no answer within 1.5 s")
    assert SECRET not in reason
    time.sleep(4)
    assert run.count("poll_errors") <= 6  # backing off, not spinning
    assert health.liveness().ok  # nothing is stuck: every call ends at its timeout
    server.set_faults(latency_ms=0)
    wait_for(lambda: health.readiness().ok, timeout=40, what="ready again")
    assert run.stop() == EXIT_OK


def test_an_unreachable_endpoint_at_start_is_logged_backed_off_and_explained(
    tmp_path: Path,
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    config = tmp_path / "vod-events.toml"
    config.write_text(
        f'[mns]\nendpoint = "{endpoint}"\nqueue = "events"\n'
        "[consumer]\npollers = 1\nworkers = 2\nwait_seconds = 1\n"
        f'[state]\ndir = "{tmp_path / "state"}"\n'
        '[log]\nformat = "json"\n'
        '[ops]\nlisten = "127.0.0.1:0"\n'
        f'[[handlers]]\nevents = ["*"]\ntype = "jsonl"\npath = "{tmp_path / "out.jsonl"}"\n'
    )
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET}
    with Daemon(config, env) as daemon:

        def events(name: str) -> list[dict[str, Any]]:
            return [e for e in daemon.log_events() if e["event"] == name]

        wait_for(
            lambda: bool(events("ops endpoint listening")), timeout=20, what="the ops endpoint"
        )
        url = events("ops endpoint listening")[0]["url"]
        wait_for(lambda: bool(events("cannot receive from the queue; backing off")), timeout=20)
        started = time.monotonic()
        status, body = get(f"{url}/readyz")
        assert status == 503
        assert body.startswith(f"queue 'events' at {endpoint} failing for "), body
        assert "Connection refused" in body
        [lookup] = events(
            "cannot read the queue's attributes; starting anyway, receives will retry"
        )
        assert (lookup["level"], lookup["endpoint"]) == ("error", endpoint)
        time.sleep(max(0.0, 4 - (time.monotonic() - started)))
        failures = events("cannot receive from the queue; backing off")
        assert all(f["level"] == "error" and f["endpoint"] == endpoint for f in failures)
        assert "Connection refused" in failures[0]["error"]
        assert len(failures) <= 8  # over 4 s or more: backing off, not spinning
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.wait() == EXIT_OK
    assert SECRET not in daemon.output


# -------------------------------------------------- item 5: the first extension in time


def test_the_first_extension_comes_before_the_queues_own_timeout_lapses(
    server: LocalMNSServer, consume: Callable[..., Running]
) -> None:
    server.create_queue(QUEUE, visibility_timeout=2)
    sender(server).send(event_body("job-1"))
    settings = ConsumerSettings(pollers=1, workers=2, wait_seconds=1, visibility_timeout=20)
    run = consume(mns_connect(server.endpoint, Timeouts()), sleep=5, settings=settings)
    wait_for(lambda: run.count("deleted") == 1, timeout=30, what="the delete")
    assert run.calls.deliveries == {"job-1": [1]}  # never lapsed: no second run
    assert run.count("delete_failures") == 0
    assert run.stop() == EXIT_OK


def test_a_failed_queue_lookup_at_start_does_not_delay_the_first_extension(
    consume: Callable[..., Running],
) -> None:
    broker = MemoryBroker()
    broker.create_queue(QUEUE, visibility_timeout=2)
    broker.put(QUEUE, event_body("job-1"))
    broker.fail_next("queue_info", TransportError("network error: no answer within 10 s"), 10)
    run = consume(memory_connect(broker), sleep=5)
    wait_for(lambda: run.count("deleted") == 1, timeout=30, what="the delete")
    assert run.consumer.queue_info is None  # it never learnt the queue's timeout
    assert run.calls.deliveries == {"job-1": [1]}
    assert run.count("delete_failures") == 0
    assert run.stop() == EXIT_OK


def test_a_redelivery_from_a_server_whose_clock_is_ahead_is_extended_in_time(
    consume: Callable[..., Running],
) -> None:
    ahead = 300.0  # five minutes: within what MNS accepts of a request's Date
    with LocalMNSServer(
        access_key_id=KEY_ID, access_key_secret=SECRET, clock=lambda: time.time() + ahead
    ) as skewed:
        skewed.create_queue(QUEUE, visibility_timeout=2)
        first = sender(skewed)
        first.send(event_body("job-1"))
        [taken] = first.receive(1, 0)  # a first delivery that lapses unhandled
        settings = ConsumerSettings(pollers=1, workers=2, wait_seconds=3, visibility_timeout=20)
        run = consume(mns_connect(skewed.endpoint, Timeouts()), sleep=5, settings=settings)
        wait_for(lambda: run.count("deleted") == 1, timeout=30, what="the delete")
        assert run.calls.deliveries == {"job-1": [2]}  # the redelivery, kept invisible
        assert taken.dequeue_count == 1
        assert run.stop() == EXIT_OK


def message(dequeue: int, first_ms: int, next_visible_ms: int) -> ReceivedMessage:
    return ReceivedMessage("id", "handle", "{}", dequeue, first_ms, first_ms, next_visible_ms)


@pytest.mark.parametrize("server_ahead_ms", [0, 300_000, -300_000])
def test_visibility_windows_hold_whatever_the_servers_clock_says(server_ahead_ms: int) -> None:
    clock = VisibilityClock()
    sent = 1_700_000_000_000  # our clock, when the receive was sent
    latency = 40  # the server stamps the delivery this much after we sent
    stamp = sent + server_ahead_ms + latency
    assert clock.window(message(2, stamp - 60_000, stamp + 30_000), sent) is None  # no sample
    # A first delivery: exact, whatever the clocks say.
    assert clock.window(message(1, stamp, stamp + 30_000), sent) == 30.0
    # A redelivery: on our clock, never longer than it is.
    window = clock.window(message(3, stamp - 60_000, stamp + 30_000), sent)
    assert window is not None
    assert 30.0 - 0.1 <= window <= 30.0


# ------------------------------------------------- item 8: a handed-back message stays so


class SlowUntrack(Consumer):
    """Widens the gap between a hand back and the record leaving the in-flight table, where
    the heartbeat used to find the record and extend it again."""

    def _untrack(self, entry: InFlight) -> None:
        time.sleep(4)
        super()._untrack(entry)


class HandBackFor(RedeliveryBackoff):
    """A fixed visibility for every hand back (no jitter)."""

    def visibility_for(self, dequeue_count: int) -> int:
        return 5


def test_the_heartbeat_never_extends_a_message_just_handed_back(tmp_path: Path) -> None:
    broker = MemoryBroker()
    # A heartbeat extends by 8 s, anything with less than 4 s left: a message handed back
    # for 5 s falls due within the 4 s it takes to leave the table.
    broker.create_queue(MEMORY_QUEUE, visibility_timeout=8)
    broker.put(MEMORY_QUEUE, event_body("job-1"))
    starts: list[float] = []
    router = Router()

    def fails(event: VodEvent, ctx: HandlerContext) -> None:
        starts.append(time.monotonic())
        raise RuntimeError("not yet")

    router.add(fails, name="fails")
    processor = Processor(
        router,
        stats=Stats(),
        stopping=threading.Event(),
        source=MEMORY_QUEUE,
        retry=RetryPolicy(attempts=1),
        redelivery=HandBackFor(),
    )
    consumer = SlowUntrack(
        memory_connect(broker),
        MEMORY_QUEUE,
        processor,
        ConsumerSettings(pollers=1, workers=2, wait_seconds=1),
    )
    h = Harness(broker, consumer, router, tmp_path).start()
    wait_for(lambda: len(starts) >= 2, timeout=30, what="the redelivery")
    # Back after its 5 s, not after an 8 s extension made while it was leaving the table.
    assert starts[1] - starts[0] < 8
    assert consumer.stats.get("extended") == 0
    h.stop()


# ------------------------------------------------------- (b) one clamp for every request


def test_extensions_never_ask_for_more_than_the_services_maximum(
    consume: Callable[..., Running],
) -> None:
    broker = MemoryBroker()
    broker.create_queue(QUEUE, visibility_timeout=1)
    broker.put(QUEUE, event_body("job-1"))
    settings = ConsumerSettings(pollers=1, workers=2, wait_seconds=1, visibility_timeout=50_000)
    run = consume(memory_connect(broker), sleep=3, settings=settings)
    wait_for(lambda: run.count("extended") >= 1, what="an extension")
    with broker.lock:
        [stored] = broker.queues[QUEUE].messages.values()
        hidden_for = stored.visible_at - time.monotonic()
    assert 43_000 < hidden_for <= 43_200
    wait_for(lambda: run.count("deleted") == 1, what="the delete")
    assert run.calls.deliveries == {"job-1": [1]}
    assert run.stop() == EXIT_OK


def test_a_release_never_asks_for_more_than_the_services_maximum(
    consume: Callable[..., Running],
) -> None:
    broker = MemoryBroker()
    broker.create_queue(QUEUE, visibility_timeout=30)
    for job in ("running", "waiting"):
        broker.put(QUEUE, event_body(job))
    settings = ConsumerSettings(
        pollers=1, workers=1, wait_seconds=1, shutdown_timeout=0.2, release_visibility=50_000
    )
    run = consume(memory_connect(broker), sleep=30, settings=settings)
    wait_for(lambda: bool(run.calls.deliveries), what="the first handler to start")
    wait_for(lambda: run.count("received") == 2, what="the second message received")
    run.stop()
    assert run.count("released") == 1
    [waiting] = [m for m in broker.queues[QUEUE].messages.values() if m.body.count("waiting")]
    hidden_for = waiting.visible_at - time.monotonic()
    assert 43_000 < hidden_for <= 43_200  # clamped to 12 hours, not refused (30 s)


# ------------------------------------------------------- item 11: abandoned is not clean


def test_a_shutdown_that_abandons_running_handlers_exits_75(
    consume: Callable[..., Running],
) -> None:
    broker = MemoryBroker()
    broker.create_queue(QUEUE, visibility_timeout=30)
    broker.put(QUEUE, event_body("job-1"))
    settings = ConsumerSettings(pollers=1, workers=2, wait_seconds=1, shutdown_timeout=0.5)
    run = consume(memory_connect(broker), sleep=30, settings=settings)
    wait_for(lambda: bool(run.calls.deliveries), what="the handler to start")
    assert run.stop() == EXIT_ABANDONED == 75
    assert run.consumer.abandoned == 1
    assert run.count("deleted") == 0  # it will be redelivered
