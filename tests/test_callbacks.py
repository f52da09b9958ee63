"""The VOD HTTP callback receiver, over real HTTP: signature checks, the shared pipeline
(handlers, dedupe, dead letters), limits, and the daemon and command-line entry points."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from callback_client import CALLBACK_URL, KEY, Receiver, Reply, callback_config, signed_headers
from helpers import Harness, event_body, free_port, wait_for
from service_process import Daemon

from vod_events.errors import ConfigError
from vod_events.events import AIVideoTagComplete, VodEvent
from vod_events.mns_server import LocalMNSServer
from vod_events.results import VideoTag
from vod_events.router import HandlerContext, Router
from vod_events.service.http_callbacks import (
    Authenticator,
    CallbackServer,
    build_callback_server,
    serving,
    sign,
)
from vod_events.transports.mns import MNSTransport

SAMPLES = Path(__file__).resolve().parent.parent / "vod_events" / "samples"


def test_signature_matches_the_reference_example() -> None:
    assert (
        sign("https://www.example.com/your/callback", "1519375990", "test123")
        == "c72b60894140fa98920f1279219b7ed4"
    )


# --- the authenticator, with a fixed clock ----------------------------------------------------

NOW = 1_700_000_000


def authenticator(*keys: str, window: int = 300) -> Authenticator:
    return Authenticator(CALLBACK_URL, keys or (KEY,), window, clock=lambda: NOW + 0.7)


@pytest.mark.parametrize("skew", [0, 300, -300])
def test_timestamps_inside_the_window_are_accepted(skew: int) -> None:
    timestamp = str(NOW + skew)
    assert authenticator().reject_reason(timestamp, sign(CALLBACK_URL, timestamp, KEY)) is None


@pytest.mark.parametrize(
    ("age", "reason"),
    [
        (301, "timestamp is 301 s old; the window is 300 s"),
        (-301, "timestamp is 301 s in the future; the window is 300 s"),
    ],
)
def test_timestamps_outside_the_window_are_rejected(age: int, reason: str) -> None:
    timestamp = str(NOW - age)
    signature = sign(CALLBACK_URL, timestamp, KEY)  # correctly signed, but too old / too new
    assert authenticator().reject_reason(timestamp, signature) == reason


def test_signature_is_read_case_insensitively() -> None:
    timestamp = str(NOW)
    signature = sign(CALLBACK_URL, timestamp, KEY).upper()
    assert authenticator().reject_reason(timestamp, signature) is None


@pytest.mark.parametrize(
    ("timestamp", "signature", "reason"),
    [
        (None, "ab", "missing X-VOD-TIMESTAMP header"),
        (str(NOW), None, "missing X-VOD-SIGNATURE header"),
        ("1.7e9", "ab", "X-VOD-TIMESTAMP is not Unix seconds"),
        (str(NOW), "0" * 32, "signature matches no configured key"),
    ],
)
def test_malformed_headers_are_rejected(
    timestamp: str | None, signature: str | None, reason: str
) -> None:
    assert authenticator().reject_reason(timestamp, signature) == reason


def test_signature_for_another_url_is_rejected() -> None:
    timestamp = str(NOW)
    signature = sign("http://10.0.0.5:8080/vod/callback", timestamp, KEY)
    assert authenticator().reject_reason(timestamp, signature) == (
        "signature matches no configured key"
    )


# --- over HTTP -------------------------------------------------------------------------------


Start = Callable[..., tuple[Receiver, Router]]


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    servers: list[CallbackServer] = []

    def make(**http_callback: Any) -> tuple[Receiver, Router]:
        config = callback_config(tmp_path / f"run-{len(servers)}", **http_callback)
        router = Router()
        server = build_callback_server(config, router=router).start()
        servers.append(server)
        receiver = Receiver(server, Path(config.dead_letter.dir))

        @router.on()
        def record(event: VodEvent, context: HandlerContext) -> None:
            receiver.handled.append((event, context))

        return receiver, router

    yield make
    for server in servers:
        server.close()


def test_a_signed_seed_payload_is_decoded_and_handled(start: Start) -> None:
    receiver, _ = start()
    body = (SAMPLES / "AIVideoTagComplete.seed002.json").read_bytes()

    reply = receiver.post_signed(body)

    assert (reply.status, reply.text) == (200, "ok\n")
    [(event, context)] = receiver.handled
    assert isinstance(event, AIVideoTagComplete)
    assert event.job_id == "jd83k4184c0e47098a5b665e2aj3****"
    assert event.media_id == "sj83k40d92c641401fab46a0b842e9****"
    assert event.result is not None
    assert event.result.location == [VideoTag(tag="Asia", times_ms=[8410])]
    assert context.message_id.startswith("http-")
    assert context.dequeue_count == 1
    assert context.source == "http"
    assert receiver.server.processor.stats.get("handled") == 1


def test_an_async_handler_is_awaited_before_the_callback_is_answered(start: Start) -> None:
    receiver, router = start()
    awaited: list[str] = []

    async def later(event: VodEvent, context: HandlerContext) -> None:
        await asyncio.sleep(0.05)
        awaited.append(str(event.job_id))

    router.add(later, name="later")
    reply = receiver.post_signed((SAMPLES / "AIVideoTagComplete.seed002.json").read_bytes())

    assert (reply.status, reply.text) == (200, "ok\n")  # answered after the await, not before
    assert awaited == ["jd83k4184c0e47098a5b665e2aj3****"]


def test_a_duplicate_is_not_handled_twice(start: Start) -> None:
    receiver, _ = start()
    body = event_body("job-dup")
    assert receiver.post_signed(body).status == 200
    assert receiver.post_signed(body).status == 200
    assert [event.job_id for event, _ in receiver.handled] == ["job-dup"]
    assert receiver.server.processor.stats.get("duplicates") == 1


@pytest.mark.parametrize(
    ("make_headers", "reason"),
    [
        (dict, "missing X-VOD-TIMESTAMP header"),
        (lambda: {"X-VOD-TIMESTAMP": str(int(time.time()))}, "missing X-VOD-SIGNATURE header"),
        (
            lambda: {"X-VOD-SIGNATURE": "c72b60894140fa98920f1279219b7ed4"},
            "missing X-VOD-TIMESTAMP",
        ),
        (lambda: signed_headers(key="a-guessed-key"), "signature matches no configured key"),
        (
            lambda: signed_headers(timestamp=int(time.time()) - 3600),
            "s old; the window is 300 s",
        ),
    ],
)
def test_unauthentic_callbacks_get_403_and_the_reason_is_logged_not_echoed(
    start: Start,
    make_headers: Callable[[], dict[str, str]],
    reason: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = make_headers()  # now, not at collection: the timestamps must be fresh
    receiver, _ = start()
    reply = receiver.post(event_body("job-forged"), headers)
    assert (reply.status, reply.text) == (403, "forbidden\n")
    assert receiver.handled == []
    # structlog hands the stdlib its event dicts (vod_events.service.logs): read them as logged.
    logged = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    [rejection] = [entry for entry in logged if entry["event"] == "callback rejected"]
    assert reason in rejection["reason"]
    assert rejection["client"] == "127.0.0.1"
    assert receiver.server.processor.stats.get("callbacks_rejected") == 1


def test_several_keys_are_accepted_for_rotation(start: Start) -> None:
    receiver, _ = start(auth_keys=["new-key", "old-key"])
    assert receiver.post_signed(event_body("job-a"), key="new-key").status == 200
    assert receiver.post_signed(event_body("job-b"), key="old-key").status == 200
    assert receiver.post_signed(event_body("job-c"), key=KEY).status == 403  # retired
    assert [event.job_id for event, _ in receiver.handled] == ["job-a", "job-b"]


def test_an_oversized_body_gets_413_unread(start: Start) -> None:
    receiver, _ = start(max_body_bytes=1024)
    big = json.dumps({**json.loads(event_body("job-big")), "Padding": "x" * 2000})
    reply = receiver.post_signed(big)
    assert reply.status == 413
    assert receiver.handled == []
    assert receiver.server.processor.stats.get("callbacks_rejected") == 1
    assert receiver.dead_letters() == []


def test_a_body_at_the_limit_is_accepted(start: Start) -> None:
    receiver, _ = start(max_body_bytes=1024)
    body = event_body("job-fit")
    body = body[:-1] + ', "Padding": "' + "x" * (1024 - len(body) - 15) + '"}'
    assert len(body) == 1024
    assert receiver.post_signed(body).status == 200


@pytest.mark.parametrize(
    ("body", "kept_as"),
    [
        (b'{"EventType": "AIVideoTagComplete", ', '{"EventType": "AIVideoTagComplete", '),
        (b"\xff\xfe<Event/>", "\ufffd\ufffd<Event/>"),  # not UTF-8: kept readable
    ],
)
def test_a_malformed_body_is_dead_lettered_then_acknowledged(
    start: Start, body: bytes, kept_as: str
) -> None:
    receiver, _ = start()
    reply = receiver.post_signed(body)
    assert reply.status == 200  # VOD must not retry it: it is durably kept
    [letter] = receiver.dead_letters()
    assert letter["body"] == kept_as
    assert letter["reason"].startswith("undecodable: ")
    assert letter["source_queue"] == "http-callback"
    assert letter["message_id"].startswith("http-")
    assert letter["properties"] == {"RemoteAddr": "127.0.0.1"}
    assert receiver.handled == []


def test_a_failing_handler_gets_5xx_and_the_event_is_kept_once(start: Start) -> None:
    receiver, router = start()
    failures: list[str] = []
    healthy = threading.Event()

    @router.on(AIVideoTagComplete)
    def flaky(event: AIVideoTagComplete, context: HandlerContext) -> None:
        if not healthy.is_set():
            failures.append(context.message_id)
            raise ConnectionError("downstream unavailable")

    body = event_body("job-flaky")
    first, second = receiver.post_signed(body), receiver.post_signed(body)  # VOD's retries
    assert (first.status, second.status) == (500, 500)
    assert len(failures) == 4  # two deliveries, two in-process attempts each
    [letter] = receiver.dead_letters()  # kept once, not once per attempt
    assert letter["body"] == body
    assert letter["reason"].startswith("not done over HTTP (retry: ")
    assert "ConnectionError: downstream unavailable" in letter["reason"]

    healthy.set()
    assert receiver.post_signed(body).status == 200  # VOD's third try
    assert receiver.server.processor.stats.get("handled") == 1


def test_saturation_gets_503(start: Start) -> None:
    receiver, router = start(max_concurrency=1)
    entered, release = threading.Event(), threading.Event()

    @router.on(AIVideoTagComplete)
    def slow(event: AIVideoTagComplete, context: HandlerContext) -> None:
        entered.set()
        release.wait(10)

    replies: list[Reply] = []
    busy = threading.Thread(target=lambda: replies.append(receiver.post_signed(event_body("a"))))
    busy.start()
    try:
        assert entered.wait(10)
        assert receiver.post_signed(event_body("b")).status == 503
    finally:
        release.set()
        busy.join(10)
    assert [r.status for r in replies] == [200]
    assert [event.job_id for event, _ in receiver.handled] == ["a"]


def test_other_paths_and_methods_are_refused(start: Start) -> None:
    receiver, _ = start()
    assert receiver.post_signed(event_body("x")).status == 200
    assert receiver.post(event_body("y"), signed_headers(), path="/other").status == 404
    assert receiver.post(b"", method="GET").status == 405
    assert [event.job_id for event, _ in receiver.handled] == ["x"]


def test_without_auth_keys_no_signature_is_needed(start: Start) -> None:
    receiver, _ = start(auth_keys=[], callback_url="")
    assert receiver.post(event_body("open")).status == 200
    assert [event.job_id for event, _ in receiver.handled] == ["open"]


@pytest.mark.parametrize(
    ("http_callback", "key"),
    [
        ({"callback_url": ""}, "http_callback.callback_url"),
        ({"auth_keys": ["k", ""]}, "http_callback.auth_keys"),
        ({"listen": "8080"}, "http_callback.listen"),
        ({"path": "callback"}, "http_callback.path"),
    ],
)
def test_invalid_settings_are_config_errors(
    tmp_path: Path, http_callback: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build_callback_server(callback_config(tmp_path, **http_callback))
    assert caught.value.key == key
    assert caught.value.path == "test.toml"


# --- inside the daemon, and as its own command -----------------------------------------------


def test_the_daemon_serves_callbacks_with_the_consumers_handlers(
    tmp_path: Path, harness: Callable[..., Harness]
) -> None:
    h = harness()
    seen: list[tuple[str | None, str]] = []

    @h.router.on(AIVideoTagComplete)
    def on_tag(event: AIVideoTagComplete, context: HandlerContext) -> None:
        seen.append((event.job_id, context.message_id[:5]))

    config = callback_config(tmp_path)
    with serving(config, h.consumer) as server:
        assert server is not None
        receiver = Receiver(server, tmp_path / "dead-letters")
        assert receiver.post_signed(event_body("job-http")).status == 200
    assert seen == [("job-http", "http-")]
    assert h.stats.get("handled") == 1  # one set of counters for both paths
    with serving(callback_config(tmp_path, listen=""), h.consumer) as nothing:
        assert nothing is None


def test_serve_callbacks_command_handles_then_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    events_file = tmp_path / "events.jsonl"
    config_file = tmp_path / "vod-events.toml"
    config_file.write_text(
        f"""
