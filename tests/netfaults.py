"""Network faults for tests: a peer that never answers, and a proxy that can stop answering.

- `SilentPeer`: accepts TCP connections and never says a byte (over TLS: it completes the
  handshake, then says nothing; `handshake=False` does not even do that).
- `StallingProxy`: forwards HTTP/1.1 requests to an upstream server (LocalMNSServer), plain or
  terminating TLS, until a request matches its `stall` rule: that request, and anything later
  on its connection, is swallowed without an answer, the connection left open - a peer that
  went silent mid-conversation.
- `tls_files`: a self-signed certificate for 127.0.0.1 and localhost, made at test time with
  the `cryptography` package (a dependency of the VOD OpenAPI client); point `SSL_CERT_FILE`
  at it so that the SDK's default TLS context trusts it.

Imported by test modules as `from netfaults import ...`.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import select
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def tls_files(directory: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files of a fresh self-signed certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "vod-events test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


class _Listener:
    """A loopback listening socket and the threads serving its connections."""

    def __init__(self, tls: ssl.SSLContext | None) -> None:
        self.tls = tls
        self._server = socket.create_server(("127.0.0.1", 0))
        self._server.settimeout(0.2)
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.connections = 0
        accept = threading.Thread(target=self._accept_loop, daemon=True)
        self._threads.append(accept)
        accept.start()

    @property
    def endpoint(self) -> str:
        port = self._server.getsockname()[1]
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self._sockets.append(conn)
                number = self.connections
            thread = threading.Thread(target=self._serve, args=(conn, number), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket, number: int) -> None:
        raise NotImplementedError

    def _keep(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def _swallow(self, conn: socket.socket) -> None:
        """Read and drop whatever comes until the peer closes or we do: never answer."""
        while not self._closed.is_set():
            readable, _, _ = select.select([conn], [], [], 0.2)
            if readable:
                try:
                    if not conn.recv(65536):
                        return
                except (OSError, ssl.SSLError):
                    return

    def close(self) -> None:
        self._closed.set()
        self._server.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
        for thread in self._threads:
            thread.join(5)


class SilentPeer(_Listener):
    """Accepts connections and never answers a request (see the module docstring)."""

    def __init__(self, tls: ssl.SSLContext | None = None, *, handshake: bool = True) -> None:
        self.handshake = handshake
        super().__init__(tls)

    def _serve(self, conn: socket.socket, number: int) -> None:
        if self.tls is not None and self.handshake:
            conn.settimeout(10)
            try:
                conn = self.tls.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                return
            self._keep(conn)
        self._swallow(conn)

    def __enter__(self) -> SilentPeer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class SeenRequest:
    """A request the proxy read: its method, target (path and query) and connection."""

    method: str
    target: str
    connection: int


class StallingProxy(_Listener):
    """Forwards requests to `upstream` until one matches `stall` (see the module docstring).

    `stall` may be replaced while the proxy runs; `stalled` lists the requests swallowed;
    `drop_stalled` closes their connections (the client then sees a reset).
    """

    def __init__(
        self,
        upstream: tuple[str, int],
        tls: ssl.SSLContext | None = None,
        stall: Callable[[SeenRequest], bool] | None = None,
    ) -> None:
        self.upstream = upstream
        self.stall = stall or (lambda request: False)
        self.stalled: list[SeenRequest] = []
        self.seen: list[SeenRequest] = []
        self._stalled_sockets: list[socket.socket] = []
        super().__init__(tls)

    def drop_stalled(self) -> None:
        """Close the stalled connections: their calls end with a network error."""
        with self._lock:
            dropped, self._stalled_sockets = self._stalled_sockets, []
        for sock in dropped:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def stall_once(self, wanted: Callable[[SeenRequest], bool]) -> None:
        """Stall the first request that matches `wanted` (and its connection), no other."""
        fired = threading.Lock()

        def rule(request: SeenRequest) -> bool:
            return wanted(request) and fired.acquire(blocking=False)

        self.stall = rule

    def _serve(self, conn: socket.socket, number: int) -> None:
        client: socket.socket = conn
        if self.tls is not None:
            conn.settimeout(10)
            try:
                client = self.tls.wrap_socket(conn, server_side=True)
            except (OSError, ssl.SSLError):
                return
            client.settimeout(None)
            self._keep(client)
        upstream = socket.create_connection(self.upstream)
        self._keep(upstream)
        pending = b""
        try:
            while not self._closed.is_set():
                readable, _, _ = select.select([client, upstream], [], [], 0.2)
                if client in readable:
                    data = _recv_all(client)
                    if not data:
                        return
                    pending += data
                    while (request := _one_request(pending)) is not None:
                        size, method, target = request
                        seen = SeenRequest(method, target, number)
                        self.seen.append(seen)
                        if self.stall(seen):
                            self.stalled.append(seen)
                            with self._lock:
                                self._stalled_sockets.append(client)
                            upstream.close()
                            self._swallow(client)
                            return
                        upstream.sendall(pending[:size])
                        pending = pending[size:]
                if upstream in readable:
                    data = upstream.recv(65536)
                    if not data:
                        return
                    client.sendall(data)
        except (OSError, ssl.SSLError):
            return
        finally:
            with contextlib.suppress(OSError):
                upstream.close()

    def __enter__(self) -> StallingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _recv_all(sock: socket.socket) -> bytes:
    """What `sock` has now, including what a TLS socket holds decrypted already."""
    data = sock.recv(65536)
    while isinstance(sock, ssl.SSLSocket) and data and sock.pending():
        data += sock.recv(sock.pending())
    return data


def _one_request(buffer: bytes) -> tuple[int, str, str] | None:
    """(size, method, target) of the complete HTTP/1.1 request at the start of `buffer`."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = buffer[:head_end].decode("latin-1").split("\r\n")
    method, target, _ = head[0].split(" ", 2)
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip())
    size = head_end + 4 + length
    return (size, method, target) if len(buffer) >= size else None
