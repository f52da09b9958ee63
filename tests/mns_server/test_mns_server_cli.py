"""`vod-events mns-server` as a real process: start, serve the SDK, stop on a signal."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from mns.account import Account
from mns.mns_exception import MNSServerException
from mns.queue import Message

LISTENING = re.compile(r"vod-events mns-server listening on (http://127\.0\.0\.1:(\d+))")
SECRET = "cli-test-secret-value"


@contextmanager
def running(*options: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start the server with `options` on a free port; yield it and its endpoint."""
    process = subprocess.Popen(
        [sys.executable, "-m", "vod_events", "mns-server", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = LISTENING.fullmatch(line.strip())
        assert match, f"unexpected first line {line!r}"
        assert int(match[2]) > 0  # the real port, not 0
        yield process, match[1]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def stop(process: subprocess.Popen[str], signum: int) -> tuple[int, str]:
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=10)
    return process.returncode, stderr


def test_serves_the_sdk_and_exits_0_on_sigterm() -> None:
    options = ("--queue", "a", "--queue", "b", "--access-key-id", "cli-id")
    with running(*options, "--access-key-secret", SECRET) as (process, endpoint):
        account = Account(endpoint, "cli-id", SECRET)
        assert account.list_queue() == ([f"{endpoint}/queues/a", f"{endpoint}/queues/b"], "")
        queue = account.get_queue("a")
        queue.set_encoding(False)
        queue.send_message(Message("through a real process"))
        assert queue.receive_message(wait_seconds=1).message_body == "through a real process"
        with pytest.raises(MNSServerException) as refused:
            Account(endpoint, "cli-id", "wrong").get_queue("a").peek_message()
        assert refused.value.type == "SignatureDoesNotMatch"
        code, stderr = stop(process, signal.SIGTERM)
    assert code == 0
    assert SECRET not in stderr
    assert "warning" not in stderr


def test_sigint_also_stops_cleanly_and_warns_without_keys() -> None:
    with running("--queue", "a") as (process, endpoint):
        queue = Account(endpoint, "any", "thing").get_queue("a")
        queue.set_encoding(False)
        queue.send_message(Message("unsigned is fine"))
        code, stderr = stop(process, signal.SIGINT)
    assert code == 0
    assert "signatures are not verified" in stderr


def test_options_reach_the_server() -> None:
    options = ("--visibility-timeout", "7", "--dead-letter", "in:in-dlq:3")
    with running(*options) as (process, endpoint):
        account = Account(endpoint, "id", "sk")
        assert account.get_queue("in").get_attributes().visibility_timeout == 7
        assert account.get_queue("in-dlq").get_attributes().visibility_timeout == 7
        code, _ = stop(process, signal.SIGTERM)
    assert code == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--dead-letter", "only:two"), "SOURCE:TARGET:MAX_RECEIVE_COUNT"),
        (("--dead-letter", "a:a:3"), "its own dead-letter queue"),
        (("--access-key-id", "lonely"), "both access_key_id and access_key_secret"),
        (("--queue", "bad_name"), "queue 'bad_name'"),
        (("--fault-rate", "2"), "fault rate must be between 0 and 1"),
        (("--port", "99999"), "argument --port: must be in 0..65535, got 99999"),
        (("--port", "-1"), "argument --port: must be in 0..65535, got -1"),
        (("--port", "http"), "argument --port: must be a whole number, got 'http'"),
        (("--fault-rate", "nan"), "argument --fault-rate: must be a finite number >= 0"),
        (("--latency-ms", "inf"), "argument --latency-ms: must be a finite number >= 0"),
    ],
)
def test_bad_options_exit_2_with_a_message(options: tuple[str, ...], message: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vod_events", "mns-server", "--port", "0", *options],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_port_in_use_exits_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "vod_events", "mns-server", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
