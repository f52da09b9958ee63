"""A local, wire-compatible Alibaba Cloud MNS server for tests, demos and trying handlers.

The real aliyun-mns-sdk (1.3.0) talks to it over HTTP exactly as to the service: queues,
topics with queue subscriptions, signature V2, long polling, dead-letter moves, plus
injected latency and faults. Modules, from the outside in:

* `cli`       - the `vod-events mns-server` command;
* `server`    - `LocalMNSServer`: lifecycle, background thread, run-time controls;
* `httpd`     - HTTP/1.1 on asyncio, latency and fault injection (`faults`);
* `api`       - which request is which operation; long polling (`longpoll`);
* `auth`      - signature V2 and header checks;
* `wire`      - XML request decoding and response encoding;
* `queues`, `topics`, `envelopes` - the service's semantics, no HTTP in them;
* `model`, `errors`, `ids` - shared values, the service's error codes, identifiers.
"""

from vod_events.mns_server.server import LocalMNSServer

__all__ = ["LocalMNSServer"]
