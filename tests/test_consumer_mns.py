"""The consumer through the real aliyun-mns-sdk against the local MNS server: every sample
payload raw and Base64, retries, long handlers, stale handles, and a real daemon process
receiving real signals."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import ConsumerThread, event_body, wait_for

from vod_events import samples
from vod_events.config import Config, from_dict
from vod_events.consumer import EXIT_OK
from vod_events.events import VodEvent
from vod_events.mns_server import LocalMNSServer
from vod_events.router import HandlerContext
from vod_events.service.assemble import build_consumer, build_router
from vod_events.transports.mns import MNSTransport

KEY_ID, SECRET = "test-key-id", "test-key-secret-DO-NOT-LOG"
QUEUE = "events"
TESTS = Path(__file__).parent


@pytest.fixture
def server() -> Iterator[LocalMNSServer]:
    with LocalMNSServer(access_key_id=KEY_ID, access_key_secret=SECRET) as srv:
        srv.create_queue(QUEUE, visibility_timeout=30)
        yield srv


def client(server: LocalMNSServer, queue: str = QUEUE) -> MNSTransport:
    return MNSTransport(server.endpoint, queue, access_key_id=KEY_ID, access_key_secret=SECRET)


def config(server: LocalMNSServer, tmp_path: Path, **sections: Any) -> Config:
    data: dict[str, Any] = {
        "mns": {"endpoint": server.endpoint, "queue": QUEUE},
        "consumer": {"pollers": 2, "workers": 8, "wait_seconds": 1},
        "retry": {"initial_wait": 0.01, "max_wait": 0.05, "redelivery_initial": 1},
        "state": {"dir": str(tmp_path / "state")},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET}
    return from_dict(data, "<test>", env)


@pytest.fixture
def run_consumer() -> Iterator[Callable[..., ConsumerThread]]:
    started: list[ConsumerThread] = []

    def start(cfg: Config, handler: Callable[[VodEvent, HandlerContext], object]) -> ConsumerThread:
        router = build_router(cfg)
        router.add(handler, name="test")
        running = ConsumerThread(build_consumer(cfg, router=router))
        started.append(running)
        return running

    yield start
    for running in started:
        if running.thread.is_alive():
            running.stop()


def test_every_sample_decodes_and_is_handled_raw_and_base64(
    server: LocalMNSServer, tmp_path: Path, run_consumer: Callable[..., ConsumerThread]
) -> None:
    payloads = samples.payloads()
    assert len(payloads) >= 22
    sender = client(server)
    for body in payloads.values():
        sender.send(body)
        sender.send(base64.b64encode(body.encode()).decode())
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def handler(event: VodEvent, ctx: HandlerContext) -> None:
        with lock:
            seen.append((event.event_type, type(event).__name__))

    cfg = config(server, tmp_path, dedupe={"backend": "off"})
    running = run_consumer(cfg, handler)
    wait_for(lambda: running.consumer.stats.get("deleted") == 2 * len(payloads), timeout=30)
    assert running.stop() == EXIT_OK
    assert len(seen) == 2 * len(payloads)
    # every event decoded to its own class, never the generic fallback
    assert all(event_type == cls for event_type, cls in seen)
    expected = sorted(json.loads(body)["EventType"].strip() for body in payloads.values())
    assert sorted(t for t, _ in seen) == sorted(expected * 2)
    assert client(server).receive(16, 0) == []


def test_failing_twice_then_succeeding_is_deleted_once_never_redelivered(
    server: LocalMNSServer, tmp_path: Path, run_consumer: Callable[..., ConsumerThread]
) -> None:
    client(server).send(event_body("job-1"))
    calls: list[int] = []

    def handler(event: VodEvent, ctx: HandlerContext) -> None:
        calls.append(ctx.dequeue_count)
        if len(calls) <= 2:
            raise TimeoutError("downstream slow")

    running = run_consumer(config(server, tmp_path), handler)
    wait_for(lambda: running.consumer.stats.get("deleted") == 1)
    time.sleep(1.5)  # longer than the redelivery backoff: nothing comes back
    running.stop()
    assert calls == [1, 1, 1]
    assert client(server).receive(16, 0) == []


def test_never_succeeding_comes_back_with_higher_dequeue_count(
    server: LocalMNSServer, tmp_path: Path, run_consumer: Callable[..., ConsumerThread]
) -> None:
    client(server).send(event_body("job-1"))
    deliveries: list[int] = []

    def handler(event: VodEvent, ctx: HandlerContext) -> None:
        deliveries.append(ctx.dequeue_count)
        raise RuntimeError("always")

    running = run_consumer(config(server, tmp_path), handler)
    wait_for(lambda: 2 in deliveries, timeout=15, what="redelivery")
    running.stop()
    assert deliveries[:4] == [1, 1, 1, 2]
    assert running.consumer.stats.get("deleted") == 0


def test_long_handler_outliving_visibility_timeout_is_not_redelivered(
    server: LocalMNSServer, tmp_path: Path, run_consumer: Callable[..., ConsumerThread]
) -> None:
    server.create_queue("short", visibility_timeout=1)
    client(server, "short").send(event_body("job-1"))
    calls: list[int] = []

    def handler(event: VodEvent, ctx: HandlerContext) -> None:
        calls.append(ctx.dequeue_count)
        time.sleep(3.5)

    cfg = config(server, tmp_path, mns={"queue": "short"}, dedupe={"backend": "off"})
    running = run_consumer(cfg, handler)
    wait_for(lambda: running.consumer.stats.get("deleted") == 1, timeout=20)
    running.stop()
    assert calls == [1]
    assert running.consumer.stats.get("extended") >= 3


def test_batch_delete_reports_a_stale_handle_and_deletes_the_rest(
    server: LocalMNSServer,
) -> None:
    transport = client(server)
    for i in range(3):
        transport.send(event_body(f"job-{i}"))
    messages = transport.receive(16, 1)
    assert len(messages) == 3
    stale = messages[0].receipt_handle
    transport.change_visibility(stale, 30)  # issues a new handle: the old one is dead
    failures = transport.delete([m.receipt_handle for m in messages])
    assert [(f.receipt_handle, f.code, f.gone) for f in failures] == [
        (stale, "MessageNotExist", True)
    ]
    info = transport.queue_info()
    assert info.active_messages + info.inactive_messages == 1


def _daemon_config(server: LocalMNSServer, tmp_path: Path, **consumer: Any) -> Path:
    path = tmp_path / "daemon.toml"
    settings = {"pollers": 1, "workers": 1, "prefetch": 8, "wait_seconds": 20, **consumer}
    lines = [
        "[mns]",
        f'endpoint = "{server.endpoint}"',
        f'queue = "{QUEUE}"',
        "[consumer]",
        *(f"{k} = {v}" for k, v in settings.items()),
        "[state]",
        f'dir = "{tmp_path / "state"}"',
        "[log]",
        'format = "json"',
        "[[handlers]]",
        'events = ["*"]',
        'call = "sample_handlers:record"',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _start_daemon(cfg: Path, tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    environ = {
        **os.environ,
        "PYTHONPATH": str(TESTS),
        "VOD_TEST_CALLS": str(tmp_path / "calls.jsonl"),
        "ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID,
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
        **env,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "vod_events.consume", "--config", str(cfg)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _calls(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "calls.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_sigterm_lets_the_running_handler_finish_and_releases_the_rest(
    server: LocalMNSServer, tmp_path: Path
) -> None:
    sender = client(server)
    for i in range(5):
        sender.send(event_body(f"job-{i}"))
    daemon = _start_daemon(_daemon_config(server, tmp_path), tmp_path, VOD_TEST_SLEEP="2")
    try:
        wait_for(lambda: any(c["phase"] == "start" for c in _calls(tmp_path)), timeout=20)
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=30)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, stderr
    calls = _calls(tmp_path)
    assert [c["phase"] for c in calls] == ["start", "end"]  # the running one finished
    # it was deleted; the four unstarted ones are visible again within seconds
    wait_for(lambda: client(server).queue_info().active_messages == 4, timeout=5)
    bodies = {json.loads(m.body)["JobId"] for m in client(server).receive(16, 1)}
    assert calls[0]["job_id"] not in bodies
    assert len(bodies) == 4
    assert SECRET not in stderr


def test_sigterm_that_must_abandon_a_running_handler_exits_75(
    server: LocalMNSServer, tmp_path: Path
) -> None:
    client(server).send(event_body("job-1"))
    cfg = _daemon_config(server, tmp_path, shutdown_timeout=1)
    daemon = _start_daemon(cfg, tmp_path, VOD_TEST_SLEEP="30")
    try:
        wait_for(lambda: len(_calls(tmp_path)) == 1, timeout=20)
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=20)
    finally:
        daemon.kill()
    assert daemon.returncode == 75  # EX_TEMPFAIL: not a clean stop, the work comes back
    assert "shutdown_timeout reached; abandoning running handlers" in stderr
    assert [c["phase"] for c in _calls(tmp_path)] == ["start"]  # abandoned, not deleted
    assert client(server).queue_info().inactive_messages == 1  # it returns when it lapses


def test_second_signal_exits_at_once_non_zero(server: LocalMNSServer, tmp_path: Path) -> None:
    client(server).send(event_body("job-1"))
    cfg = _daemon_config(server, tmp_path, shutdown_timeout=60)
    daemon = _start_daemon(cfg, tmp_path, VOD_TEST_SLEEP="30")
    try:
        wait_for(lambda: len(_calls(tmp_path)) == 1, timeout=20)
        daemon.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        daemon.send_signal(signal.SIGINT)
        daemon.communicate(timeout=10)
    finally:
        daemon.kill()
    assert daemon.returncode == 128 + signal.SIGINT
    assert [c["phase"] for c in _calls(tmp_path)] == ["start"]  # abandoned, not deleted


def test_wrong_secret_stops_with_a_clear_error(server: LocalMNSServer, tmp_path: Path) -> None:
    cfg = _daemon_config(server, tmp_path)
    daemon = _start_daemon(cfg, tmp_path, ALIBABA_CLOUD_ACCESS_KEY_SECRET="wrong-secret")
    _, stderr = daemon.communicate(timeout=30)
    assert daemon.returncode == 1
    assert "SignatureDoesNotMatch" in stderr
    assert "wrong-secret" not in stderr


def test_missing_queue_stops_with_a_clear_error(server: LocalMNSServer, tmp_path: Path) -> None:
    cfg = _daemon_config(server, tmp_path)
    cfg.write_text(cfg.read_text().replace(f'queue = "{QUEUE}"', 'queue = "no-such-queue"'))
    daemon = _start_daemon(cfg, tmp_path)
    _, stderr = daemon.communicate(timeout=30)
    assert daemon.returncode == 1
    assert "QueueNotExist" in stderr


def test_config_error_names_file_and_key_and_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[mns]\nendpoint = "http://127.0.0.1:1"\n[consumer]\nworkers = "many"\n')
    done = subprocess.run(
        [sys.executable, "-m", "vod_events.consume", "--config", str(cfg)],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert f"{cfg}, key 'consumer.workers': must be an integer, got 'many'" in done.stderr
    assert "Traceback" not in done.stderr


def _chain_env(tmp_path: Path, profile: str | None) -> dict[str, str]:
    """Environment for a daemon using `credentials = "default"`: only a profile file, no
    AccessKey variables, and no ECS metadata or CLI profile lookups."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_ACCESS_KEY")}
    ini = tmp_path / "credentials.ini"
    if profile is not None:
        ini.write_text(profile)
    env.update(
        {
            "PYTHONPATH": str(TESTS),
            "VOD_TEST_CALLS": str(tmp_path / "calls.jsonl"),
            "ALIBABA_CLOUD_CREDENTIALS_FILE": str(ini),
            "ALIBABA_CLOUD_ECS_METADATA_DISABLED": "true",
            "ALIBABA_CLOUD_CLI_PROFILE_DISABLED": "true",
            "VOD_EVENTS_MNS_CREDENTIALS": "default",
        }
    )
    return env


