"""`vod-events check-config`: validation, the effective config printed with secrets masked,
and the warning about config files others can read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from vod_events import cli
from vod_events.config import SECRET_MASK, load, masked, toml_writer

ACCESS_SECRET = "planted-access-secret-3b1f"
HMAC_SECRET = "planted-hmac-secret-77aa"

VALID = f"""
[mns]
endpoint = "http://127.0.0.1:9876"
queue = "events"
access_key_id = "key-id"
access_key_secret = "{ACCESS_SECRET}"

[consumer]
workers = 4

[[handlers]]
events = ["AIVideoTagComplete"]
type = "http"
url = "http://127.0.0.1:8080/vod"
secret = "{HMAC_SECRET}"
"""


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("VOD_EVENTS_", "ALIBABA_CLOUD_")):
            monkeypatch.delenv(name)


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "vod-events.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["check-config", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_prints_the_effective_config_as_toml_with_secrets_masked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, VALID)
    code, out, err = check(capsys, "--config", str(path))
    assert (code, err) == (0, "")
    assert out.startswith(f"# effective configuration of {path}\n")
    printed = tomllib.loads(out)
    assert printed == masked(load(path))
    assert printed["mns"]["access_key_secret"] == SECRET_MASK
    assert printed["mns"]["access_key_id"] == SECRET_MASK
    assert printed["mns"]["security_token"] == ""  # unset secrets show as unset
    assert printed["handlers"][0]["secret"] == SECRET_MASK
    assert printed["handlers"][0]["url"] == "http://127.0.0.1:8080/vod"
    assert printed["consumer"]["workers"] == 4
    assert printed["consumer"]["pollers"] == "auto"  # defaults are filled in
    assert ACCESS_SECRET not in out
    assert HMAC_SECRET not in out


def test_json_output_and_environment_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, VALID.replace(f'access_key_secret = "{ACCESS_SECRET}"\n', ""))
    monkeypatch.setenv("VOD_EVENTS_CONSUMER_WORKERS", "32")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ACCESS_SECRET)
    code, out, _ = check(capsys, "--config", str(path), "--format", "json")
    assert code == 0
    printed = json.loads(out)
    assert printed["consumer"]["workers"] == 32  # the environment beats the file
    assert printed["mns"]["access_key_secret"] == SECRET_MASK  # from the environment, masked
    assert ACCESS_SECRET not in out


def test_invalid_config_exits_2_naming_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, VALID.replace("workers = 4", 'workers = "many"'))
    code, out, err = check(capsys, "--config", str(path))
    assert code == 2
    assert out == ""
    assert err == (
        f"vod-events: config error: {path}, key 'consumer.workers': "
        "must be an integer, got 'many'\n"
    )


def test_a_handler_that_cannot_be_imported_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = VALID + '\n[[handlers]]\nevents = ["*"]\ncall = "no_such_module_xyz:handle"\n'
    path = write(tmp_path, text)
    code, out, err = check(capsys, "--config", str(path))
    assert code == 2
    assert out == ""
    assert err.startswith(
        f"vod-events: config error: {path}, key 'handlers[1].call': "
        "cannot import module 'no_such_module_xyz' for handler 'no_such_module_xyz:handle'"
    )


def test_secrets_in_a_file_others_can_read_get_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, VALID, mode=0o644)
    code, out, err = check(capsys, "--config", str(path))
    assert code == 0
    assert err == (
        f"vod-events: warning: {path} holds secrets (mns.access_key_id, "
        "mns.access_key_secret, handlers[0].secret) and is readable by its group and other "
        f"users (mode 0644); run `chmod 600 {path}` or move the secrets to environment "
        "variables (VOD_EVENTS_<SECTION>_<KEY>, ALIBABA_CLOUD_ACCESS_KEY_*)\n"
    )
    assert ACCESS_SECRET not in err + out

    path.chmod(0o640)
    _, _, err = check(capsys, "--config", str(path))
    assert "readable by its group (mode 0640)" in err

    path.chmod(0o600)
    assert check(capsys, "--config", str(path))[2] == ""


def test_a_readable_file_without_secrets_gets_no_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = '[mns]\nendpoint = "http://127.0.0.1:9876"\n[[handlers]]\ntype = "log"\n'
    path = write(tmp_path, text, mode=0o644)
    code, _, err = check(capsys, "--config", str(path))
    assert (code, err) == (0, "")


@pytest.mark.parametrize(
    "text",
    ['say "hi"', "back\\slash", "two\nlines\ttab", "bell\x07 del\x7f", "ünïcødé ✓ 😀", ""],
)
def test_toml_strings_round_trip(text: str) -> None:
    data = {"section": {"value": text, "items": [text, "x"]}}
    assert tomllib.loads(toml_writer.dumps(data)) == data


def test_toml_numbers_keep_their_types() -> None:
    data = {"s": {"i": 3, "f": 30.0, "tiny": 1e-9, "big": 604800.0, "t": True, "inf": 1e400}}
    loaded = tomllib.loads(toml_writer.dumps(data))
    assert loaded == data
    assert isinstance(loaded["s"]["f"], float)
    assert isinstance(loaded["s"]["i"], int)


# ------------------------------------------------------------------ the postgres backend

PG_PASSWORD = "planted-pg-password-91c0"
POSTGRES = f"""
[dedupe]
backend = "postgres"
url = "postgresql://vod:{PG_PASSWORD}@db.internal:5432/app"
schema = "events_store"

