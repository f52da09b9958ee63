"""What the daemon refuses at start, through real processes: `python -m vod_events
check-config --config F` and `python -m vod_events.consume --config F` exit 2 (systemd's
RestartPreventExitStatus=2: a crash instead would restart-loop) with one line naming the file
and the key - or the environment variable, with its value - and never a traceback.

Silent loss by misconfiguration (no handler, an EventType that does not exist) and bad input
that used to crash (an endpoint without a scheme, a file that is not UTF-8, nan, a state
directory that is a file, a handler module that fails as it is imported, no credentials,
unknown VOD_EVENTS_* variables)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
CHECK, CONSUME, CALLBACKS = "check-config", "consume", "serve-callbacks"
COMMANDS = {
    CHECK: ["-m", "vod_events", "check-config"],
    CONSUME: ["-m", "vod_events.consume"],
    CALLBACKS: ["-m", "vod_events", "serve-callbacks"],
}
ENDPOINT = '[mns]\nendpoint = "http://127.0.0.1:1"\n'
LOG_HANDLER = '[[handlers]]\ntype = "log"\n'
SECRET = "startup-secret-PLANTED"


def run(
    command: str,
    config: Path,
    env: dict[str, str] | None = None,
    *,
    credentials: bool = True,
    pythonpath: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `command` on `config` in a clean environment (no VOD_EVENTS_*, ALIBABA_CLOUD_* or
    systemd variables but those given), from the repository, so the code under test runs."""
    environ = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("VOD_EVENTS_", "ALIBABA_CLOUD_"))
        and name not in ("CREDENTIALS_DIRECTORY", "STATE_DIRECTORY", "NOTIFY_SOCKET")
    }
    environ["PYTHONPATH"] = os.pathsep.join(str(p) for p in (pythonpath, TESTS) if p)
    if credentials:
        environ |= {
            "ALIBABA_CLOUD_ACCESS_KEY_ID": "startup-id",
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET,
        }
    environ |= env or {}
    try:
        return subprocess.run(
            [sys.executable, *COMMANDS[command], "--config", str(config)],
            cwd=REPO,
            env=environ,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{command} did not exit: it started instead of refusing the config")


def refused(done: subprocess.CompletedProcess[str]) -> str:
    """The one config error line of a run that must have exited 2; checks the rest."""
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert SECRET not in done.stderr + done.stdout
    assert done.stdout == ""
    lines = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1, done.stderr
    prefix = "vod-events: config error: "
    assert lines[0].startswith(prefix)
    return lines[0].removeprefix(prefix)


def write(tmp_path: Path, text: str | bytes, name: str = "vod-events.toml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    path.chmod(0o600)
    return path


both = pytest.mark.parametrize("command", [CHECK, CONSUME])


# ------------------------------------------------------------------ silent loss (item 3)


@pytest.mark.parametrize("command", [CHECK, CONSUME, CALLBACKS])
def test_no_handlers_is_refused(tmp_path: Path, command: str) -> None:
    path = write(tmp_path, ENDPOINT + f'[state]\ndir = "{tmp_path / "state"}"\n')
    assert refused(run(command, path)) == (
        f"{path}, key 'handlers': no [[handlers]] table: the daemon would delete every event "
        "as unhandled; add one (call = 'package.module:function', or type = 'log', 'jsonl' "
        "or 'http')"
    )


@both
@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("AIVideoTagCompleet", "AIVideoTagComplete"),
        ("aimediadnacomplete", "AIMediaDNAComplete"),
        ("FileUploadCompleted", "FileUploadComplete"),
    ],
)
def test_an_unknown_event_type_is_refused_with_a_suggestion(
    tmp_path: Path, command: str, name: str, suggestion: str
) -> None:
    path = write(tmp_path, ENDPOINT + f'[[handlers]]\nevents = ["*", "{name}"]\ntype = "log"\n')
    assert refused(run(command, path)) == (
        f"{path}, key 'handlers[0].events': {name!r} is not a known EventType; did you mean "
        f"{suggestion!r}? (for a type VOD added after this release, set allow_unknown_events "
        "= true in this table)"
    )


def test_a_name_like_no_event_type_gets_no_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, ENDPOINT + '[[handlers]]\nevents = ["Zzz"]\ntype = "log"\n')
    assert refused(run(CHECK, path)).startswith(
        f"{path}, key 'handlers[0].events': 'Zzz' is not a known EventType (for a type"
    )


