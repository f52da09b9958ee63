"""Configuration: every kind of error with its exact message, environment overrides and their
precedence, secret masking, the generated example, and no secret in a real run's output."""

from __future__ import annotations

import dataclasses
import json
import re
import signal
import tomllib
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from helpers import event_body, free_port, wait_for
from http_app import App, serve
from service_process import Daemon

from vod_events.config import (
    SECRET_MASK,
    SECTIONS,
    Config,
    ConsumerSection,
    HandlerSection,
    from_dict,
    load,
    masked,
    secret_values,
)
from vod_events.config.example import example_toml
from vod_events.config.schema import DedupeSection
from vod_events.config.secrets import with_credentials
from vod_events.consumer import ConsumerSettings
from vod_events.deadletter import DirectorySink
from vod_events.dedupe import DEFAULT_CLAIM_TTL, SQLiteStore, renew_interval
from vod_events.errors import ConfigError
from vod_events.mns_server import LocalMNSServer
from vod_events.router import Router
from vod_events.service.assemble import (
    build_consumer,
    build_dead_letters,
    build_store,
    consumer_settings,
)
from vod_events.transports.memory import MemoryBroker, MemoryTransport
from vod_events.transports.mns import MNSTransport

REPO = Path(__file__).parent.parent
MINIMAL = '[mns]\nendpoint = "http://127.0.0.1:9876"\n'


def error_of(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> str:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as raised:
        load(path, environ or {})
    return str(raised.value)


def with_endpoint(snippet: str) -> str:
    """`snippet` (top-level keys first) plus the one required key, unless it sets [mns]."""
    return snippet + "\n" + ("" if "[mns]" in snippet else MINIMAL)


def allowed_keys(cls: type[Any]) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


# ------------------------------------------------------------------ errors, each kind


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load(tmp_path / "nope.toml", {})
    assert str(raised.value) == f"{tmp_path / 'nope.toml'}: file not found"


def test_not_toml(tmp_path: Path) -> None:
    message = error_of(tmp_path, "[mns\n")
    assert message.startswith(f"{tmp_path / 'bad.toml'}: not valid TOML: ")
    assert "line 1" in message


def test_unknown_section(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL + "[consumers]\nworkers = 2\n")
    allowed = ", ".join([*SECTIONS, "handlers"])
    assert message == (
        f"{tmp_path / 'bad.toml'}, key 'consumers': unknown section; allowed: {allowed}"
    )


def test_unknown_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL + "[consumer]\nworker = 2\n")
    assert message == (
        f"{tmp_path / 'bad.toml'}, key 'consumer.worker': unknown key; "
        f"allowed in [consumer]: {allowed_keys(ConsumerSection)}"
    )


def test_unknown_handler_key(tmp_path: Path) -> None:
    message = error_of(tmp_path, MINIMAL + '[[handlers]]\ntype = "log"\nurl2 = "x"\n')
    assert message == (
        f"{tmp_path / 'bad.toml'}, key 'handlers[0].url2': unknown key; "
        f"allowed in [handlers[0]]: {allowed_keys(HandlerSection)}"
    )


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ('[consumer]\nworkers = "many"', "key 'consumer.workers': must be an integer, got 'many'"),
        ("[consumer]\nworkers = true", "key 'consumer.workers': must be an integer, got True"),
        ("[consumer]\nworkers = 2.5", "key 'consumer.workers': must be an integer, got 2.5"),
        ('[retry]\nmax_wait = "5s"', "key 'retry.max_wait': must be a number, got '5s'"),
        ('[mns]\nendpoint = "http://x"\nqueue = 3', "key 'mns.queue': must be a string, got 3"),
        (
            '[[handlers]]\nevents = "*"\ntype = "log"',
            "key 'handlers[0].events': must be a list of strings, got '*'",
        ),
    ],
)
def test_wrong_type(tmp_path: Path, snippet: str, expected: str) -> None:
    assert error_of(tmp_path, with_endpoint(snippet)) == f"{tmp_path / 'bad.toml'}, {expected}"


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("[consumer]\nwait_seconds = 31", "key 'consumer.wait_seconds': must be in 0..30, got 31"),
        ("[consumer]\nworkers = 0", "key 'consumer.workers': must be in 1..1024, got 0"),
        (
            "[retry]\nmax_seconds = -1",
            "key 'retry.max_seconds': must be in 0..3600, got -1.0",
        ),
        (
            '[log]\nlevel = "verbose"',
            "key 'log.level': must be one of 'debug', 'info', 'warning', 'error', "
            "'critical', got 'verbose'",
        ),
        (
            '[ops]\nlisten = "localhost"',
            "key 'ops.listen': must be host:port with a port in 0..65535, got 'localhost'",
        ),
        (
            '[ops]\nlisten = "127.0.0.1:70000"',
            "key 'ops.listen': must be host:port with a port in 0..65535, got '127.0.0.1:70000'",
        ),
    ],
)
def test_out_of_range(tmp_path: Path, snippet: str, expected: str) -> None:
    assert error_of(tmp_path, with_endpoint(snippet)) == f"{tmp_path / 'bad.toml'}, {expected}"


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("[consumer]", None),  # an empty section is fine
        ("consumer = 3", "key 'consumer': must be a table ([section])"),
        ("handlers = 3", "key 'handlers': must be an array of tables ([[handlers]])"),
        ("[[handlers]]\nevents = []\ntype = 'log'", "key 'handlers[0].events': must list at "),
        ("[[handlers]]\nevents = ['*']", "key 'handlers[0]': set exactly one of 'call' or 'type'"),
        (
            "[[handlers]]\ncall = 'a:b'\ntype = 'log'",
            "key 'handlers[0]': set exactly one of 'call' or 'type'",
        ),
        ("[[handlers]]\ntype = 'jsonl'", "key 'handlers[0].path': the jsonl handler needs 'path'"),
        (
            "[[handlers]]\ntype = 'http'\nurl = 'ftp://x'",
            "key 'handlers[0].url': the http handler needs an http(s) 'url'",
        ),
    ],
)
def test_structure_errors(tmp_path: Path, snippet: str, expected: str | None) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text(with_endpoint(snippet))
    if expected is None:
        assert load(path, {}).consumer == ConsumerSection()
        return
    with pytest.raises(ConfigError) as raised:
        load(path, {})
    assert str(raised.value).startswith(f"{path}, {expected}")


