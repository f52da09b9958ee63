"""The systemd notify protocol on a real unix datagram socket, from a consumer and from a real
daemon process."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers import Harness, event_body, jsonl_job_ids, wait_for
from service_process import Daemon

from vod_events.mns_server import LocalMNSServer
from vod_events.service.health import Health
from vod_events.service.sdnotify import Notifier, ServiceReporter, status_line
from vod_events.transports import TransportError
from vod_events.transports.mns import MNSTransport

Make = Callable[..., Harness]


class Systemd:
    """The listening end of NOTIFY_SOCKET, as systemd holds it."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address  # the NOTIFY_SOCKET value
        self.messages: list[str] = []

    def receive(self, timeout: float = 0.05) -> list[str]:
        """Read every datagram that arrives within `timeout`; return all so far."""
        self.sock.settimeout(timeout)
        try:
            while True:
                self.messages.append(self.sock.recv(4096).decode())
        except TimeoutError:
            pass
        return self.messages

    def wait_for(self, wanted: Callable[[list[str]], bool], timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while not wanted(self.receive()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; received {self.messages}")
        return self.messages


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[Systemd]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    sock.bind(path)
    yield Systemd(sock, path)
    sock.close()


@pytest.fixture
def abstract_systemd() -> Iterator[Systemd]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"vod-events-test-{uuid.uuid4().hex}"
    sock.bind(b"\0" + name.encode())
    yield Systemd(sock, f"@{name}")
    sock.close()


def test_messages_arrive_as_newline_separated_assignments(systemd: Systemd) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": systemd.address})
    assert notifier.enabled
    assert notifier.ready("queue q: received 0")
    assert notifier.status("busy")
    assert notifier.watchdog()
    assert notifier.stopping()
    notifier.close()
    assert systemd.receive() == [
        "READY=1\nSTATUS=queue q: received 0",
        "STATUS=busy",
        "WATCHDOG=1",
        "STOPPING=1",
    ]


def test_abstract_socket_names_start_with_at(abstract_systemd: Systemd) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": abstract_systemd.address})
    assert notifier.ready()
    notifier.close()
    assert abstract_systemd.receive() == ["READY=1"]


def test_without_notify_socket_nothing_is_sent() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog_interval is None


def test_a_vanished_socket_does_not_break_the_service(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.enabled
    assert notifier.ready() is False  # logged, not raised


@pytest.mark.parametrize(
    ("environ", "interval"),
    [
        ({"WATCHDOG_USEC": "20000000"}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}, 10.0),
        ({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}, None),  # someone else's
        ({"WATCHDOG_USEC": "0"}, None),
        ({}, None),
    ],
)
def test_watchdog_pings_at_half_of_watchdog_usec(
    environ: dict[str, str], interval: float | None
) -> None:
    assert Notifier({"NOTIFY_SOCKET": "/run/x", **environ}).watchdog_interval == interval


@pytest.fixture
def reporting(
    systemd: Systemd,
) -> Iterator[Callable[..., ServiceReporter]]:
    made: list[ServiceReporter] = []

    def start(h: Harness, *, poll_bound: float | None = None) -> ServiceReporter:
        environ = {"NOTIFY_SOCKET": systemd.address, "WATCHDOG_USEC": "200000"}  # ping 0.1 s
        health = Health(h.consumer, poll_bound=poll_bound)
        reporter = ServiceReporter(h.consumer, health, Notifier(environ), status_interval=0.2)
        h.consumer.on_ready = reporter.ready
        made.append(reporter.start())
        return reporter

    yield start
    for reporter in made:
        reporter.close()


def test_reporter_sends_ready_status_watchdog_and_stopping(
    harness: Make, systemd: Systemd, reporting: Callable[..., ServiceReporter]
) -> None:
    h = harness()
    h.router.add(lambda event, ctx: None)
    h.put(event_body("job-1"))
    reporter = reporting(h)
    h.start()
    wait_for(lambda: h.stats.get("deleted") == 1, what="the delete")
    messages = systemd.wait_for(
        lambda ms: any(m.startswith("STATUS=queue vod-events: received 1, handled 1") for m in ms)
    )
    ready = [m for m in messages if m.startswith("READY=1")]
    assert len(ready) == 1
    assert ready[0].startswith("READY=1\nSTATUS=queue vod-events: received ")
    assert messages.count("WATCHDOG=1") >= 2
    assert not any(m.startswith("STOPPING=1") for m in messages)

    assert h.stop() == 0
    messages = systemd.wait_for(lambda ms: any(m.startswith("STOPPING=1") for m in ms))
    stopping = [m for m in messages if m.startswith("STOPPING=1")]
    assert stopping == [f"STOPPING=1\nSTATUS=stopping; {status_line(h.consumer)}"]
    reporter.close()
    assert [m for m in systemd.receive() if m.startswith("STOPPING=1")] == stopping  # once


def test_no_ready_before_a_receive_succeeds(
    harness: Make, systemd: Systemd, reporting: Callable[..., ServiceReporter]
) -> None:
    h = harness()
    h.broker.fail_next("receive", TransportError("connection refused"), times=1000)
    reporting(h)
    h.start()
    wait_for(lambda: h.stats.get("poll_errors") >= 1, what="a failed receive")
    messages = systemd.wait_for(lambda ms: ms.count("WATCHDOG=1") >= 2)
    assert not any(m.startswith(("READY=1", "STATUS=")) for m in messages)


def test_watchdog_pings_stop_while_unhealthy(
    harness: Make, systemd: Systemd, reporting: Callable[..., ServiceReporter]
) -> None:
    h = harness()
    reporter = reporting(h, poll_bound=0.3)
    h.start()
    systemd.wait_for(lambda ms: "WATCHDOG=1" in ms)
    # Receives start failing: after poll_bound the consumer counts as stuck.
    h.broker.fail_next("receive", TransportError("connection reset"), times=1000)
    wait_for(lambda: not reporter.health.liveness().ok, what="the consumer to count as stuck")
    pings_then = systemd.receive(timeout=0.15).count("WATCHDOG=1")  # a ping already decided
    time.sleep(0.5)  # five ping intervals
    assert systemd.receive().count("WATCHDOG=1") == pings_then
    assert h.consumer.alive()  # stuck, not dead: only the watchdog can tell


def test_close_after_a_failed_start_still_says_stopping(
    harness: Make, systemd: Systemd, reporting: Callable[..., ServiceReporter]
) -> None:
    h = harness()
    del h.broker.queues["vod-events"]
    reporter = reporting(h)
    assert h.consumer.run() == 1  # the queue does not exist
    reporter.close()
    messages = systemd.receive()
    assert not any(m.startswith("READY=1") for m in messages)
    assert messages[-1].startswith("STOPPING=1\n")


# ------------------------------------------------------------ a real daemon under "systemd"

KEY_ID, SECRET = "sd-key-id", "sd-key-secret-PLANTED"


def test_daemon_process_notifies_systemd_and_serves_readyz(
    systemd: Systemd, tmp_path: Path
) -> None:
    import urllib.request

    with LocalMNSServer(access_key_id=KEY_ID, access_key_secret=SECRET) as server:
        server.create_queue("events")
        MNSTransport(
            server.endpoint, "events", access_key_id=KEY_ID, access_key_secret=SECRET
        ).send(event_body("job-1"))
        config = tmp_path / "vod-events.toml"
        config.write_text(
            f'[mns]\nendpoint = "{server.endpoint}"\nqueue = "events"\n'
            "[consumer]\npollers = 1\nworkers = 2\nwait_seconds = 1\n"
            f'[state]\ndir = "{tmp_path / "state"}"\n'
            '[log]\nformat = "json"\n'
            '[ops]\nlisten = "127.0.0.1:0"\n'
            f'[[handlers]]\nevents = ["*"]\ntype = "jsonl"\npath = "{tmp_path / "out.jsonl"}"\n'
        )
        env = {
            "NOTIFY_SOCKET": systemd.address,
            "WATCHDOG_USEC": "1000000",
            "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
        }
        with Daemon(config, env) as daemon:
            systemd.wait_for(lambda ms: any(m.startswith("READY=1") for m in ms), timeout=20)
            listening = [e for e in daemon.log_events() if e["event"] == "ops endpoint listening"]
            readyz = f"{listening[0]['url']}/readyz"
            with urllib.request.urlopen(readyz, timeout=5) as response:  # noqa: S310 - local
                assert (response.status, response.read()) == (200, b"ok\n")
            handled = tmp_path / "out.jsonl"
            wait_for(lambda: "job-1" in jsonl_job_ids(handled), what="the event handled")
            systemd.wait_for(lambda ms: "WATCHDOG=1" in ms)

            daemon.process.send_signal(signal.SIGTERM)
            assert daemon.wait() == 0
        messages = systemd.receive()
        assert [m.split("\n")[0] for m in messages if not m.startswith(("WATCHDOG", "STATUS"))] == [
            "READY=1",
            "STOPPING=1",
        ]
        assert SECRET not in daemon.output