[mns]
endpoint = "http://127.0.0.1:9"
[http_callback]
listen = "127.0.0.1:{port}"
callback_url = "{CALLBACK_URL}"
auth_keys = ["{KEY}"]
[state]
dir = "{tmp_path / "state"}"
[[handlers]]
type = "jsonl"
path = "{events_file}"
"""
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "vod_events", "serve-callbacks", "--config", str(config_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(SAMPLES.parent.parent)},
    )
    try:

        def accepting() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                return False
            return True

        wait_for(accepting, timeout=20, what="the callback server to listen")
        body = (SAMPLES / "AIMediaDNAComplete.json").read_bytes()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", "/vod/callback", body=body, headers=signed_headers())
        assert connection.getresponse().status == 200
        connection.close()
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, stderr.decode()
    [line] = events_file.read_text().splitlines()
    record = json.loads(line)
    assert (record["event_type"], record["job_id"]) == (
        "AIMediaDNAComplete",
        "88c6ca184c0edj384a5b665e2a12****",
    )
    assert record["result"]["matches"][0]["similarity"] == 0.99
    assert KEY.encode() not in stderr  # the key never reaches the log


def test_the_consume_daemon_takes_events_from_the_queue_and_by_callback(tmp_path: Path) -> None:
    port = free_port()
    events_file = tmp_path / "events.jsonl"
    with LocalMNSServer(access_key_id="key-id", access_key_secret="mns-secret") as mns:
        mns.create_queue("events", visibility_timeout=30)
        config_file = tmp_path / "vod-events.toml"
        config_file.write_text(
            f"""
