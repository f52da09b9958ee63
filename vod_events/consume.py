"""`vod-events consume --config FILE`, also `python -m vod_events.consume --config FILE`.

Exit codes: 0 clean stop; 1 the queue refused us (credentials, missing queue); 2 bad
configuration (nothing was received); 70 an internal thread died; 128+N a second signal N
forced an immediate exit (in-flight messages return to the queue when their visibility lapses).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from types import FrameType

import structlog

from vod_events import callbacks
from vod_events import log as logging_setup
from vod_events.app import build_consumer
from vod_events.cli import config_error
from vod_events.config import load
from vod_events.errors import ConfigError
from vod_events.file_secrets import exposure_warning
from vod_events.supervision import supervised
from vod_events.worker import Consumer


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the TOML config file")


def run(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
        logging_setup.configure(config.log.level, config.log.format)
        if warning := exposure_warning(config.path):
            structlog.get_logger("vod_events.consume").warning(warning)
        consumer = build_consumer(config)
        # The ops endpoint and systemd notifications, when configured / run by systemd;
        # the HTTP callback receiver when [http_callback] listen is set.
        with supervised(config, consumer), callbacks.serving(config, consumer):
            install_signal_handlers(consumer)
            return consumer.run()
    except ConfigError as exc:
        return config_error(exc)


def install_signal_handlers(consumer: Consumer) -> None:
    """First SIGTERM/SIGINT: graceful stop. Second: exit at once, non-zero."""
    log = structlog.get_logger("vod_events.consume")

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if consumer.stopping.is_set() or consumer.stop_requested:
            log.warning("second signal: exiting now", signal=name)
            os._exit(128 + signum)
        log.info("signal received: stopping gracefully", signal=name)
        consumer.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m vod_events.consume")
    configure(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
