"""`vod-events send` against the local MNS server."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mns.account import Account
from mns.mns_exception import MNSServerException

from vod_events import cli
from vod_events.mns_server import LocalMNSServer

KEY_ID = "send-key"
SECRET = "send-secret-do-not-print"


@pytest.fixture
def server() -> Iterator[LocalMNSServer]:
    with LocalMNSServer(queues=("events",), access_key_id=KEY_ID, access_key_secret=SECRET) as srv:
        yield srv


@pytest.fixture(autouse=True)
def no_ambient_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", raising=False)


def send(server: LocalMNSServer, *args: str, credentials: bool = True) -> int:
    keys = ["--access-key-id", KEY_ID, "--access-key-secret", SECRET] if credentials else []
    return cli.main(["send", "--endpoint", server.endpoint, "--queue", "events", *keys, *args])


def send_to(endpoint: str, queue: str, key_id: str, secret: str, path: Path) -> int:
    keys = ["--access-key-id", key_id, "--access-key-secret", secret]
    return cli.main(["send", "--endpoint", endpoint, "--queue", queue, *keys, str(path)])


def drain(server: LocalMNSServer) -> list[Any]:
    queue = Account(server.endpoint, KEY_ID, SECRET).get_queue("events")
    queue.set_encoding(False)
    received = []
    while batch := _receive(queue):
        received += batch
    return received


def _receive(queue: Any) -> list[Any]:
    try:
        return list(queue.batch_receive_message(16, wait_seconds=0))
    except MNSServerException:
        return []


def test_sends_each_file_as_is_and_prints_ids(
    server: LocalMNSServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = tmp_path / "a.json"
    first.write_text('{"EventType": "AIVideoTagComplete", "Note": "视频"}\n', encoding="utf-8")
    second = tmp_path / "b.xml"
    second.write_text("<x>&amp;</x>", encoding="utf-8")

    assert send(server, str(first), str(second)) == 0
    lines = capsys.readouterr().out.splitlines()
    printed = dict(line.split("\t") for line in lines)
    assert list(printed) == [str(first), str(second)]

    by_id = {m.message_id: m.message_body for m in drain(server)}
    assert by_id == {
        printed[str(first)]: '{"EventType": "AIVideoTagComplete", "Note": "视频"}\n',
        printed[str(second)]: "<x>&amp;</x>",
    }


def test_more_than_16_files_go_in_batches(
    server: LocalMNSServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = []
    for i in range(37):
        path = tmp_path / f"{i:02}.txt"
        path.write_text(f"message {i}")
        files.append(str(path))
    assert send(server, *files) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == files
    assert sorted(m.message_body for m in drain(server)) == sorted(
        f"message {i}" for i in range(37)
    )


def test_base64_sends_binary_files(server: LocalMNSServer, tmp_path: Path) -> None:
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"\x00\xff\xfe binary")
    assert send(server, "--base64", str(blob)) == 0
    [message] = drain(server)
    assert base64.b64decode(message.message_body) == b"\x00\xff\xfe binary"


def test_credentials_from_environment(
    server: LocalMNSServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
    note = tmp_path / "note.txt"
    note.write_text("from env")
    assert send(server, str(note), credentials=False) == 0
    assert [m.message_body for m in drain(server)] == ["from env"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing-file", "cannot read"),
        ("empty-file", "is empty"),
        ("not-utf8", "not UTF-8 text; send it with --base64"),
    ],
)
def test_file_problems_are_reported_before_sending(
    server: LocalMNSServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    setup: str,
    message: str,
) -> None:
    good = tmp_path / "good.txt"
    good.write_text("fine")
    bad = tmp_path / "bad"
    if setup == "empty-file":
        bad.write_bytes(b"")
    elif setup == "not-utf8":
        bad.write_bytes(b"\xff\xfe\x00")
    assert send(server, str(good), str(bad)) == 1
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.err.startswith("vod-events send: ")
    assert drain(server) == []  # nothing sent when a file is unusable


def test_no_credentials_is_a_clear_error(
    server: LocalMNSServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    note = tmp_path / "n.txt"
    note.write_text("x")
    assert send(server, str(note), credentials=False) == 1
    assert "no credentials" in capsys.readouterr().err


def test_service_errors_are_one_line_and_never_show_the_secret(
    server: LocalMNSServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    note = tmp_path / "n.txt"
    note.write_text("x")
    code = send_to(server.endpoint, "nope", KEY_ID, SECRET, note)
    wrong_secret = send_to(server.endpoint, "events", KEY_ID, "wrong-" + SECRET, note)
    captured = capsys.readouterr()
    assert (code, wrong_secret) == (1, 1)
    errors = captured.err.splitlines()
    assert errors[0].startswith("vod-events send: the service refused the batch: QueueNotExist")
    assert "SignatureDoesNotMatch" in errors[1]
    assert SECRET not in captured.err + captured.out
    assert "Traceback" not in captured.err


def test_unreachable_endpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    note = tmp_path / "n.txt"
    note.write_text("x")
    with LocalMNSServer() as stopped:
        endpoint = stopped.endpoint
    code = send_to(endpoint, "q", "a", "b", note)
    assert code == 1
    assert "cannot talk to the endpoint: NetWorkException" in capsys.readouterr().err


def test_endpoint_must_be_a_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    note = tmp_path / "n.txt"
    note.write_text("x")
    code = send_to("localhost:9876", "q", "a", "b", note)
    assert code == 1
    assert "endpoint must start with http:// or https://" in capsys.readouterr().err
