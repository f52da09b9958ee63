"""`vod-events doctor` against the local MNS server through the real SDK: each check's ok,
warning and error, the fixes it suggests, its exit code, and no secret in what it prints."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from helpers import free_port

from vod_events import cli
from vod_events.cli.doctor import Status, check_clock, redact_url
from vod_events.mns_server import LocalMNSServer
from vod_events.transports.mns import MNSTransport

KEY_ID, SECRET = "doctor-key-id", "doctor-secret-PLANTED"
QUEUE = "events"


@pytest.fixture
def server() -> Iterator[LocalMNSServer]:
    with LocalMNSServer(access_key_id=KEY_ID, access_key_secret=SECRET) as srv:
        srv.create_queue(QUEUE, visibility_timeout=60, maximum_message_size=65536)
        yield srv


@pytest.fixture(autouse=True)
def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith(("VOD_EVENTS_", "ALIBABA_CLOUD_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", SECRET)
    monkeypatch.chdir(tmp_path)


def config_text(endpoint: str, tmp_path: Path, extra: str = "", queue: str = QUEUE) -> str:
    return (
        f'[mns]\nendpoint = "{endpoint}"\nqueue = "{queue}"\n'
        f'[state]\ndir = "{tmp_path / "state"}"\n{extra}\n'
        '[[handlers]]\nevents = ["*"]\ncall = "sample_handlers:record"\n'
    )


def doctor(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> tuple[int, dict[str, tuple[str, str, str]], str]:
    """Run the command; return (exit code, {check: (status, detail, fix)}, raw output)."""
    path = tmp_path / "vod-events.toml"
    path.write_text(text)
    path.chmod(0o600)
    code = cli.main(["doctor", "--config", str(path)])
    out, err = capsys.readouterr()
    assert err == ""
    findings: dict[str, tuple[str, str, str]] = {}
    last = ""
    for line in out.splitlines()[:-1]:
        status, rest = line[:8].strip(), line[9:]
        if status:
            check, _, detail = rest.partition("  ")
            last = check.strip()
            findings[last] = (status, detail.strip(), "")
        else:
            status_, detail, _ = findings[last]
            findings[last] = (status_, detail, rest.strip().removeprefix("fix: "))
    return code, findings, out


def test_a_healthy_setup_is_all_ok(
    server: LocalMNSServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sender = MNSTransport(server.endpoint, QUEUE, access_key_id=KEY_ID, access_key_secret=SECRET)
    sender.send("one")
    sender.send("two")
    code, found, out = doctor(capsys, tmp_path, config_text(server.endpoint, tmp_path))
    assert code == 0
    assert found["credentials"] == ("ok", f"accepted by {server.endpoint}", "")
    assert found["queue"] == ("ok", "'events' exists", "")
    assert found["message size"] == ("ok", "MaximumMessageSize is 65536 bytes", "")
    assert found["visibility"] == (
        "ok",
        "60 s (the queue's VisibilityTimeout) covers 30 s of handler retries",
        "",
    )
    assert found["queue depth"] == ("ok", "2 waiting, 0 in flight, 0 delayed", "")
    assert found["clock"] == ("ok", "within 1 s of the server's Date header", "")
    assert found["handler 1"] == ("ok", "sample_handlers:record imports", "")
    state = tmp_path / "state"
    assert found["dedupe"] == (
        "ok",
        f"{state / 'dedupe.sqlite3'} can be created ({tmp_path} is writable)",
        "",
    )
    assert found["dead letters"] == (
        "ok",
        f"{state / 'dead-letters'} can be created ({tmp_path} is writable)",
        "",
    )
    assert out.splitlines()[-1] == "9 ok, 0 warning(s), 0 error(s)"
    assert not (tmp_path / "state").exists()  # the doctor only looks


def test_small_message_size_and_short_visibility_are_warnings(
    server: LocalMNSServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.create_queue(QUEUE, visibility_timeout=10, maximum_message_size=8192)
    app = f"http://127.0.0.1:{free_port()}/x"  # nothing listens there
    extra = f'[[handlers]]\ntype = "http"\nurl = "{app}"\ntimeout = 5.0\n'
    code, found, _ = doctor(capsys, tmp_path, config_text(server.endpoint, tmp_path, extra))
    assert code == 0  # warnings only
    status, detail, fix = found["message size"]
    assert status == "warning"
    assert detail.startswith("MaximumMessageSize is 8192 bytes: VOD silently drops events")
    assert fix == "set the queue's MaximumMessageSize to 65536 (MNS console, or SetQueueAttributes)"
    status, detail, fix = found["visibility"]
    assert status == "warning"
    assert detail.startswith(
        "a delivery may retry its handlers for up to 35 s, longer than the 10 s visibility"
    )
    assert fix == (
        "raise the queue's VisibilityTimeout to at least 35 s, or lower [retry] max_seconds"
    )
    assert found["handler 1"][:2] == ("warning", f"{app} is not reachable now: Connection refused")


def test_configured_visibility_timeout_is_the_one_judged(
    server: LocalMNSServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = "[consumer]\nvisibility_timeout = 120\n"
    _, found, _ = doctor(capsys, tmp_path, config_text(server.endpoint, tmp_path, extra))
    assert found["visibility"] == (
        "ok",
        "120 s ([consumer] visibility_timeout) covers 30 s of handler retries",
        "",
    )


def test_wrong_secret_is_an_error_and_never_printed(
    server: LocalMNSServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "wrong-secret-PLANTED")
    extra = '[dead_letter]\nqueue = "dlq"\n'
    code, found, out = doctor(capsys, tmp_path, config_text(server.endpoint, tmp_path, extra))
    assert code == 1
    status, detail, fix = found["credentials"]
    assert status == "error"
    assert detail.startswith("the AccessKey secret does not match the id: SignatureDoesNotMatch")
    assert fix.startswith("check the AccessKey id and secret")
    assert "queue" not in found  # nothing more can be learnt about the queue
    assert found["dead letters"] == ("warning", "queue 'dlq' not checked: MNS refused us", "")
    assert "PLANTED" not in out


def test_unknown_access_key_id(
    server: LocalMNSServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "someone-else")
    code, found, out = doctor(capsys, tmp_path, config_text(server.endpoint, tmp_path))
    assert code == 1
    assert found["credentials"][1].startswith(
        "the AccessKey id is not known to this account and region: InvalidAccessKeyId"
    )
    assert SECRET not in out


def test_no_access_key_at_all(
    server: LocalMNSServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET")
    code, found, _ = doctor(capsys, tmp_path, config_text(server.endpoint, tmp_path))
    assert code == 1
    assert found["credentials"][:2] == ("error", "no AccessKey configured")
    assert "ALIBABA_CLOUD_ACCESS_KEY_SECRET" in found["credentials"][2]


def test_missing_queue(
    server: LocalMNSServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = config_text(server.endpoint, tmp_path, queue="nope")
    code, found, _ = doctor(capsys, tmp_path, text)
    assert code == 1
    assert found["credentials"][0] == "ok"
    status, detail, fix = found["queue"]
    assert (status, detail) == ("error", f"'nope' does not exist at {server.endpoint}")
    assert "SetMessageCallback" in fix


def test_unreachable_endpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}"
    code, found, _ = doctor(capsys, tmp_path, config_text(endpoint, tmp_path))
    assert code == 1
    status, detail, fix = found["endpoint"]
    assert status == "error"
    assert detail.startswith(f"cannot reach {endpoint}: network error")
    assert fix.startswith("check [mns] endpoint")
    assert found["clock"][0] == "warning"


def test_server_refusing_our_clock_is_a_clock_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with LocalMNSServer(
        queues=(QUEUE,),
        access_key_id=KEY_ID,
        access_key_secret=SECRET,
        clock=lambda: time.time() + 20 * 60,  # the service is 20 minutes ahead of us
    ) as skewed:
        code, found, _ = doctor(capsys, tmp_path, config_text(skewed.endpoint, tmp_path))
    assert code == 1
    status, detail, fix = found["clock"]
    assert status == "error"
    assert detail.startswith("MNS rejected the request's Date as too far from its clock")
    assert fix == "synchronise this host's clock (chrony or systemd-timesyncd)"


class _DateServer:
    """A plain HTTP server whose Date header runs `offset` seconds off the real time."""

    def __init__(self, offset: float) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:
                self.send_response(403)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def date_time_string(self, timestamp: float | None = None) -> str:
                return formatdate(time.time() + offset, usegmt=True)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,))
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> _DateServer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.mark.parametrize(
    ("offset", "status", "detail"),
    [
        (0, Status.OK, "within 1 s of the server's Date header"),
        (-120, Status.WARNING, "this host's clock is 120 s ahead of MNS: lag metrics will be off"),
        (
            1200,
            Status.ERROR,
            "this host's clock is 1200 s behind MNS: requests are refused (TimeExpired)",
        ),
    ],
)
def test_clock_skew_from_the_date_header(offset: int, status: Status, detail: str) -> None:
    with _DateServer(offset) as server:
        finding = check_clock(server.endpoint)
    assert finding.status is status
    # Date has whole seconds: allow the last digit to differ by one.
    assert finding.detail == detail or _close(finding.detail, detail)


def _close(found: str, expected: str) -> bool:
    """Equal but for a number that differs by at most 1."""
    a, b = found.split(), expected.split()
    return len(a) == len(b) and all(
        x == y or (x.isdigit() and y.isdigit() and abs(int(x) - int(y)) <= 1)
        for x, y in zip(a, b, strict=True)
    )


def test_handlers_that_do_not_import_or_do_not_exist(
    server: LocalMNSServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = config_text(server.endpoint, tmp_path).replace(
        "sample_handlers:record", "no_such_package.handlers:on_event"
    )
    code, found, _ = doctor(capsys, tmp_path, text)
    assert code == 1
    status, detail, fix = found["handler 1"]
    assert status == "error"
    assert detail.startswith("cannot import module 'no_such_package.handlers'")
    assert "handlers[0].call" in fix

    no_handlers = text.split("[[handlers]]")[0]
    code, found, _ = doctor(capsys, tmp_path, no_handlers)
    assert code == 1  # the daemon refuses to start without a handler
    assert found["handlers"][:2] == (
        "error",
        "no [[handlers]]: the daemon refuses to start, as it would delete every event unhandled",
    )


BROKEN_MODULES = {  # module source, what the error says
    "raises": ("raise RuntimeError('no database configured')\n", "RuntimeError: no database"),
    "syntax": ("def handle(event, ctx:\n    pass\n", "SyntaxError in "),
    "exits": ("import sys\nsys.exit(3)\n", "SystemExit: 3"),
}


@pytest.mark.parametrize("case", list(BROKEN_MODULES))
def test_a_handler_module_that_fails_as_it_is_imported_is_reported(
    server: LocalMNSServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    source, reason = BROKEN_MODULES[case]
    module = f"doctor_broken_{case}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    text = config_text(server.endpoint, tmp_path).replace("sample_handlers:record", f"{module}:x")
    code, found, _ = doctor(capsys, tmp_path, text)
    assert code == 1
    status, detail, fix = found["handler 1"]
    assert status == "error"
    assert detail.startswith(f"cannot import module {module!r} for handler '{module}:x': ")
    assert reason in detail
    assert "fix the error the module raises" in fix
    assert found["dedupe"][0] == "ok"  # the checks after it ran


def test_unreachable_redis_is_an_error_without_its_password(
    server: LocalMNSServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    url = f"redis://:redis-password-PLANTED@127.0.0.1:{port}/0"
    extra = f'[dedupe]\nbackend = "redis"\nurl = "{url}"\n'
    code, found, out = doctor(capsys, tmp_path, config_text(server.endpoint, tmp_path, extra))
    assert code == 1
    status, detail, _ = found["dedupe"]
    assert status == "error"
    assert detail.startswith(f"Redis redis://:********@127.0.0.1:{port}/0: ConnectionError")
    assert "PLANTED" not in out


def test_memory_dedupe_is_a_warning(
    server: LocalMNSServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = '[dedupe]\nbackend = "memory"\n'
    _, found, _ = doctor(capsys, tmp_path, config_text(server.endpoint, tmp_path, extra))
    assert found["dedupe"] == (
        "warning",
        "backend 'memory': a redelivered event runs its handlers again after a restart",
        "use backend = 'sqlite' (one host), 'redis' or 'postgres' (several replicas)",
    )


def test_existing_sqlite_store_is_opened(
    server: LocalMNSServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vod_events.dedupe import SQLiteStore

    path = tmp_path / "state" / "dedupe.sqlite3"
    SQLiteStore(path).close()
    with contextlib.closing(sqlite3.connect(path)) as db:  # however many the store keeps
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    _, found, _ = doctor(capsys, tmp_path, config_text(server.endpoint, tmp_path))
    assert tables >= 1
    assert found["dedupe"] == ("ok", f"SQLite {path} opens ({tables} table(s))", "")


def test_state_directory_that_cannot_be_created(
    server: LocalMNSServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "state").write_text("a file where the state directory should be")
    code, found, _ = doctor(capsys, tmp_path, config_text(server.endpoint, tmp_path))
    assert code == 1
    status, detail, fix = found["dead letters"]
    assert status == "error"
    assert detail == (
        f"{tmp_path / 'state' / 'dead-letters'} cannot be created: "
        f"{tmp_path / 'state'} is not a writable directory"
    )
    assert "StateDirectory=" in fix


def test_dead_letter_queue(
    server: LocalMNSServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extra = '[dead_letter]\nqueue = "dlq"\n'
    code, found, _ = doctor(capsys, tmp_path, config_text(server.endpoint, tmp_path, extra))
    assert code == 1
    assert found["dead letters"][0] == "error"
    assert found["dead letters"][1].startswith("queue 'dlq': QueueNotExist")
    server.create_queue("dlq")
    code, found, _ = doctor(capsys, tmp_path, config_text(server.endpoint, tmp_path, extra))
    assert code == 0
    assert found["dead letters"] == ("ok", "queue 'dlq' exists", "")


def test_a_config_file_others_can_read_with_a_secret_in_it(
    server: LocalMNSServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = config_text(server.endpoint, tmp_path).replace(
        f'queue = "{QUEUE}"\n', f'queue = "{QUEUE}"\naccess_key_secret = "{SECRET}"\n'
    )
    path = tmp_path / "shared.toml"
    path.write_text(text)
    path.chmod(0o644)
    code = cli.main(["doctor", "--config", str(path)])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith(
        f"warning  config file   {path} holds secrets (mns.access_key_secret) and is readable"
    )
    assert SECRET not in out


def test_invalid_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[mns]\nendpoint = "http://x"\n[consumer]\npollers = 0\n')
    assert cli.main(["doctor", "--config", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"vod-events: config error: {path}, key 'consumer.pollers': must be in 1..64, got 0\n"
    )


def test_redact_url() -> None:
    assert redact_url("redis://:pw@host:6379/0") == "redis://:********@host:6379/0"
    assert redact_url("redis://user:pw@host/1") == "redis://user:********@host/1"
    assert redact_url("redis://host:6379/0") == "redis://host:6379/0"


# ------------------------------------------------------------------ the postgres store

PG_PASSWORD = "pg-password-PLANTED"


def postgres_extra(url: str, schema: str) -> str:
    return f'[dedupe]\nbackend = "postgres"\nurl = "{url}"\nschema = "{schema}"\n'


def with_password(url: str) -> str:
    """`url` as a conninfo string with a password (the test servers trust any)."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, password=PG_PASSWORD)