def test_an_unknown_event_type_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    path = write(tmp_path, ENDPOINT + LOG_HANDLER)
    done = run(CONSUME, path, {"VOD_EVENTS_HANDLERS_0_EVENTS": "AIVideoTagComplete,AIComplete"})
    assert refused(done).startswith(
        "environment variable VOD_EVENTS_HANDLERS_0_EVENTS, key 'handlers[0].events': "
        "'AIComplete' is not a known EventType"
    )


def test_allow_unknown_events_accepts_a_type_vod_added_later(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        ENDPOINT
        + '[[handlers]]\nevents = ["AIVideoTagComplete", "AIVideoSummaryComplete"]\n'
        + 'allow_unknown_events = true\ntype = "log"\n',
    )
    done = run(CHECK, path)
    assert (done.returncode, done.stderr) == (0, "")
    assert 'events = ["AIVideoTagComplete", "AIVideoSummaryComplete"]' in done.stdout
    assert "allow_unknown_events = true" in done.stdout
    # The same from the environment, for the table that lacks it.
    path = write(tmp_path, ENDPOINT + '[[handlers]]\nevents = ["NewVodEvent"]\ntype = "log"\n')
    done = run(CHECK, path, {"VOD_EVENTS_HANDLERS_0_ALLOW_UNKNOWN_EVENTS": "TRUE"})
    assert (done.returncode, done.stderr) == (0, "")


# ------------------------------------------------------------------ bad input (item 10)


@both
@pytest.mark.parametrize("endpoint", ["mns.example.com", "ftp://mns.example.com", "https://"])
def test_an_endpoint_without_http_or_https_is_refused(
    tmp_path: Path, command: str, endpoint: str
) -> None:
    path = write(tmp_path, f'[mns]\nendpoint = "{endpoint}"\n' + LOG_HANDLER)
    assert refused(run(command, path)) == (
        f"{path}, key 'mns.endpoint': must be an http:// or https:// URL, e.g. "
        f"https://<account-id>.mns.<region>.aliyuncs.com, got {endpoint!r}"
    )


def test_an_endpoint_from_the_environment_is_reported_as_such(tmp_path: Path) -> None:
    path = write(tmp_path, LOG_HANDLER)
    done = run(CONSUME, path, {"VOD_EVENTS_MNS_ENDPOINT": "127.0.0.1:9876"})
    assert refused(done) == (
        "environment variable VOD_EVENTS_MNS_ENDPOINT, key 'mns.endpoint': must be an http:// "
        "or https:// URL, e.g. https://<account-id>.mns.<region>.aliyuncs.com, "
        "got '127.0.0.1:9876'"
    )


@both
def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path, command: str) -> None:
    path = write(tmp_path, ENDPOINT.encode() + b'[[handlers]]\ntype = "l\xf6g"\n')
    assert refused(run(command, path)) == (
        f"{path}: not UTF-8 text (bad byte 0xf6 on line 4); TOML files are UTF-8"
    )


@both
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "+nan"])
def test_nan_and_infinity_are_refused(tmp_path: Path, command: str, value: str) -> None:
    path = write(tmp_path, ENDPOINT + f"[retry]\nmax_seconds = {value}\n" + LOG_HANDLER)
    assert refused(run(command, path)) == (
        f"{path}, key 'retry.max_seconds': must be a finite number, got {float(value)!r}"
    )


@pytest.mark.parametrize(
    ("sections", "key", "path"),
    [
        ('[state]\ndir = "{f}"\n', "state.dir", "{f}/dedupe.sqlite3"),
        ('[dedupe]\npath = "{f}/d.sqlite3"\n', "dedupe.path", "{f}/d.sqlite3"),
        (
            '[dedupe]\nbackend = "memory"\n[dead_letter]\ndir = "{f}/letters"\n',
            "dead_letter.dir",
            "{f}/letters",
        ),
        ('[dedupe]\nbackend = "off"\n[state]\ndir = "{f}"\n', "state.dir", "{f}/dead-letters"),
    ],
)
def test_a_state_path_that_cannot_be_created_is_a_config_error(
    tmp_path: Path, sections: str, key: str, path: str
) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a directory")
    text = ENDPOINT + sections.format(f=in_the_way) + LOG_HANDLER
    config = write(tmp_path, text)
    message = refused(run(CONSUME, config))
    assert message.startswith(
        f"{config}, key {key!r}: cannot create or open {path.format(f=in_the_way)}: "
    )
    if key == "state.dir":
        assert message.endswith(f"(the state directory {in_the_way} is [state] dir)")


