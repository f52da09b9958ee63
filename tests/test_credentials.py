"""The one credentials resolver: each precedence rule, the default chain, what a missing key
says, and no secret in a repr or an error, for the daemon's config and every command."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from vod_events.aijobs import AIJobInputError, Credentials, submit_ai_job
from vod_events.config import from_dict, load
from vod_events.config.credentials import (
    DEFAULT_CHAIN,
    ENV_ACCESS_KEY_ID,
    ENV_ACCESS_KEY_SECRET,
    ENV_SECURITY_TOKEN,
    STATIC,
    default_chain,
    how_to_supply,
    resolve,
)
from vod_events.errors import ConfigError

SECRET = "resolver-secret-PLANTED"
TOKEN = "resolver-token-PLANTED"
KEY_ID = "resolver-id-PLANTED"
ENV = {
    ENV_ACCESS_KEY_ID: "env-id",
    ENV_ACCESS_KEY_SECRET: "env-secret",
    ENV_SECURITY_TOKEN: "env-t",
}
ENDPOINT = '[mns]\nendpoint = "http://127.0.0.1:9876"\n'


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("VOD_EVENTS_", "ALIBABA_CLOUD_", "CREDENTIALS_DIRECTORY")):
            monkeypatch.delenv(name)


def fields(c: Credentials) -> tuple[str, str, str, bool]:
    return (c.access_key_id, c.access_key_secret, c.security_token, c.default_chain)


# ------------------------------------------------------------------ precedence, one rule each


def test_flags_win_over_config_and_environment() -> None:
    flags = Credentials("flag-id", "flag-secret", "flag-token")
    config = Credentials("cfg-id", "cfg-secret", "cfg-token")
    assert fields(resolve(flags=flags, config=config, environ=ENV)) == (
        "flag-id",
        "flag-secret",
        "flag-token",
        False,
    )


def test_config_wins_over_the_environment() -> None:
    config = Credentials("cfg-id", "cfg-secret", "cfg-token")
    assert fields(resolve(config=config, environ=ENV)) == (
        "cfg-id",
        "cfg-secret",
        "cfg-token",
        False,
    )


def test_environment_is_the_last_static_source() -> None:
    assert fields(resolve(environ=ENV)) == ("env-id", "env-secret", "env-t", False)


def test_each_field_falls_through_on_its_own() -> None:
    # An id on the command line combines with the secret of the environment.
    found = resolve(flags=Credentials(access_key_id="flag-id"), config=Credentials(), environ=ENV)
    assert fields(found) == ("flag-id", "env-secret", "env-t", False)


def test_the_process_environment_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    assert fields(resolve()) == ("env-id", "env-secret", "env-t", False)


def test_nothing_anywhere_is_an_empty_key() -> None:
    found = resolve(environ={})
    assert not found.has_access_key
    assert fields(found) == ("", "", "", False)


def test_the_default_chain_when_chosen_replaces_every_static_source() -> None:
    flags = Credentials("flag-id", "flag-secret")
    found = resolve(DEFAULT_CHAIN, flags=flags, config=flags, environ=ENV)
    assert fields(found) == ("", "", "", True)


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="must be one of static, default, got 'ram'"):
        resolve("ram")


# ------------------------------------------------------------------ the config: resolved at load


def test_a_loaded_config_resolves_file_over_environment(tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text(ENDPOINT + 'access_key_id = "file-id"\n')
    config = load(path, ENV)
    assert fields(config.credentials) == ("file-id", "env-secret", "env-t", False)
    # What `Config.credentials` gives is what the [mns] section holds: one resolution.
    assert config.mns.access_key_secret == "env-secret"


def test_config_credentials_do_not_read_the_process_environment_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = from_dict(tomllib.loads(ENDPOINT), "<test>", {})
    monkeypatch.setenv(ENV_ACCESS_KEY_SECRET, "late-secret")
    assert not config.credentials.has_access_key  # the environ given to load, not os.environ


def test_config_default_chain_still_resolves_the_key_for_masking() -> None:
    config = from_dict(
        tomllib.loads(ENDPOINT + f'credentials = "{DEFAULT_CHAIN}"\n'),
        "<test>",
        {ENV_ACCESS_KEY_SECRET: SECRET},
    )
    assert config.credentials.default_chain
    assert config.mns.access_key_secret == SECRET  # known, so masked wherever it appears


def test_config_static_is_the_default_mode() -> None:
    config = from_dict(tomllib.loads(ENDPOINT), "<test>", {})
    assert config.mns.credentials == STATIC
    assert not config.credentials.default_chain


# ------------------------------------------------------------------ the default chain


def test_default_chain_reads_the_environment_first() -> None:
    # In a new process: alibabacloud-credentials reads its variables once, when imported.
    script = (
        "from vod_events.config.credentials import default_chain\n"
        "current = default_chain().get_credential()\n"
        "print(current.access_key_id, current.access_key_secret == 'chain-secret')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALIBABA_CLOUD_")}
    env.update({ENV_ACCESS_KEY_ID: "chain-id", ENV_ACCESS_KEY_SECRET: "chain-secret"})
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "chain-id True\n"), done.stderr


def test_default_chain_without_the_package_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "alibabacloud_credentials.client", None)
    with pytest.raises(ConfigError) as raised:
        default_chain("/etc/vod-events.toml")
    assert str(raised.value) == (
        "/etc/vod-events.toml, key 'mns.credentials': credentials = 'default' needs the "
        "alibabacloud-credentials package (pip install alibabacloud-credentials)"
    )


# ------------------------------------------------------------------ what a missing key says


def test_how_to_supply_names_only_the_callers_sources() -> None:
    assert how_to_supply() == f"set {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET}"
    assert how_to_supply(flags=True, chain="--credentials default") == (
        f"set {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET}, or pass --access-key-id and "
        "--access-key-secret, or use the default credential chain (--credentials default)"
    )
    assert "[mns] access_key_id and access_key_secret" in how_to_supply(config=True)


def test_an_incomplete_key_is_refused_by_the_vod_api_before_any_request() -> None:
    with pytest.raises(AIJobInputError, match="no credentials"):
        submit_ai_job("m", "AIVideoTag", credentials=Credentials(access_key_id="only-an-id"))


# ------------------------------------------------------------------ no secret shown


def test_repr_shows_which_parts_are_set_never_their_values() -> None:
    found = resolve(flags=Credentials(KEY_ID, SECRET, TOKEN))
    shown = repr(found) + str(found) + f"{found!r} {[found]}"
    assert "PLANTED" not in shown
    assert repr(found) == (
        "Credentials(access_key_id=<set>, access_key_secret=<set>, security_token=<set>)"
    )
    assert repr(Credentials(KEY_ID)) == (
        "Credentials(access_key_id=<set>, access_key_secret=<unset>, security_token=<unset>)"
    )
    assert repr(resolve(DEFAULT_CHAIN)) == "Credentials(default_chain=True)"


def test_a_config_repr_shows_no_resolved_secret() -> None:
    environ = {ENV_ACCESS_KEY_ID: KEY_ID, ENV_ACCESS_KEY_SECRET: SECRET, ENV_SECURITY_TOKEN: TOKEN}
    config = from_dict(tomllib.loads(ENDPOINT), "<test>", environ)
    assert config.mns.access_key_secret == SECRET
    assert "PLANTED" not in repr(config) + repr(config.mns) + repr(config.credentials)


def test_a_missing_key_error_never_carries_the_part_that_was_given() -> None:
    with pytest.raises(AIJobInputError) as incomplete:
        submit_ai_job("m", "AIVideoTag", credentials=Credentials(access_key_secret=SECRET))
    assert "no credentials" in str(incomplete.value)
    assert SECRET not in str(incomplete.value)