def test_a_postgres_store_with_its_tables_is_ok(
    server: LocalMNSServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    postgres_url: str,
    postgres_schema: str,
) -> None:
    from vod_events.postgres_store import describe_url, migrate

    migrate(postgres_url, postgres_schema)
    extra = postgres_extra(with_password(postgres_url), postgres_schema)
    code, found, out = doctor(capsys, tmp_path, config_text(server.endpoint, tmp_path, extra))
    assert "PLANTED" not in out
    assert code == 0
    assert found["dedupe"] == (
        "ok",
        f"PostgreSQL {describe_url(postgres_url)} answers; {postgres_schema}.idempotency and "
        f"{postgres_schema}.deferrals are there",
        "",
    )


def test_missing_postgres_tables_the_role_may_create_are_ok_and_not_created(
    server: LocalMNSServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    postgres_url: str,
    postgres_schema: str,
) -> None:
    import psycopg

    from vod_events.postgres_store import describe_url

    extra = postgres_extra(with_password(postgres_url), postgres_schema)
    code, found, _ = doctor(capsys, tmp_path, config_text(server.endpoint, tmp_path, extra))
    assert code == 0
    assert found["dedupe"] == (
        "ok",
        f"PostgreSQL {describe_url(postgres_url)} answers; {postgres_schema}.idempotency and "
        f"{postgres_schema}.deferrals are missing, and the daemon creates them on first use "
        "(this role may)",
        "",
    )
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        schemas = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", (postgres_schema,)
        ).fetchall()
    assert schemas == []  # the doctor only looks


def test_unreachable_postgres_is_an_error_without_its_password(
    server: LocalMNSServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    url = f"postgresql://vod:{PG_PASSWORD}@127.0.0.1:{port}/app"
    extra = postgres_extra(url, "vod_events")
    started = time.monotonic()
    code, found, out = doctor(capsys, tmp_path, config_text(server.endpoint, tmp_path, extra))
    assert time.monotonic() - started < 20
    assert code == 1
    status, detail, fix = found["dedupe"]
    assert status == "error"
    assert detail.startswith(
        f"checking the database: PostgreSQL at postgresql://vod@127.0.0.1:{port}/app is "
        "unreachable: "
    )
    assert "Connection refused" in detail
    assert fix.startswith("check [dedupe] url (postgresql://user:password@host:5432/dbname")
    assert "PLANTED" not in out