def test_a_state_dir_from_the_environment_is_reported_as_such(tmp_path: Path) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a directory")
    config = write(tmp_path, ENDPOINT + LOG_HANDLER)
    done = run(CONSUME, config, {"VOD_EVENTS_STATE_DIR": str(in_the_way)})
    assert refused(done).startswith(
        f"environment variable VOD_EVENTS_STATE_DIR, key 'state.dir': cannot create or open "
        f"{in_the_way}/dedupe.sqlite3: "
    )


def test_a_jsonl_file_that_cannot_be_opened_names_its_key(tmp_path: Path) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a directory")
    text = (
        ENDPOINT
        + f'[state]\ndir = "{tmp_path / "state"}"\n'
        + f'[[handlers]]\ntype = "jsonl"\npath = "{in_the_way}/events.jsonl"\n'
    )
    config = write(tmp_path, text)
    assert refused(run(CONSUME, config)).startswith(
        f"{config}, key 'handlers[0].path': cannot open {in_the_way}/events.jsonl: "
    )


BROKEN_MODULES = {
    "raises_at_import": (
        "raise RuntimeError('no database configured')\n",
        "importing it raised RuntimeError: no database configured",
    ),
    "syntax_error": (
        "def handle(event, ctx:\n    pass\n",
        "SyntaxError in {dir}/syntax_error.py, line 1: ",
    ),
    "exits_at_import": ("import sys\nsys.exit(3)\n", "importing it raised SystemExit: 3"),
    "imports_a_missing_package": (
        "import no_such_dependency_xyz\n",
        "No module named 'no_such_dependency_xyz'",
    ),
}


@both
@pytest.mark.parametrize("module", list(BROKEN_MODULES))
def test_a_handler_module_that_fails_at_import_names_the_handler_key(
    tmp_path: Path, command: str, module: str
) -> None:
    source, reason = BROKEN_MODULES[module]
    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / f"{module}.py").write_text(source)
    text = (
        ENDPOINT
        + f'[state]\ndir = "{tmp_path / "state"}"\n'
        + LOG_HANDLER
        + f'[[handlers]]\nevents = ["AIVideoTagComplete"]\ncall = "{module}:handle"\n'
    )
    config = write(tmp_path, text)
    message = refused(run(command, config, pythonpath=modules))
    assert message.startswith(
        f"{config}, key 'handlers[1].call': cannot import module {module!r} for handler "
        f"'{module}:handle': "
    )
    assert reason.format(dir=modules) in message


@pytest.mark.parametrize(
    ("env", "key", "missing"),
    [
        ({}, "mns.access_key_id", "id or secret"),
        ({"ALIBABA_CLOUD_ACCESS_KEY_ID": "only-the-id"}, "mns.access_key_secret", "secret"),
        ({"VOD_EVENTS_MNS_ACCESS_KEY_SECRET": SECRET}, "mns.access_key_id", "id"),
    ],
)
def test_no_credentials_says_which_variables_to_set(
    tmp_path: Path, env: dict[str, str], key: str, missing: str
) -> None:
    config = write(tmp_path, ENDPOINT + f'[state]\ndir = "{tmp_path / "state"}"\n' + LOG_HANDLER)
    done = run(CONSUME, config, env, credentials=False)
    assert refused(done) == (
        f"{config}, key {key!r}: no AccessKey {missing}: set ALIBABA_CLOUD_ACCESS_KEY_ID and "
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET, or set [mns] access_key_id and access_key_secret, or "
        "use the default credential chain ([mns] credentials = 'default')"
    )
    assert not (tmp_path / "state").exists()  # refused before anything was created


@both
@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        (
            "VOD_EVENTS_CONSUMER_WORKER",
            "sets no config key; did you mean VOD_EVENTS_CONSUMER_WORKERS?",
        ),
        ("VOD_EVENTS_LOGLEVEL", "sets no config key; did you mean VOD_EVENTS_LOG_LEVEL?"),
        ("VOD_EVENTS_QUEUE", "sets no config key"),
        (
            "VOD_EVENTS_HANDLERS_1_SECRET",
            "there is no [[handlers]] table 1 in {config} (it has 1, counted from 0)",
        ),
    ],
)
def test_an_unknown_vod_events_variable_is_refused(
    tmp_path: Path, command: str, variable: str, expected: str
) -> None:
    config = write(tmp_path, ENDPOINT + LOG_HANDLER)
    message = refused(run(command, config, {variable: "4"}))
    assert message.startswith(f"environment variable {variable}: {expected.format(config=config)}")


