"""Clients of the VOD HTTP callback receiver for the callback tests: a config, signed headers,
a `Receiver` that POSTs like VOD over a real HTTP connection, and raw-socket clients that send
their requests slowly (`SlowClient`, `Flood`)."""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vod_events.config import Config, from_dict
from vod_events.events import VodEvent
from vod_events.router import HandlerContext
from vod_events.service.http_callbacks import CallbackServer, sign

CALLBACK_URL = "https://vod-hooks.example.com/vod/callback"  # what VOD signs (behind a proxy)
KEY = "current-auth-key"
VOD_TIMEOUT_S = 5.0  # VOD waits this long for an answer


def signed_headers(key: str = KEY, timestamp: int | None = None) -> dict[str, str]:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    return {"X-VOD-TIMESTAMP": stamp, "X-VOD-SIGNATURE": sign(CALLBACK_URL, stamp, key)}


def callback_config(
    tmp_path: Path,
    *,
    dedupe: dict[str, Any] | None = None,
    consumer: dict[str, Any] | None = None,
    **http_callback: Any,
) -> Config:
    """A config serving callbacks on a free port, with a SQLite store (or `dedupe`) and
    dead letters under `tmp_path`."""
    section = {
        "listen": "127.0.0.1:0",
        "callback_url": CALLBACK_URL,
        "auth_keys": [KEY],
        **http_callback,
    }
    return from_dict(
        {
            "mns": {"endpoint": "http://127.0.0.1:9"},  # never contacted
            "http_callback": section,
            "dedupe": dedupe or {"backend": "sqlite", "path": str(tmp_path / "dedupe.sqlite3")},
            "dead_letter": {"dir": str(tmp_path / "dead-letters")},
            "retry": {"attempts": 2, "initial_wait": 0.01, "max_wait": 0.01},
            "consumer": consumer or {},
        },
        "test.toml",
        {},
    )


@dataclass
class Reply:
    status: int
    text: str
    seconds: float = 0.0  # from sending the request to reading the whole answer


@dataclass
class Receiver:
    """A started callback server with recording handlers."""

    server: CallbackServer
    dead_letter_dir: Path
    handled: list[tuple[VodEvent, HandlerContext]] = field(default_factory=list)

    def post(
        self,
        body: bytes | str,
        headers: dict[str, str] | None = None,
        *,
        path: str | None = None,
        method: str = "POST",
        timeout: float = 10.0,
    ) -> Reply:
        """Raises TimeoutError when no answer comes within `timeout` (VOD's is 5 s)."""
        host, port = self.server.address
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            data = body.encode() if isinstance(body, str) else body
            started = time.monotonic()
            connection.request(
                method, path or self.server.settings.path, body=data, headers=headers or {}
            )
            response = connection.getresponse()
            text = response.read().decode()
            return Reply(response.status, text, time.monotonic() - started)
        finally:
            connection.close()

    def post_signed(self, body: bytes | str, key: str = KEY, *, timeout: float = 10.0) -> Reply:
        return self.post(body, signed_headers(key), timeout=timeout)

    def dead_letters(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted(self.dead_letter_dir.glob("[0-9]*.json"))]


class SlowClient:
    """One connection that sends `start` at once, then `rest` one byte every `every` s, on
    its own thread, until it is all sent, the server closes the connection, or `stop()`.
    Whatever the server sends back is kept in `answer`."""

    def __init__(self, address: tuple[str, int], start: bytes, rest: bytes, every: float) -> None:
        self.sock = socket.create_connection(address, timeout=5)
        self.opened = time.monotonic()
        self.sock.sendall(start)
        self.rest = rest
        self.every = every
        self.answer = b""
        self.closed_after: float | None = None  # seconds from opening to the server's close
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        sent = 0
        try:
            while not self._stop.is_set():
                readable, _, _ = select.select([self.sock], [], [], self.every)
                if readable:
                    chunk = self.sock.recv(4096)
                    if not chunk:
                        break
                    self.answer += chunk
                elif sent < len(self.rest):
                    self.sock.sendall(self.rest[sent : sent + 1])
                    sent += 1
        except OSError:
            pass  # reset by the server
        if not self._stop.is_set():
            self.closed_after = time.monotonic() - self.opened

    def wait_closed(self, timeout: float) -> float | None:
        """Seconds from opening until the server closed the connection, or None."""
        self._thread.join(timeout)
        return self.closed_after

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


class Flood:
    """`connections` connections at once, from one thread, each sending `request` one byte
    every `every` s; a connection the server closes is opened again (`reopen`)."""

    def __init__(
        self,
        address: tuple[str, int],
        connections: int,
        request: bytes,
        every: float,
        *,
        reopen: bool = True,
    ) -> None:
        self.address = address
        self.request = request
        self.every = every
        self.reopen = reopen
        self.opened = 0
        self.closed_by_server = 0
        self._socks: dict[socket.socket, int] = {}  # socket -> bytes sent
        for _ in range(connections):
            self._open()
            time.sleep(0.001)  # a burst, but not one the listen backlog must absorb at once
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _open(self) -> None:
        sock = socket.create_connection(self.address, timeout=5)
        sock.setblocking(False)
        self._socks[sock] = 0
        self.opened += 1

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for sock, sent in list(self._socks.items()):
                try:
                    sock.recv(4096)  # an answer, the end of the stream or an error: it is over
                except BlockingIOError:
                    pass  # nothing from the server: still open
                except OSError:
                    self._closed(sock)
                    continue
                else:
                    self._closed(sock)
                    continue
                try:
                    at = sent % len(self.request)
                    sock.send(self.request[at : at + 1])
                    self._socks[sock] = sent + 1
                except OSError:
                    self._closed(sock)

    def _closed(self, sock: socket.socket) -> None:
        del self._socks[sock]
        sock.close()
        self.closed_by_server += 1
        if self.reopen and not self._stop.is_set():
            with contextlib.suppress(OSError):  # refused: fewer connections from now on
                self._open()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self._socks:
            sock.close()
