"""A real local HTTP application for the `http` handler to POST to: it records every request
and answers with scripted statuses (then 200), optionally after a delay."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lower-case names: HTTP header names are case-insensitive
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class App:
    """Answers POSTs with `statuses` in order, then 200; sleeps `delay` seconds first."""

    def __init__(self, statuses: tuple[int, ...] = (), delay: float = 0.0) -> None:
        self.statuses = list(statuses)
        self.delay = delay
        self.requests: list[Received] = []
        self.lock = threading.Lock()
        self.url = ""

    def answer(self, request: Received) -> int:
        with self.lock:
            self.requests.append(request)
            return self.statuses.pop(0) if self.statuses else 200


@contextmanager
def serve(app: App) -> Iterator[App]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = app.answer(
                Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            time.sleep(app.delay)
            reply = f"status {status}\n".encode()
            try:
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
            except OSError:
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    app.url = f"http://127.0.0.1:{server.server_address[1]}/vod/events"
    try:
        yield app
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