def test_variables_kubernetes_and_the_tests_define_are_not_keys(tmp_path: Path) -> None:
    config = write(tmp_path, ENDPOINT + LOG_HANDLER)
    links = {  # what Kubernetes sets in every pod of a namespace with a Service "vod-events"
        "VOD_EVENTS_SERVICE_HOST": "10.0.0.7",
        "VOD_EVENTS_SERVICE_PORT": "9400",
        "VOD_EVENTS_SERVICE_PORT_METRICS": "9400",
        "VOD_EVENTS_PORT": "tcp://10.0.0.7:9400",
        "VOD_EVENTS_PORT_9400_TCP": "tcp://10.0.0.7:9400",
        "VOD_EVENTS_PORT_9400_TCP_PROTO": "tcp",
        "VOD_EVENTS_PORT_9400_TCP_PORT": "9400",
        "VOD_EVENTS_PORT_9400_TCP_ADDR": "10.0.0.7",
        "VOD_EVENTS_TEST_REDIS": "redis://127.0.0.1:6379/15",
    }
    done = run(CHECK, config, links)
    assert (done.returncode, done.stderr) == (0, "")


def test_systemd_credentials_are_reported_as_credentials(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    config = write(tmp_path, ENDPOINT + LOG_HANDLER)
    (credentials / "VOD_EVENTS_CONSUMER_WORKERS").write_text("many\n")
    done = run(CHECK, config, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert refused(done) == (
        "systemd credential VOD_EVENTS_CONSUMER_WORKERS, key 'consumer.workers': "
        "must be an integer, got 'many'"
    )
    (credentials / "VOD_EVENTS_CONSUMER_WORKERS").unlink()
    (credentials / "VOD_EVENTS_MNS_SECRET").write_text(SECRET)
    done = run(CONSUME, config, {"CREDENTIALS_DIRECTORY": str(credentials)})
    assert refused(done).startswith("systemd credential VOD_EVENTS_MNS_SECRET: sets no config key")


@both
def test_a_bad_override_names_the_variable_and_its_value(tmp_path: Path, command: str) -> None:
    config = write(tmp_path, ENDPOINT + LOG_HANDLER)
    done = run(command, config, {"VOD_EVENTS_CONSUMER_WORKERS": "0"})
    assert refused(done) == (
        "environment variable VOD_EVENTS_CONSUMER_WORKERS, key 'consumer.workers': "
        "must be in 1..1024, got 0"
    )
    done = run(command, config, {"VOD_EVENTS_DEDUPE_CLAIM_TTL": "nan"})
    assert refused(done) == (
        "environment variable VOD_EVENTS_DEDUPE_CLAIM_TTL, key 'dedupe.claim_ttl': "
        "must be a finite number, got nan"
    )


def test_a_mistyped_secret_is_masked(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        ENDPOINT + f'[http_callback]\nauth_keys = "{SECRET}"\n' + LOG_HANDLER,
    )
    assert refused(run(CHECK, config)) == (
        f"{config}, key 'http_callback.auth_keys': must be a list of strings, got ********"
    )


def test_enum_values_are_case_insensitive(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        '[mns]\nendpoint = "http://127.0.0.1:1"\ncredentials = "Static"\n'
        '[dedupe]\nbackend = "SQLite"\n[log]\nlevel = "INFO"\n[[handlers]]\ntype = "LOG"\n',
    )
    done = run(CHECK, config, {"VOD_EVENTS_LOG_FORMAT": "JSON"})
    assert (done.returncode, done.stderr) == (0, "")
    for line in (
        'credentials = "static"',
        'backend = "sqlite"',
        'level = "info"',
        'format = "json"',
        'type = "log"',
    ):
        assert line in done.stdout.splitlines()


@both
def test_a_systemd_credential_that_is_not_text_is_refused_unshown(
    tmp_path: Path, command: str
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "ALIBABA_CLOUD_ACCESS_KEY_SECRET").write_bytes(b"\xffPLANTED\xfe")
    config = write(tmp_path, ENDPOINT + LOG_HANDLER)
    done = run(command, config, {"CREDENTIALS_DIRECTORY": str(credentials)}, credentials=False)
    assert refused(done) == (
        "systemd credential ALIBABA_CLOUD_ACCESS_KEY_SECRET: "
        f"{credentials / 'ALIBABA_CLOUD_ACCESS_KEY_SECRET'} is not UTF-8 text"
    )
    assert "PLANTED" not in done.stderr
