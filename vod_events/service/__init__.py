"""Running the engine as a service: what a long-running process needs around the consumer.

Modules, from the outside in:

* `assemble`       - builds the daemon's parts from a `Config`: transports, handlers,
                     idempotency store, dead-letter target, processor, consumer;
* `signals`        - two-phase stop on SIGTERM / SIGINT, shared by every long-running command;
* `supervision`    - the ops endpoint and systemd notifications around a running consumer;
* `ops`, `health`  - `/metrics`, `/healthz`, `/readyz` and the verdicts behind them;
* `sdnotify`       - systemd `READY=1`, `STATUS=`, `STOPPING=1` and the watchdog;
* `http_callbacks` - VOD's HTTP callbacks run through the same processor as the queue;
* `http_server`    - the small threaded HTTP server the last two share;
* `logs`           - one log format (structlog) for our lines and the libraries';
* `memory`         - malloc's arenas capped, once, before the daemon starts its threads.
"""
