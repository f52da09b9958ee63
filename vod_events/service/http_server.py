"""The threaded HTTP server under the ops endpoint and the callback receiver, served from a
background thread.

Optionally (`max_connections`, with a `DeadlineHandler`) it holds out against slow clients:

- a request must arrive whole — request line, headers and body — within the handler's
  `read_deadline` of its connection opening: each read waits only for the time left, so a
  client sending a byte now and then cannot stretch it (a per-read timeout would let it);
- at most `max_connections` connections are open, each on its own thread. When one more
  arrives, the oldest connection that has not sent a complete request yet is dropped for it
  (then the oldest still sending the body of an accepted request); connections whose request
  is being processed are never dropped. Only if all of them are, the new one is closed.
  So a flood of slow or idle connections costs a bounded number of threads, and a real
  client, which sends its request at once, is served.
"""

from __future__ import annotations

import contextlib
import enum
import io
import math
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

log = structlog.get_logger("vod_events.service.http_server")

WRITE_TIMEOUT_S = 5.0  # a reply that cannot be written in this long is abandoned
DROP_WARNING_EVERY_S = 10.0  # at most one warning this often about dropped connections


class Stage(enum.IntEnum):
    """Where a connection is; when the limit is reached, the lowest stage goes first."""

    WAITING = 0  # no complete, accepted request yet (request line, headers)
    READING = 1  # reading the body of a request whose headers were accepted
    BUSY = 2  # its request is being processed or answered: never dropped


@dataclass(slots=True)
class _Connection:
    stage: Stage
    since: float  # time.monotonic() when it entered `stage`


class Connections:
    """The open connections of one server, at most `limit`, and which to drop for a new one.

    Dropping shuts a connection's socket down (its thread's blocked read returns at once);
    it happens under the same lock as `forget`, which runs before the socket is closed, so a
    socket number reused by a newer connection is never shut down by mistake.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the connection limit must be at least 1")
        self.limit = limit
        self._open: dict[socket.socket, _Connection] = {}
        self._lock = threading.Lock()
        self.dropped = 0  # connections dropped for newer ones, or refused
        self._dropped_reported = 0
        self._last_warning = -math.inf

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def admit(self, sock: socket.socket) -> bool:
        """Register a new connection, dropping the oldest droppable one if the limit is
        reached. False when every open connection is busy: close the new one."""
        now = time.monotonic()
        with self._lock:
            if len(self._open) >= self.limit:
                victim = min(
                    (c for c in self._open.items() if c[1].stage is not Stage.BUSY),
                    key=lambda c: (c[1].stage, c[1].since),
                    default=None,
                )
                self.dropped += 1
                if victim is None:
                    self._warn(now, "every connection is busy: refused a new one")
                    return False
                del self._open[victim[0]]
                _shut(victim[0])
                self._warn(now, "connection limit reached: dropped the oldest slow connection")
            self._open[sock] = _Connection(Stage.WAITING, now)
            return True

    def mark(self, sock: socket.socket, stage: Stage) -> bool:
        """Move a connection to `stage`; False if it was dropped meanwhile."""
        with self._lock:
            connection = self._open.get(sock)
            if connection is None:
                return False
            connection.stage, connection.since = stage, time.monotonic()
            return True

    def forget(self, sock: socket.socket) -> None:
        """Before its socket is closed."""
        with self._lock:
            self._open.pop(sock, None)

    def drop_waiting(self) -> None:
        """Drop every connection that is not busy (at shutdown: no new request starts)."""
        with self._lock:
            for sock, connection in list(self._open.items()):
                if connection.stage is not Stage.BUSY:
                    del self._open[sock]
                    _shut(sock)

    def _warn(self, now: float, message: str) -> None:
        """Under attack this happens per connection: warn now and then, with the count."""
        if now - self._last_warning >= DROP_WARNING_EVERY_S:
            self._last_warning = now
            log.warning(
                message,
                limit=self.limit,
                dropped_since_last_warning=self.dropped - self._dropped_reported,
            )
            self._dropped_reported = self.dropped


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already gone
        sock.shutdown(socket.SHUT_RDWR)


class DeadlineReader(io.RawIOBase):
    """Reads a socket until `deadline` (time.monotonic()): each read waits only for the time
    left, then raises TimeoutError."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self.deadline = math.inf

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the read deadline has passed")
        self._sock.settimeout(None if left == math.inf else left)
        return self._sock.recv_into(buffer)


