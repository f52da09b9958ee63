"""`vod-events serve-callbacks --config FILE`: receive VOD HTTP callbacks only (no queue).

With no consumer beside it, the server renews its own idempotency claims (every
`dedupe.renew_interval`) while handlers run, and closes the store at the end.
Serves until SIGTERM/SIGINT. Exit 0 after a clean stop, 2 on a config error.
"""

from __future__ import annotations

import argparse
import threading

import structlog

from vod_events import tracing
from vod_events.cli import config_error
from vod_events.config import load, require_handlers
from vod_events.errors import ConfigError
from vod_events.service import logs
from vod_events.service.http_callbacks import build_callback_server
from vod_events.service.signals import stop_on_signals

log = structlog.get_logger("vod_events.callbacks")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the TOML config file")


def run(args: argparse.Namespace) -> int:
    """Serve callbacks until SIGTERM/SIGINT. Exit 0 after a clean stop, 2 on a config error."""
    try:
        config = load(args.config)
        require_handlers(config)  # it would answer 200 to every event and drop it
        logs.configure(config.log.level, config.log.format, tracing=config.tracing.enabled)
        server = build_callback_server(config).start()
    except ConfigError as exc:
        return config_error(exc)
    stop = threading.Event()

    def on_stop() -> None:
        server.processor.stopping.set()  # cut running handler retries short
        stop.set()

    stop_on_signals(on_stop)
    stop.wait()
    server.close(timeout=config.consumer.shutdown_timeout)
    log.info("callback server stopped", **server.processor.stats.snapshot().counters)
    tracing.shutdown()  # the spans still buffered are exported (nothing when off)
    return 0
