"""`vod-events consume --config FILE`, also `python -m vod_events.consume --config FILE`.

Exit codes: 0 clean stop; 1 the queue refused us (credentials, missing queue); 2 bad
configuration (nothing was received); 70 an internal thread died; 75 stopped, but
`shutdown_timeout` ran out with handlers still running: they were abandoned, and their messages
return to the queue when their visibility lapses; 128+N a second signal N forced an immediate
exit (in-flight messages return to the queue when their visibility lapses).

An unreachable endpoint, at start or later, is not an exit: `consume` logs each failed call
(the endpoint and what failed, never a secret), backs off, and `/readyz` says why it is not
ready until receives succeed again.
"""

from __future__ import annotations

import argparse
import sys

import structlog

from vod_events import tracing
from vod_events.cli import config_error
from vod_events.config import load
from vod_events.config.secrets import exposure_warning
from vod_events.errors import ConfigError
from vod_events.service import http_callbacks, logs
from vod_events.service.assemble import build_consumer
from vod_events.service.memory import limit_malloc_arenas
from vod_events.service.signals import stop_on_signals
from vod_events.service.supervision import supervised


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the TOML config file")


def run(args: argparse.Namespace) -> int:
    try:
        config = load(args.config)
        logs.configure(config.log.level, config.log.format, tracing=config.tracing.enabled)
        if warning := exposure_warning(config.path):
            structlog.get_logger("vod_events.consume").warning(warning)
        limit_malloc_arenas()  # before build_consumer: before any thread
        consumer = build_consumer(config)
        # The ops endpoint and systemd notifications, when configured / run by systemd;
        # the HTTP callback receiver when [http_callback] listen is set.
        with supervised(config, consumer), http_callbacks.serving(config, consumer):
            stop_on_signals(consumer.stop)
            return consumer.run()
    except ConfigError as exc:
        return config_error(exc)
    finally:
        tracing.shutdown()  # the spans still buffered are exported (nothing when off)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m vod_events.consume")
    configure(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
