"""The threaded HTTP server under the ops endpoint and the callback receiver."""

from __future__ import annotations

import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import structlog

log = structlog.get_logger("vod_events.http_server")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True  # a stalled client must not hold up exit

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hangs up mid-request is not worth a traceback on stderr.
        log.debug("HTTP request failed", client=str(client_address), exc_info=True)


class _QuietIPv6Server(_QuietServer):
    address_family = socket.AF_INET6


def bind(host: str, port: int, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """A server bound to (host, port), IPv6 when the host is an IPv6 address; not serving yet.

    Raises OSError when the address cannot be bound.
    """
    server_class = _QuietIPv6Server if ":" in host else _QuietServer
    return server_class((host, port), handler)