class TimedWriter(io.BufferedIOBase):
    """Writes to a socket, each write within `timeout` s (the reads leave their own timeout
    on the socket)."""

    def __init__(self, sock: socket.socket, timeout: float = WRITE_TIMEOUT_S) -> None:
        super().__init__()
        self._sock = sock
        self._timeout = timeout

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        self._sock.settimeout(self._timeout)
        self._sock.sendall(data)
        with memoryview(data) as view:
            return view.nbytes


class DeadlineHandler(BaseHTTPRequestHandler):
    """A request handler whose request must arrive whole within `read_deadline` s of its
    connection opening (one deadline for all reads, see `DeadlineReader`).

    Call `enter(stage)` as the request moves on, so that the server drops the right
    connections when it has too many (see `Connections`).
    """

    read_deadline: float = 5.0
    reader: DeadlineReader
    opened: float  # time.monotonic() when the connection's thread started

    def setup(self) -> None:
        self.opened = time.monotonic()
        self.connection = self.request
        self.reader = DeadlineReader(self.connection)
        self.reader.deadline = self.opened + self.read_deadline
        self.rfile = io.BufferedReader(self.reader)
        self.wfile = TimedWriter(self.connection)

    def enter(self, stage: Stage) -> bool:
        """Record this connection's stage; False if the server dropped it meanwhile."""
        connections = getattr(self.server, "connections", None)
        if not isinstance(connections, Connections):
            return True  # no limit on this server
        return connections.mark(self.connection, stage)


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True  # a stalled client must not hold up exit
    # Connections the kernel completes before we accept them (socketserver's default is 5:
    # a burst of clients beyond that waits a second or more for its SYN to be retried).
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        *,
        connections: Connections | None,
        thread_name: str,
    ) -> None:
        self.connections = connections
        self.thread_name = thread_name
        super().__init__(address, handler)

    def process_request(self, request: object, client_address: object) -> None:
        """One daemon thread per connection, as ThreadingHTTPServer, named, and admitted
        by `connections` when there is a limit."""
        assert isinstance(request, socket.socket)
        if self.connections is not None and not self.connections.admit(request):
            self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=self.thread_name,
            daemon=True,
        )
        thread.start()

    def shutdown_request(self, request: object) -> None:
        if self.connections is not None and isinstance(request, socket.socket):
            self.connections.forget(request)
        super().shutdown_request(request)  # type: ignore[arg-type]

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that hangs up mid-request is not worth a traceback on stderr.
        log.debug("HTTP request failed", client=str(client_address), exc_info=True)


class _QuietIPv6Server(_QuietServer):
    address_family = socket.AF_INET6


def bind(
    host: str,
    port: int,
    handler: type[BaseHTTPRequestHandler],
    *,
    max_connections: int | None = None,
    thread_name: str = "http-connection",
) -> ThreadingHTTPServer:
    """A server bound to (host, port), IPv6 when the host is an IPv6 address; not serving yet.
    `max_connections`: at most that many open connections (see the module docstring).

    Raises OSError when the address cannot be bound.
    """
    server_class = _QuietIPv6Server if ":" in host else _QuietServer
    connections = None if max_connections is None else Connections(max_connections)
    return server_class((host, port), handler, connections=connections, thread_name=thread_name)


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
        max_connections: int | None = None,
    ) -> None:
        self.server = bind(
            host, port, handler, max_connections=max_connections, thread_name=f"{name}-conn"
        )
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

    @property
    def connections(self) -> Connections | None:
        """The open connections, when they are limited."""
        connections = getattr(self.server, "connections", None)
        return connections if isinstance(connections, Connections) else None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop accepting and release the socket; requests already being processed may
        finish (with a connection limit, connections that have not sent a complete request
        are dropped)."""
        if self._thread.is_alive():
            self.server.shutdown()
            self._thread.join(timeout=5.0)
        self.server.server_close()
        if self.connections is not None:
            self.connections.drop_waiting()