[mns]
endpoint = "{mns.endpoint}"
queue = "events"
[consumer]
wait_seconds = 1
[http_callback]
listen = "127.0.0.1:{port}"
callback_url = "{CALLBACK_URL}"
auth_keys = ["{KEY}"]
[state]
dir = "{tmp_path / "state"}"
[log]
format = "json"
[[handlers]]
type = "jsonl"
path = "{events_file}"
"""
        )
        environment = {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": "key-id",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "mns-secret",
        }
        with Daemon(config_file, environment) as daemon:
            MNSTransport(
                mns.endpoint, "events", access_key_id="key-id", access_key_secret="mns-secret"
            ).send(event_body("job-by-queue"))
            wait_for(
                lambda: events_file.exists() and events_file.stat().st_size > 0,
                timeout=20,
                what="the queued event to be handled",
            )
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request(
                "POST",
                "/vod/callback",
                body=event_body("job-by-callback"),
                headers=signed_headers(),
            )
            assert connection.getresponse().status == 200
            connection.close()
            daemon.process.send_signal(signal.SIGTERM)
            assert daemon.wait() == 0, daemon.output
    jobs = [json.loads(line)["job_id"] for line in events_file.read_text().splitlines()]
    assert jobs == ["job-by-queue", "job-by-callback"]
    assert any(e["event"] == "callback server listening" for e in daemon.log_events())
    assert KEY not in daemon.output