def test_endpoint_is_required(tmp_path: Path) -> None:
    assert error_of(tmp_path, '[mns]\nqueue = "q"\n') == (
        f"{tmp_path / 'bad.toml'}, key 'mns.endpoint': is required (or VOD_EVENTS_MNS_ENDPOINT)"
    )


def test_environment_errors_name_the_variable_the_key_and_the_value(tmp_path: Path) -> None:
    assert error_of(tmp_path, MINIMAL, {"VOD_EVENTS_CONSUMER_WORKERS": "lots"}) == (
        "environment variable VOD_EVENTS_CONSUMER_WORKERS, key 'consumer.workers': "
        "must be an integer, got 'lots'"
    )
    assert error_of(tmp_path, MINIMAL, {"VOD_EVENTS_CONSUMER_WORKERS": "0"}) == (
        "environment variable VOD_EVENTS_CONSUMER_WORKERS, key 'consumer.workers': "
        "must be in 1..1024, got 0"
    )
    assert error_of(tmp_path, MINIMAL, {"VOD_EVENTS_LOG_FORMAT": "xml"}) == (
        "environment variable VOD_EVENTS_LOG_FORMAT, key 'log.format': must be one of 'auto', "
        "'json', 'console', got 'xml'"
    )
    assert error_of(tmp_path, MINIMAL, {"VOD_EVENTS_RETRY_MAX_WAIT": "5s"}) == (
        "environment variable VOD_EVENTS_RETRY_MAX_WAIT, key 'retry.max_wait': "
        "must be a number, got '5s'"
    )


def test_pollers_prefetch_deleters_take_auto_or_a_number(tmp_path: Path) -> None:
    """`pollers`, `prefetch` and `deleters` are "auto" by default (any case), or a number in
    range; anything else names the key and the file, or the variable."""
    path = tmp_path / "cfg.toml"
    path.write_text(MINIMAL + '[consumer]\npollers = "AUTO"\nprefetch = 8\n')
    config = load(path, {})
    assert (config.consumer.pollers, config.consumer.prefetch) == ("auto", 8)
    assert config.consumer.deleters == "auto"
    config = load(
        path, {"VOD_EVENTS_CONSUMER_POLLERS": "3", "VOD_EVENTS_CONSUMER_DELETERS": "auto"}
    )
    assert (config.consumer.pollers, config.consumer.deleters) == (3, "auto")
    bad = tmp_path / "bad.toml"
    assert error_of(tmp_path, MINIMAL + '[consumer]\npollers = "many"\n') == (
        f"{bad}, key 'consumer.pollers': must be \"auto\" or an integer, got 'many'"
    )
    assert error_of(tmp_path, MINIMAL + "[consumer]\npollers = 0\n") == (
        f"{bad}, key 'consumer.pollers': must be in 1..64, got 0"
    )
    assert error_of(tmp_path, MINIMAL + "[consumer]\ndeleters = true\n") == (
        f"{bad}, key 'consumer.deleters': must be \"auto\" or an integer, got True"
    )
    assert error_of(tmp_path, MINIMAL, {"VOD_EVENTS_CONSUMER_PREFETCH": "lots"}) == (
        "environment variable VOD_EVENTS_CONSUMER_PREFETCH, key 'consumer.prefetch': "
        "must be \"auto\" or an integer, got 'lots'"
    )