def test_default_credential_chain_signs_requests(server: LocalMNSServer, tmp_path: Path) -> None:
    client(server).send(event_body("job-chain"))
    profile = (
        f"[default]\ntype = access_key\naccess_key_id = {KEY_ID}\naccess_key_secret = {SECRET}\n"
    )
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vod_events.consume",
            "--config",
            str(_daemon_config(server, tmp_path)),
        ],
        env=_chain_env(tmp_path, profile),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: len(_calls(tmp_path)) == 2, timeout=20, what="the handler's call")
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=30)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, stderr
    assert [c["job_id"] for c in _calls(tmp_path)] == ["job-chain", "job-chain"]
    assert SECRET not in stderr


def test_default_credential_chain_with_nothing_to_find_is_fatal(
    server: LocalMNSServer, tmp_path: Path
) -> None:
    daemon = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vod_events.consume",
            "--config",
            str(_daemon_config(server, tmp_path)),
        ],
        env=_chain_env(tmp_path, profile=None),
        stderr=subprocess.PIPE,
        text=True,
    )
    _, stderr = daemon.communicate(timeout=30)
    assert daemon.returncode == 1
    assert "CredentialsUnavailable" in stderr


def test_auto_pollers_ramp_up_with_a_backlog_and_back_off_when_long_polls_are_refused(
    server: LocalMNSServer, tmp_path: Path, run_consumer: Callable[..., ConsumerThread]
) -> None:
    """`pollers = "auto"` through the real SDK: a backlog of full batches adds long polls;
    once MNS answers long polls at once with MessageNotExist (its per-IP cap, which the
    local server imitates with max_long_polls), fewer poll, down to one, and that one still
    receives."""
    from mns.account import Account
    from mns.queue import Message

    server.set_faults(latency_ms=20)  # a round trip to wait for: more polls, more throughput
    queue = Account(server.endpoint, KEY_ID, SECRET).get_queue(QUEUE)
    queue.set_encoding(False)
    backlog = 3008  # 188 batches of 16
    for first in range(0, backlog, 16):
        queue.batch_send_message([Message(event_body(f"job-{first + i}")) for i in range(16)])
    handled: list[str] = []
    cfg = config(
        server,
        tmp_path,
        consumer={"pollers": "auto", "wait_seconds": 2},
        dedupe={"backend": "off"},
    )
    running = run_consumer(cfg, lambda event, ctx: handled.append(ctx.message_id))
    consumer = running.consumer
    assert consumer.pollers_active == 2
    most = 0

    def drained() -> bool:
        nonlocal most
        most = max(most, consumer.pollers_active)
        return consumer.stats.get("deleted") >= backlog

    wait_for(drained, timeout=120, what="the backlog handled")
    assert most >= 4, f"the pollers did not ramp up: at most {most} polled"
    assert consumer.long_polls_refused == 0

    server.set_faults(max_long_polls=1)  # one long poll may wait; the others are refused
    wait_for(lambda: consumer.pollers_active == 1, timeout=30, what="back off to one poller")
    assert consumer.long_polls_refused >= 1
    assert consumer.stats.get("refused_polls") >= 1  # /metrics: long_polls_refused_total
    queue.send_message(Message(event_body("after-the-back-off")))
    wait_for(lambda: consumer.stats.get("deleted") == backlog + 1, timeout=10)
    assert running.stop() == EXIT_OK
    assert len(handled) == backlog + 1
