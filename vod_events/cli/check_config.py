"""`vod-events check-config --config FILE`: validate a config and print the effective values.

The output is what the daemon would run with: the file, environment overrides and defaults
merged, every secret masked. It refuses what the daemon would refuse at start: besides an
invalid file, a config without [[handlers]] (every event would be deleted unhandled), a
`call` handler whose module does not import or fails while it is imported, the postgres
backend without its driver (the `postgres` extra), and tracing without OpenTelemetry (the
`otel` extra). It never connects anywhere and creates nothing (`vod-events doctor` checks
the rest).

Exit codes: 0 valid (warnings go to stderr); 2 invalid, with the error naming the file and
the key (or the environment variable) on stderr.
"""

from __future__ import annotations

import argparse
import json
import sys

from vod_events.cli import config_error
from vod_events.config import Config, load, masked, require_handlers, toml_writer
from vod_events.config.secrets import exposure_warning
from vod_events.errors import ConfigError
from vod_events.router import import_handler
from vod_events.service.assemble import require_postgres_driver, require_tracing_sdk

EXIT_OK = 0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the TOML config file")
    parser.add_argument(
        "--format",
        choices=("toml", "json"),
        default="toml",
        help="how to print the effective config (default: toml)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
        require_handlers(config)
        require_postgres_driver(config)
        require_tracing_sdk(config)
        check_handlers(config)
    except ConfigError as exc:
        return config_error(exc)
    if warning := exposure_warning(config.path):
        print(f"vod-events: warning: {warning}", file=sys.stderr)
    sys.stdout.write(render(config, args.format))
    return EXIT_OK


def check_handlers(config: Config) -> None:
    """Import every `call = "module:function"` handler, as the daemon will at start."""
    for i, handler in enumerate(config.handlers):
        if handler.call:
            try:
                import_handler(handler.call)
            except ConfigError as exc:
                raise config.error(f"handlers[{i}].call", str(exc)) from None


def render(config: Config, fmt: str) -> str:
    """The effective config, secrets masked, as TOML (with a header comment) or JSON."""
    data = masked(config)
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    header = (
        f"# effective configuration of {config.path}\n"
        "# (file, environment overrides and defaults merged; secrets masked)\n"
    )
    return header + toml_writer.dumps(data)