def test_consumer_settings_derive_what_is_auto(tmp_path: Path) -> None:
    from vod_events.consumer import ConsumerSettings
    from vod_events.polling import AUTO_MAX_POLLERS
    from vod_events.service.assemble import consumer_settings

    path = tmp_path / "cfg.toml"
    path.write_text(MINIMAL)
    s = consumer_settings(load(path, {}))
    assert s.pollers == "auto"
    assert (s.prefetch, s.deleters) == (16 * AUTO_MAX_POLLERS, AUTO_MAX_POLLERS // 2)
    path.write_text(MINIMAL + "[consumer]\npollers = 2\n")
    s = consumer_settings(load(path, {}))
    assert (s.pollers, s.prefetch, s.deleters) == (2, 32, 2)
    assert s.extenders_for(s.workers + s.prefetch) == 2
    assert ConsumerSettings(pollers=1, workers=4).prefetch == 16  # pinned: 16 per poller


# ------------------------------------------------------------------ precedence


def test_environment_beats_file_beats_defaults(tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text(MINIMAL + "[consumer]\nworkers = 4\npollers = 3\n[retry]\nmax_wait = 1.5\n")
    environ = {
        "VOD_EVENTS_CONSUMER_WORKERS": "32",
        "VOD_EVENTS_RETRY_INITIAL_WAIT": "0.5",
        "VOD_EVENTS_MNS_QUEUE": "from-env",
        "VOD_EVENTS_HTTP_CALLBACK_AUTH_KEYS": "key-a, key-b",
    }
    config = load(path, environ)
    assert config.consumer.workers == 32  # environment over file
    assert config.consumer.pollers == 3  # file over default
    assert config.consumer.prefetch == "auto"  # default
    assert config.retry.initial_wait == 0.5  # environment over default
    assert config.retry.max_wait == 1.5
    assert config.mns.queue == "from-env"
    assert config.http_callback.auth_keys == ["key-a", "key-b"]  # lists: comma-separated


def test_handler_keys_from_the_environment_by_index(tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text(
        MINIMAL
        + '[[handlers]]\ntype = "log"\n'
        + '[[handlers]]\ntype = "http"\nurl = "http://app:8080/"\n'
    )
    environ = {
        "VOD_EVENTS_HANDLERS_1_SECRET": "from-a-secret",
        "VOD_EVENTS_HANDLERS_1_TIMEOUT": "3",
    }
    config = load(path, environ)
    assert (config.handlers[1].secret, config.handlers[1].timeout) == ("from-a-secret", 3.0)
    assert config.handlers[0].secret == ""
    assert error_of(tmp_path, path.read_text(), {"VOD_EVENTS_HANDLERS_1_TIMEOUT": "-1"}) == (
        "environment variable VOD_EVENTS_HANDLERS_1_TIMEOUT, key 'handlers[1].timeout': "
        "must be in 0..3600, got -1.0"
    )


def test_endpoint_from_the_environment_alone(tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text("[consumer]\nworkers = 4\n")
    config = load(path, {"VOD_EVENTS_MNS_ENDPOINT": "http://127.0.0.1:1"})
    assert config.mns.endpoint == "http://127.0.0.1:1"


def test_access_key_precedence(tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    alibaba = {
        "ALIBABA_CLOUD_ACCESS_KEY_ID": "std-id",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "std-secret",
        "ALIBABA_CLOUD_SECURITY_TOKEN": "std-token",
    }
    path.write_text(MINIMAL)
    assert (load(path, alibaba).mns.access_key_id, load(path, alibaba).mns.security_token) == (
        "std-id",
        "std-token",
    )
    path.write_text(MINIMAL + 'access_key_secret = "file-secret"\n')
    assert load(path, alibaba).mns.access_key_secret == "file-secret"  # the file wins
    ours = {**alibaba, "VOD_EVENTS_MNS_ACCESS_KEY_SECRET": "ours"}
    assert load(path, ours).mns.access_key_secret == "ours"  # VOD_EVENTS_* wins over all


def test_systemd_credentials_supply_variables_the_environment_does_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "ALIBABA_CLOUD_ACCESS_KEY_SECRET").write_text("from-credential\n")
    (credentials / "VOD_EVENTS_CONSUMER_WORKERS").write_text("8")
    (credentials / "VOD_EVENTS_MNS_QUEUE").write_text("from-credential")
    (credentials / "PATH").write_text("/not/ours")  # only our variables are taken
    for name in ("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "VOD_EVENTS_CONSUMER_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    monkeypatch.setenv("VOD_EVENTS_MNS_QUEUE", "from-environment")
    path = tmp_path / "cfg.toml"
    path.write_text(MINIMAL)
    config = load(path)  # the process environment, as the daemon reads it
    assert config.mns.access_key_secret == "from-credential"  # without the newline
    assert config.consumer.workers == 8
    assert config.mns.queue == "from-environment"  # the environment wins
    assert load(path, {}).mns.access_key_secret == ""  # an explicit environ is taken as is
    supplied = with_credentials({"CREDENTIALS_DIRECTORY": str(credentials)})
    assert sorted(supplied) == [
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "CREDENTIALS_DIRECTORY",
        "VOD_EVENTS_CONSUMER_WORKERS",
        "VOD_EVENTS_MNS_QUEUE",
    ]


# ------------------------------------------------------------------ secrets


def secretive_config() -> Config:
    data = {
        "mns": {
            "endpoint": "http://127.0.0.1:9876",
            "access_key_id": "id-PLANTED",
            "access_key_secret": "secret-PLANTED",
        },
        "dedupe": {"backend": "redis", "url": "redis://:redis-pw-PLANTED@10.0.0.5:6379/0"},
        "http_callback": {"auth_keys": ["auth-1-PLANTED", "auth-2-PLANTED"]},
        "handlers": [{"type": "http", "url": "http://app:8080/", "secret": "hmac-PLANTED"}],
    }
    return from_dict(data, "<test>", {"ALIBABA_CLOUD_SECURITY_TOKEN": "token-PLANTED"})


def test_masking_hides_every_secret_and_shows_unset_ones() -> None:
    config = secretive_config()
    shown = masked(config)
    assert shown["mns"]["access_key_secret"] == SECRET_MASK
    assert shown["mns"]["security_token"] == SECRET_MASK  # from the environment
    assert shown["dedupe"]["url"] == SECRET_MASK
    assert shown["http_callback"]["auth_keys"] == SECRET_MASK
    assert shown["handlers"][0]["secret"] == SECRET_MASK
    assert shown["handlers"][0]["url"] == "http://app:8080/"
    assert "PLANTED" not in json.dumps(shown)
    assert "PLANTED" not in repr(shown)
    plain = masked(load_minimal())
    assert plain["mns"]["access_key_secret"] == ""  # unset: nothing to hide


def load_minimal() -> Config:
    return from_dict(tomllib.loads(MINIMAL), "<test>", {})


def test_secrets_lists_each_secret_value() -> None:
    assert sorted(secret_values(secretive_config())) == sorted(
        [
            "id-PLANTED",
            "secret-PLANTED",
            "token-PLANTED",
            "redis://:redis-pw-PLANTED@10.0.0.5:6379/0",
            "redis-pw-PLANTED",  # a URL's password alone too: a message may quote just that
            "auth-1-PLANTED",
            "auth-2-PLANTED",
            "hmac-PLANTED",
        ]
    )


# ------------------------------------------------------------------ derived values


def test_derived_paths_live_in_the_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path / 'systemd'}:{tmp_path / 'other'}")
    config = load_minimal()
    assert config.state_dir == tmp_path / "systemd"  # the first of systemd's directories
    assert config.dedupe_path == tmp_path / "systemd" / "dedupe.sqlite3"
    assert config.dead_letter_dir == tmp_path / "systemd" / "dead-letters"
    monkeypatch.delenv("STATE_DIRECTORY")
    state = from_dict(
        {**tomllib.loads(MINIMAL), "state": {"dir": str(tmp_path / "s")}}, "<test>", {}
    )
    assert (state.dedupe_path, state.dead_letter_dir) == (
        tmp_path / "s" / "dedupe.sqlite3",
        tmp_path / "s" / "dead-letters",
    )


def test_explicit_paths_win_over_the_state_directory(tmp_path: Path) -> None:
    data = {
        **tomllib.loads(MINIMAL),
        "state": {"dir": str(tmp_path / "s")},
        "dedupe": {"path": str(tmp_path / "d.db")},
        "dead_letter": {"dir": str(tmp_path / "dl")},
    }
    config = from_dict(data, "<test>", {})
    assert (config.dedupe_path, config.dead_letter_dir) == (tmp_path / "d.db", tmp_path / "dl")


def test_the_daemon_uses_the_derived_paths(tmp_path: Path) -> None:
    config = from_dict(
        {**tomllib.loads(MINIMAL), "state": {"dir": str(tmp_path / "s")}}, "<test>", {}
    )
    store = build_store(config)
    try:
        assert isinstance(store, SQLiteStore)
        assert store.path == config.dedupe_path
    finally:
        store.close()
    broker = MemoryBroker()
    sink = build_dead_letters(config, lambda queue: MemoryTransport(broker, queue))
    assert isinstance(sink, DirectorySink)
    assert sink.directory == config.dead_letter_dir


def test_consumer_settings_take_every_consumer_key_of_the_same_name() -> None:
    consumer = {
        "pollers": 3,
        "workers": 5,
        "prefetch": 7,
        "wait_seconds": 9,
        "shutdown_timeout": 11.5,
        "deleters": 4,
        "visibility_timeout": 45,
        "max_deliveries": 6,  # not a consumer setting: the processor's
    }
    config = from_dict({**tomllib.loads(MINIMAL), "consumer": consumer}, "<test>", {})
    settings = consumer_settings(config)
    shared = {f.name for f in dataclasses.fields(ConsumerSettings)} & set(consumer)
    assert shared == set(consumer) - {"max_deliveries"}
    assert {name: getattr(settings, name) for name in shared} == {
        name: consumer[name] for name in shared
    }
    # The fields that are not config keys keep their defaults.
    assert settings.delete_flush_seconds == ConsumerSettings().delete_flush_seconds
    assert settings.release_visibility == ConsumerSettings().release_visibility


def test_consumer_settings_defaults_are_the_config_defaults() -> None:
    # 0 in the config ("the queue's") is None in the settings.
    assert consumer_settings(load_minimal()) == ConsumerSettings()
    assert ConsumerSection().visibility_timeout == 0
    assert ConsumerSettings().visibility_timeout is None


# ------------------------------------------------------------------ config.example.toml


def test_committed_example_is_the_generated_one() -> None:
    committed = (REPO / "config.example.toml").read_text()
    assert committed == example_toml(), (
        "config.example.toml is stale: python -m vod_events.config.example > config.example.toml"
    )


def test_example_documents_every_key_with_its_true_default(tmp_path: Path) -> None:
    text = example_toml()
    # Uncomment every `# key = value` line: the result must be exactly the defaults.
    assignment = re.compile(r"^# ([a-z_]+ = .*)$")
    uncommented = "\n".join(
        assignment.sub(r"\1", line) if assignment.match(line) else line
        for line in text.splitlines()
    )
    path = tmp_path / "example.toml"
    path.write_text(uncommented)
    full = load(path, {})
    as_is = load(REPO / "config.example.toml", {})
    assert full == dataclasses.replace(as_is, path=str(path))
    for name, cls in SECTIONS.items():
        expected = (
            cls() if name != "mns" else dataclasses.replace(cls(), endpoint=full.mns.endpoint)
        )
        assert getattr(full, name) == expected, name
        for f in dataclasses.fields(cls):
            assert re.search(rf"^(# )?{f.name} = ", text.split(f"[{name}]")[1], re.M), f.name
    assert full.handlers == [HandlerSection(type="log")]


# ------------------------------------------------------------------ a real run, grepped

KEY_ID, ACCESS_SECRET = "run-key-id-PLANTED", "run-access-secret-PLANTED"
REDIS_PASSWORD, HMAC_SECRET = "run-redis-password-PLANTED", "run-hmac-secret-PLANTED"


def test_no_secret_in_any_output_of_a_real_run(tmp_path: Path) -> None:
    with (
        LocalMNSServer(access_key_id=KEY_ID, access_key_secret=ACCESS_SECRET) as server,
        serve(App(statuses=(503, 400))) as app,
    ):
        server.create_queue("events")
        sender = MNSTransport(
            server.endpoint, "events", access_key_id=KEY_ID, access_key_secret=ACCESS_SECRET
        )
        for i in range(3):
            sender.send(event_body(f"job-{i}"))
        config = tmp_path / "vod-events.toml"
        config.write_text(
            f'[mns]\nendpoint = "{server.endpoint}"\nqueue = "events"\n'
            f'access_key_id = "{KEY_ID}"\naccess_key_secret = "{ACCESS_SECRET}"\n'
            "[consumer]\npollers = 1\nworkers = 2\nwait_seconds = 1\n"
            "[retry]\ninitial_wait = 0.01\nmax_wait = 0.02\n"
            f'[dedupe]\nurl = "redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0"\n'
            f'[state]\ndir = "{tmp_path / "state"}"\n'
            '[log]\nformat = "json"\nlevel = "debug"\n'
            '[ops]\nlisten = "127.0.0.1:0"\n'
            f'[[handlers]]\nevents = ["*"]\ntype = "http"\nurl = "{app.url}"\n'
            f'secret = "{HMAC_SECRET}"\n'
            '[[handlers]]\nevents = ["*"]\ntype = "log"\n'
        )
        config.chmod(0o644)  # others can read it: a warning, without the secrets
        with Daemon(config, {}) as daemon:
            # One retried 503, one permanent 400 (dead-lettered), the rest handled.
            wait_for(lambda: len(app.requests) >= 4, timeout=20, what="four POSTs")
            listening = [e for e in daemon.log_events() if e["event"] == "ops endpoint listening"]
            metrics_url = f"{listening[0]['url']}/metrics"
            with urllib.request.urlopen(metrics_url, timeout=5) as response:  # noqa: S310 - local
                metrics = response.read().decode()
            daemon.process.send_signal(signal.SIGTERM)
            assert daemon.wait() == 0
        events = [e["event"] for e in daemon.log_events()]
        dead_letters = list((tmp_path / "state" / "dead-letters").glob("*.json"))
    output = daemon.output + metrics + "".join(p.read_text() for p in dead_letters)
    # The run did exercise the paths that log: retries, a dead letter, the config warning.
    assert "handler failed; retrying" in events
    assert len(dead_letters) == 1
    assert any("holds secrets" in e and "readable by" in e for e in events)
    assert "vod_events_messages_received_total 3.0" in metrics
    for secret in (KEY_ID, ACCESS_SECRET, REDIS_PASSWORD, HMAC_SECRET):
        assert secret not in output
    assert "PLANTED" not in output


# ------------------------------------------------------------------ values that used to pass


def float_keys() -> list[tuple[str, str, str]]:
    """(section label, key, its variable) for every float key of the schema."""
    found = [
        (name, f.name, f"VOD_EVENTS_{name.upper()}_{f.name.upper()}")
        for name, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
        if f.type == "float"
    ]
    found += [
        ("handlers[0]", f.name, f"VOD_EVENTS_HANDLERS_0_{f.name.upper()}")
        for f in dataclasses.fields(HandlerSection)
        if f.type == "float"
    ]
    return found


@pytest.mark.parametrize(("section", "name", "variable"), float_keys())
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_no_float_key_takes_nan_or_infinity(
    tmp_path: Path, section: str, name: str, variable: str, value: str
) -> None:
    handler = '[[handlers]]\ntype = "log"\n'
    if section == "handlers[0]":
        text = MINIMAL + f'[[handlers]]\ntype = "log"\n{name} = {value}\n'
    else:
        text = MINIMAL + f"[{section}]\n{name} = {value}\n" + handler
    assert error_of(tmp_path, text) == (
        f"{tmp_path / 'bad.toml'}, key '{section}.{name}': must be a finite number, "
        f"got {float(value)!r}"
    )
    assert error_of(tmp_path, MINIMAL + handler, {variable: value}) == (
        f"environment variable {variable}, key '{section}.{name}': must be a finite number, "
        f"got {float(value)!r}"
    )


def choice_keys() -> list[tuple[str, str, str]]:
    return [
        (name, f.name, choice)
        for name, cls in SECTIONS.items()
        for f in dataclasses.fields(cls)
        for choice in f.metadata["choices"]
        if choice
    ] + [
        ("handlers", f.name, choice)
        for f in dataclasses.fields(HandlerSection)
        for choice in f.metadata["choices"]
        if choice
    ]


@pytest.mark.parametrize(("section", "name", "choice"), choice_keys())
def test_choices_are_matched_whatever_their_case(section: str, name: str, choice: str) -> None:
    shouted = choice.upper() if choice != choice.upper() else choice.lower()
    endpoint = {"endpoint": "http://127.0.0.1:1"}
    if section == "handlers":  # the built-in's type; the keys each one needs
        table = {name: shouted, "path": "x.jsonl", "url": "http://127.0.0.1:1/"}
        config = from_dict({"mns": endpoint, "handlers": [table]}, "<test>", {})
        assert getattr(config.handlers[0], name) == choice
        return
    # The keys a choice needs besides (the postgres backend: a URL).
    needs = {"postgres": {"url": "postgresql://vod@db/app"}}.get(choice, {})
    data = {section: {name: shouted, **needs}}
    data["mns"] = {**data.get("mns", {}), **endpoint}
    assert getattr(getattr(from_dict(data, "<test>", {}), section), name) == choice
    variable = f"VOD_EVENTS_{section.upper()}_{name.upper()}"
    environ = {variable: shouted.title()}
    environ |= {f"VOD_EVENTS_{section.upper()}_{k.upper()}": v for k, v in needs.items()}
    from_env = from_dict({"mns": endpoint}, "<test>", environ)
    assert getattr(getattr(from_env, section), name) == choice


def test_a_boolean_key_takes_booleans_only(tmp_path: Path) -> None:
    text = MINIMAL + '[[handlers]]\ntype = "log"\nallow_unknown_events = "yes"\n'
    assert error_of(tmp_path, text) == (
        f"{tmp_path / 'bad.toml'}, key 'handlers[0].allow_unknown_events': "
        "must be true or false, got 'yes'"
    )
    table = MINIMAL + '[[handlers]]\ntype = "log"\n'
    variable = "VOD_EVENTS_HANDLERS_0_ALLOW_UNKNOWN_EVENTS"
    assert error_of(tmp_path, table, {variable: "maybe"}) == (
        f"environment variable {variable}, key 'handlers[0].allow_unknown_events': "
        "must be true or false, got 'maybe'"
    )
    path = tmp_path / "cfg.toml"
    path.write_text(table)
    for text, flag in (("true", True), ("Yes", True), ("1", True), ("off", False), ("0", False)):
        assert load(path, {variable: text}).handlers[0].allow_unknown_events is flag


def test_a_secret_of_the_wrong_type_is_not_shown(tmp_path: Path) -> None:
    text = MINIMAL.replace("\n", "\naccess_key_secret = 1234567890\n", 1)
    message = error_of(tmp_path, text)
    assert message == (
        f"{tmp_path / 'bad.toml'}, key 'mns.access_key_secret': must be a string, got ********"
    )


# ------------------------------------------------------------------ the claim lease


def test_claim_ttl_defaults_to_the_stores_lease_renewed_at_least_every_second(
    tmp_path: Path,
) -> None:
    assert DedupeSection().claim_ttl == DEFAULT_CLAIM_TTL == 15.0
    assert error_of(tmp_path, MINIMAL + "[dedupe]\nclaim_ttl = 2.9\n") == (
        f"{tmp_path / 'bad.toml'}, key 'dedupe.claim_ttl': must be in 3..86400, got 2.9"
    )
    for backend in ("sqlite", "memory"):
        data = {
            **tomllib.loads(MINIMAL),
            "dedupe": {"backend": backend, "claim_ttl": 3},
            "state": {"dir": str(tmp_path / "state")},
        }
        store = build_store(from_dict(data, "<test>", {}))
        try:
            assert store.claim_ttl == 3.0
            assert renew_interval(store) >= 1.0
        finally:
            store.close()
    default = build_store(
        from_dict({**tomllib.loads(MINIMAL), "dedupe": {"backend": "memory"}}, "<test>", {})
    )
    assert default.claim_ttl == DEFAULT_CLAIM_TTL


# ------------------------------------------------------------------ handlers the daemon needs


def test_a_python_router_with_handlers_needs_no_handlers_table(tmp_path: Path) -> None:
    config = from_dict(
        {**tomllib.loads(MINIMAL), "state": {"dir": str(tmp_path / "state")}}, "<test>", {}
    )
    assert config.handlers == []
    broker = MemoryBroker()

    def connect(queue: str) -> MemoryTransport:
        return MemoryTransport(broker, queue)

    router = Router()
    router.add(lambda event, ctx: None, name="in-python")
    consumer = build_consumer(config, connect=connect, router=router)
    consumer.processor.store.close()
    for empty in (None, Router()):
        with pytest.raises(ConfigError) as refused:
            build_consumer(config, connect=connect, router=empty)
        assert str(refused.value) == (
            "<test>, key 'handlers': no [[handlers]] table: the daemon would delete every "
            "event as unhandled; add one (call = 'package.module:function', or type = 'log', "
            "'jsonl' or 'http')"
        )


def test_errors_about_a_key_name_the_variable_that_set_it(tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text(MINIMAL + '[state]\ndir = "from-file"\n')
    from_file = load(path, {})
    assert str(from_file.error("state.dir", "broken")) == f"{path}, key 'state.dir': broken"
    from_env = load(path, {"VOD_EVENTS_STATE_DIR": "from-env"})
    assert str(from_env.error("state.dir", "broken")) == (
        "environment variable VOD_EVENTS_STATE_DIR, key 'state.dir': broken"
    )
    assert from_env == dataclasses.replace(from_file, state=from_env.state)  # not compared


# ------------------------------------------------------------------ the postgres backend

PG_PASSWORD = "pg-pw-PLANTED-7f3a"
PG_URL = f"postgresql://vod:{PG_PASSWORD}@db.internal:5432/app"
CALL_HANDLER = '[[handlers]]\nevents = ["*"]\ncall = "sample_handlers:record"\n'


def test_the_postgres_backend_keys_their_defaults_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text(
        MINIMAL
        + f'[dedupe]\nbackend = "postgres"\nurl = "{PG_URL}"\n'
        + CALL_HANDLER
        + "transactional = true\n"
    )
    config = load(path, {})
    assert (config.dedupe.backend, config.dedupe.url) == ("postgres", PG_URL)
    assert config.dedupe.schema == "vod_events"
    assert config.dedupe.statement_timeout == 10.0
    assert config.handlers[0].transactional is True
    assert (
        load(tmp_path / "cfg.toml", {"VOD_EVENTS_HANDLERS_0_TRANSACTIONAL": "false"})
        .handlers[0]
        .transactional
        is False
    )
    other = "postgresql://other:pw-from-env-PLANTED@10.0.0.9/app"
    from_env = load(
        path,
        {
            "VOD_EVENTS_DEDUPE_URL": other,
            "VOD_EVENTS_DEDUPE_SCHEMA": "events_store",
            "VOD_EVENTS_DEDUPE_STATEMENT_TIMEOUT": "0",
        },
    )
    assert (from_env.dedupe.url, from_env.dedupe.schema) == (other, "events_store")
    assert from_env.dedupe.statement_timeout == 0.0
    shown = masked(config)
    assert shown["dedupe"]["url"] == SECRET_MASK
    assert shown["dedupe"]["schema"] == "vod_events"
    assert shown["handlers"][0]["transactional"] is True
    assert PG_PASSWORD not in json.dumps(shown) + repr(config)
    assert PG_URL in secret_values(config)
    assert PG_PASSWORD in secret_values(config)  # alone too, for scrubbing messages


@pytest.mark.parametrize(
    ("snippet", "environ", "expected"),
    [
        (
            '[dedupe]\nbackend = "postgres"\n',
            {},
            "{path}, key 'dedupe.url': backend 'postgres' needs 'url' "
            "(postgresql://user:password@host:5432/dbname; or VOD_EVENTS_DEDUPE_URL)",
        ),
        (
            f'[dedupe]\nbackend = "postgres"\nurl = "db.internal:{PG_PASSWORD}"\n',
            {},
            "{path}, key 'dedupe.url': must be a PostgreSQL URL "
            "(postgresql://user:password@host:5432/dbname) or a conninfo string "
            "(host=... dbname=...), got ********",
        ),
        (
            '[dedupe]\nbackend = "postgres"\n',
            {"VOD_EVENTS_DEDUPE_URL": f"redis://:{PG_PASSWORD}@cache:6379/0"},
            "environment variable VOD_EVENTS_DEDUPE_URL, key 'dedupe.url': must be a "
            "PostgreSQL URL (postgresql://user:password@host:5432/dbname) or a conninfo "
            "string (host=... dbname=...), got ********",
        ),
        (
            f'[dedupe]\nbackend = "postgres"\nurl = "{PG_URL}"\nschema = "app.events"\n',
            {},
            "{path}, key 'dedupe.schema': must be a plain SQL identifier (a letter or _, then "
            "letters, digits or _; at most 63), got 'app.events'",
        ),
        (
            "[dedupe]\nstatement_timeout = -1\n",
            {},
            "{path}, key 'dedupe.statement_timeout': must be in 0..86400, got -1.0",
        ),
    ],
)
def test_postgres_backend_errors(
    tmp_path: Path, snippet: str, environ: dict[str, str], expected: str
) -> None:
    message = error_of(tmp_path, MINIMAL + snippet, environ)
    assert message == expected.format(path=tmp_path / "bad.toml")
    assert PG_PASSWORD not in message


def test_a_transactional_handler_needs_the_postgres_backend(tmp_path: Path) -> None:
    text = MINIMAL + CALL_HANDLER + "transactional = true\n"
    path = tmp_path / "bad.toml"
    assert error_of(tmp_path, text) == (
        f"{path}, key 'handlers[0].transactional': needs dedupe.backend = 'postgres', but "
        "dedupe.backend is 'sqlite': a transactional handler writes through ctx.db, a "
        "transaction in the store's own PostgreSQL database"
    )
    assert error_of(tmp_path, text, {"VOD_EVENTS_DEDUPE_BACKEND": "redis"}) == (
        f"{path}, key 'handlers[0].transactional': needs dedupe.backend = 'postgres', but "
        "dedupe.backend is 'redis' (set by VOD_EVENTS_DEDUPE_BACKEND): a transactional "
        "handler writes through ctx.db, a transaction in the store's own PostgreSQL database"
    )
    from_env = MINIMAL + CALL_HANDLER
    assert error_of(tmp_path, from_env, {"VOD_EVENTS_HANDLERS_0_TRANSACTIONAL": "1"}) == (
        "environment variable VOD_EVENTS_HANDLERS_0_TRANSACTIONAL, key "
        "'handlers[0].transactional': needs dedupe.backend = 'postgres', but dedupe.backend "
        "is 'sqlite': a transactional handler writes through ctx.db, a transaction in the "
        "store's own PostgreSQL database"
    )


def test_transactional_is_for_call_handlers_and_one_way_per_handler(tmp_path: Path) -> None:
    postgres = f'[dedupe]\nbackend = "postgres"\nurl = "{PG_URL}"\n'
    path = tmp_path / "bad.toml"
    builtin = '[[handlers]]\nevents = ["*"]\ntype = "log"\ntransactional = true\n'
    assert error_of(tmp_path, MINIMAL + postgres + builtin) == (
        f"{path}, key 'handlers[0].transactional': applies to `call` handlers only (ctx.db "
        "is for your code), not to the built-in 'log'"
    )
    twice = (
        '[[handlers]]\nevents = ["AIVideoTagComplete"]\ncall = "sample_handlers:record"\n'
        "transactional = true\n"
        '[[handlers]]\nevents = ["AIMediaDNAComplete"]\ncall = "sample_handlers:record"\n'
    )
    assert error_of(tmp_path, MINIMAL + postgres + twice) == (
        f"{path}, key 'handlers[1].transactional': is false but true in handlers[0], the same "
        "handler ('sample_handlers:record'): it runs one way for every event it matches"
    )


def test_build_store_builds_the_postgres_store_without_connecting(tmp_path: Path) -> None:
    from vod_events.postgres_store import PostgresStore

    port = free_port()
    url = f"postgresql://vod:{PG_PASSWORD}@127.0.0.1:{port}/app"
    config = from_dict(
        {
            **tomllib.loads(MINIMAL),
            "consumer": {"workers": 7},
            "dedupe": {"backend": "postgres", "url": url, "schema": "events", "claim_ttl": 9},
        },
        "<test>",
        {},
    )
    store = build_store(config)  # nothing listens there: it connects in the background
    try:
        assert isinstance(store, PostgresStore)
        assert (store.schema, store.claim_ttl) == ("events", 9.0)
        assert store.where == f"postgresql://vod@127.0.0.1:{port}/app"
        assert store._pool.max_size == 7 + 4  # a connection per worker, and spares
        assert PG_PASSWORD not in repr(store)
    finally:
        store.close()
    broken = dataclasses.replace(
        config, dedupe=dataclasses.replace(config.dedupe, url=f"vod:{PG_PASSWORD}@db host=")
    )
    with pytest.raises(ConfigError) as raised:
        build_store(broken)
    assert str(raised.value) == (
        "<test>, key 'dedupe.url': not a PostgreSQL URL or conninfo string "
        "(e.g. postgresql://user@host/db)"
    )
