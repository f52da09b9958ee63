"""`vod-events dedupe migrate --config FILE`: create the PostgreSQL idempotency store's schema
and tables ahead of time.

The daemon creates them on first use when its database role may; where it may not (a
locked-down database whose application role has no CREATE), run this once as a role that may,
with a config whose `[dedupe] url` (or `VOD_EVENTS_DEDUPE_URL`) names that role. It is
idempotent: tables that exist are left as they are.

Exit codes: 0 done (it prints what it created, or that nothing was missing); 1 the database
refused or could not be reached (the reason on stderr); 2 invalid configuration, a backend
other than postgres, or the PostgreSQL driver not installed. The database password is never
printed.
"""

from __future__ import annotations

import argparse
import sys

from vod_events.cli import EXIT_CONFIG, config_error
from vod_events.cli.doctor import mask
from vod_events.config import Config, load, secret_values
from vod_events.errors import ConfigError
from vod_events.service.assemble import require_postgres_driver

EXIT_OK, EXIT_REFUSED = 0, 1


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    migrate = sub.add_parser(
        "migrate",
        help="create the PostgreSQL store's schema and tables ([dedupe] backend = 'postgres')",
        description=(
            "Create the PostgreSQL idempotency store's schema and tables, for databases where "
            "the daemon's role may not create them. Idempotent."
        ),
    )
    migrate.add_argument("--config", required=True, help="the daemon's TOML config file")


def run(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
        if config.dedupe.backend != "postgres":
            raise config.error(
                "dedupe.backend",
                f"is {config.dedupe.backend!r}: `dedupe migrate` creates the tables of the "
                "'postgres' backend (the sqlite store creates its file itself; redis needs "
                "none)",
            )
        require_postgres_driver(config)
    except ConfigError as exc:
        return config_error(exc)
    return _migrate(config)


def _migrate(config: Config) -> int:
    from vod_events.postgres_store import TABLES, PostgresStoreError, describe_url, migrate

    d = config.dedupe
    hidden = secret_values(config)
    try:
        where = describe_url(d.url)
        created = migrate(d.url, d.schema)
    except PostgresStoreError as exc:
        print(mask(f"vod-events: dedupe migrate: {exc}", hidden), file=sys.stderr)
        return EXIT_REFUSED
    except ValueError as exc:  # the schema name: `load` refuses it already
        print(f"vod-events: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if created:
        for table in created:
            print(mask(f"created {table} in {where}", hidden))
    else:
        tables = " and ".join(f"{d.schema}.{table}" for table in TABLES)
        print(mask(f"nothing to create: {tables} exist in {where}", hidden))
    return EXIT_OK