[[handlers]]
events = ["AIVideoTagComplete"]
call = "sample_handlers:record"
transactional = true
"""


def test_the_postgres_url_is_masked_and_the_other_keys_shown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, VALID + POSTGRES)
    code, out, err = check(capsys, "--config", str(path))
    assert (code, err) == (0, "")
    printed = tomllib.loads(out)
    assert printed["dedupe"]["backend"] == "postgres"
    assert printed["dedupe"]["url"] == SECRET_MASK
    assert printed["dedupe"]["schema"] == "events_store"
    assert printed["handlers"][1]["transactional"] is True
    assert PG_PASSWORD not in out


def test_a_postgres_config_error_never_shows_the_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, VALID + POSTGRES.replace('schema = "events_store"', 'schema = "a-b"'))
    monkeypatch.setenv("VOD_EVENTS_DEDUPE_URL", f"mysql://root:{PG_PASSWORD}@db/app")
    code, out, err = check(capsys, "--config", str(path))
    assert (code, out) == (2, "")
    assert err == (
        "vod-events: config error: environment variable VOD_EVENTS_DEDUPE_URL, key "
        "'dedupe.url': must be a PostgreSQL URL (postgresql://user:password@host:5432/dbname) "
        "or a conninfo string (host=... dbname=...), got ********\n"
    )


# Runs a command in a Python where psycopg cannot be imported, as if the `postgres` extra
# were not installed.
WITHOUT_PSYCOPG = (
    "import sys; sys.modules['psycopg'] = None; "
    "from vod_events.cli import main; sys.exit(main(sys.argv[1:]))"
)


@pytest.mark.parametrize(
    "command", [["check-config"], ["consume"], ["dedupe", "migrate"], ["serve-callbacks"]]
)
def test_without_the_postgres_extra_commands_say_what_to_install(
    tmp_path: Path, command: list[str]
) -> None:
    path = write(tmp_path, VALID + POSTGRES + '[http_callback]\nlisten = "127.0.0.1:0"\n')
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_PSYCOPG, *command, "--config", str(path)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr == (
        f"vod-events: config error: {path}, key 'dedupe.backend': backend 'postgres' needs "
        "the PostgreSQL driver, and 'psycopg' is not installed: pip install "
        "'vod-events[postgres]' (psycopg and psycopg-pool) in the environment that runs "
        "vod-events\n"
    )
