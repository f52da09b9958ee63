"""The threaded HTTP server under the ops endpoint and the callback receiver, served from a
background thread."""

from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import structlog

log = structlog.get_logger("vod_events.service.http_server")


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


class BackgroundServer:
    """`bind(host, port, handler)` served on a daemon thread named `name` until `stop()`."""

    def __init__(
        self,
        host: str,
        port: int,
        handler: type[BaseHTTPRequestHandler],
        *,
        name: str,
        poll_interval: float = 0.5,
    ) -> None:
        self.server = bind(host, port, handler)
        self._thread = threading.Thread(
            target=self.server.serve_forever, args=(poll_interval,), name=name, daemon=True
        )

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound (port 0 picks a free one)."""
        host, port = self.server.server_address[:2]
        return str(host), int(port)

    @property
    def base_url(self) -> str:
        host, port = self.address
        return f"http://{f'[{host}]' if ':' in host else host}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting and release the socket; requests already running may finish."""
        if self._thread.is_alive():
            self.server.shutdown()
            self._thread.join(timeout=5.0)
        self.server.server_close()
