"""Everything that watches a running consumer from outside, started and stopped together:
the health verdicts, the ops endpoint (`[ops] listen`) and the systemd notifier.

    consumer = build_consumer(config)
    with supervised(config, consumer):
        exit_code = consumer.run()
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from vod_events.config import Config
from vod_events.consumer import Consumer
from vod_events.errors import ConfigError
from vod_events.service.health import Health
from vod_events.service.sdnotify import Notifier, ServiceReporter


@contextlib.contextmanager
def supervised(
    config: Config, consumer: Consumer, environ: Mapping[str, str] | None = None
) -> Iterator[Health]:
    """Start the watchers of `consumer`; stop them on exit. Call before `consumer.run()`.

    Takes over `consumer.on_ready`: the first successful receive marks the consumer
    connected (for `/readyz`) and sends systemd READY=1.
    """
    health = Health(consumer)
    reporter = ServiceReporter(consumer, health, Notifier(environ))
    consumer.on_ready = reporter.ready
    ops = None
    if config.ops.listen:
        from vod_events.service.ops import OpsServer  # prometheus-client loads only when used

        try:
            ops = OpsServer(config.ops.listen, consumer.stats, health).start()
        except OSError as exc:  # the port is taken, or the address is not ours
            raise ConfigError(
                f"cannot listen on {config.ops.listen}: {exc.strerror}",
                path=config.path,
                key="ops.listen",
            ) from None
    reporter.start()
    try:
        yield health
    finally:
        reporter.close()
        if ops is not None:
            ops.close()
