"""A small HTTP/1.1 server on asyncio streams: just what MNS clients use.

Keep-alive connections, Content-Length bodies, one request at a time per connection (the
SDK never pipelines). Every response carries the headers the service sends - a fresh
`x-mns-request-id` (24 upper-case hex), `x-mns-version`, `Server: AliyunMQS`,
`Content-Type: text/xml;charset=utf-8`, `Date` and always `Content-Length`, 204 included.

Latency and faults are injected here (see `faults.py`), around the request handler, so the
handler stays a plain function from request to response. Waiting costs one coroutine, not
one thread, so thousands of long polls or delayed answers cost little.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

from vod_events.mns_server.auth import API_VERSION
from vod_events.mns_server.errors import MNSError
from vod_events.mns_server.faults import Fault, FaultInjector
from vod_events.mns_server.ids import request_id
from vod_events.mns_server.wire import encode_error

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 4 * 1024 * 1024  # 16 messages of 64 KiB, escaped, with room to spare


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request. `target` is the raw request target (path and query, undecoded);
    `headers` maps lower-case names to values."""

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes
    request_id: str
    # Done once the client has closed the connection: a long poll for a client that is
    # gone must stop waiting, or it would take the next message for nobody.
    client_gone: asyncio.Future[None] | None = None

    @property
    def host_id(self) -> str:
        """The host the client addressed: the HostId of error bodies, the host of URLs."""
        return self.headers.get("host", "localhost")


@dataclass(frozen=True, slots=True)
class Response:
    """What a handler answers: status, XML body, and headers beyond the standard ones."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request], Awaitable[Response]]


def error_response(error: MNSError, request_id: str, host_id: str) -> Response:
    """The `<Error>` response for `error`."""
    return Response(error.status, encode_error(error.code, error.message, request_id, host_id))


class _ConnectionProtocol(asyncio.StreamReaderProtocol):
    """The stream protocol of `asyncio.start_server`, which also resolves `client_gone` when
    the client closes its end (or the connection is lost) - without reading the stream."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        serve: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
        loop: asyncio.AbstractEventLoop,
        client_gone: asyncio.Future[None],
    ) -> None:
        super().__init__(reader, serve, loop=loop)
        self._client_gone = client_gone

    def eof_received(self) -> bool:
        self._mark_gone()
        return bool(super().eof_received())

    def connection_lost(self, exc: Exception | None) -> None:
        self._mark_gone()
        super().connection_lost(exc)

    def _mark_gone(self) -> None:
        if not self._client_gone.done():
            self._client_gone.set_result(None)


class _BadRequest(Exception):
    """The bytes received are not an HTTP request we can answer; the connection closes."""


class HTTPServer:
    """Serves `handler` on a TCP port. Start and stop it from the event loop's thread."""

    def __init__(self, handler: Handler, faults: FaultInjector) -> None:
        self._handler = handler
        self._faults = faults
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._date_second = -1
        self._date = ""

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0 picks a free port); return the port listened on."""
        loop = asyncio.get_running_loop()

        def connection() -> _ConnectionProtocol:
            # asyncio.start_server, plus a future telling when the client hangs up.
            reader = asyncio.StreamReader(limit=MAX_HEAD_BYTES, loop=loop)
            client_gone: asyncio.Future[None] = loop.create_future()

            async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await self._serve(reader, writer, client_gone)

            return _ConnectionProtocol(reader, serve, loop, client_gone)

        self._server = await loop.create_server(connection, host, port, reuse_address=True)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stop listening, end every connection (long polls included) and wait for them."""
        if self._server is not None:
            self._server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client_gone: asyncio.Future[None],
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            while True:
                try:
                    request, keep_alive = await self._read_request(reader, client_gone)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return  # the client went away between requests
                except _BadRequest as problem:
                    rid = request_id()
                    await self._write(writer, _bad_request(str(problem), rid), rid, False)
                    return
                if not await self._answer(request, writer, keep_alive) or not keep_alive:
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except asyncio.CancelledError:
            # Only close() cancels us. End normally: Python 3.11's stream machinery logs a
            # spurious error for a connection task that ends cancelled.
            return
        finally:
            del self._connections[task]
            writer.close()

    async def _answer(
        self, request: Request, writer: asyncio.StreamWriter, keep_alive: bool
    ) -> bool:
        """Handle one request with the injected latency and fault. False: connection is gone."""
        fault = self._faults.draw()
        half_latency = self._faults.latency_ms / 2000.0
        if half_latency:
            await asyncio.sleep(half_latency)
        if fault is Fault.ERROR:
            response = error_response(
                MNSError("InternalError"), request.request_id, request.host_id
            )
        else:
            response = await self._handle(request)
        if half_latency:
            await asyncio.sleep(half_latency)
        if fault is Fault.DROP:
            _reset(writer)
            return False
        await self._write(writer, response, request.request_id, keep_alive)
        return True

    async def _handle(self, request: Request) -> Response:
        try:
            return await self._handler(request)
        except Exception:
            log.exception("unexpected failure answering %s %s", request.method, request.target)
            return error_response(MNSError("InternalError"), request.request_id, request.host_id)

    async def _read_request(
        self, reader: asyncio.StreamReader, client_gone: asyncio.Future[None]
    ) -> tuple[Request, bool]:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise _BadRequest("request head too large") from None
        lines = head[:-4].decode("latin-1").split("\r\n")
        request_line = lines[0].split(" ")
        if len(request_line) != 3 or not request_line[2].startswith("HTTP/1."):
            raise _BadRequest("malformed request line")
        method, target, version = request_line
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise _BadRequest("malformed header line")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise _BadRequest("chunked request bodies are not supported")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _BadRequest("malformed Content-Length") from None
        if not 0 <= length <= MAX_BODY_BYTES:
            raise _BadRequest("request body too large")
        body = await reader.readexactly(length) if length else b""
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" and (version == "HTTP/1.1" or connection == "keep-alive")
        request = Request(method, target, headers, body, request_id(), client_gone)
        return request, keep_alive

    async def _write(
        self, writer: asyncio.StreamWriter, response: Response, rid: str, keep_alive: bool
    ) -> None:
        extra = "".join(f"{name}: {value}\r\n" for name, value in response.headers)
        head = (
            f"HTTP/1.1 {response.status} {_reason(response.status)}\r\n"
            f"Server: AliyunMQS\r\n"
            f"Date: {self._http_date()}\r\n"
            f"Content-Type: text/xml;charset=utf-8\r\n"
            f"Content-Length: {len(response.body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n"
            f"x-mns-request-id: {rid}\r\n"
            f"x-mns-version: {API_VERSION}\r\n"
            f"{extra}\r\n"
        )
        writer.write(head.encode("latin-1") + response.body)
        await writer.drain()

    def _http_date(self) -> str:
        second = int(time.time())
        if second != self._date_second:  # formatting once a second is plenty
            self._date_second = second
            self._date = formatdate(second, usegmt=True)
        return self._date


def _bad_request(problem: str, rid: str) -> Response:
    error = MNSError("InvalidRequestURL", f"Bad HTTP request: {problem}.")
    return error_response(error, rid, "localhost")


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def _reset(writer: asyncio.StreamWriter) -> None:
    """Drop the connection with a TCP reset, so the client sees it fail at once."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
