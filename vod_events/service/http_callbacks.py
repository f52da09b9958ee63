"""Receive VOD events by HTTP callback and run them through the same pipeline as the MNS path.

VOD POSTs each event's JSON to the callback URL. Only a 200 counts as delivered; VOD waits
5 s, tries 3 times about 1 s apart, then drops the event. So this server replies:

- 200 once the event is done: handled, a duplicate, of a type no handler wants, or durably
  dead-lettered (a body that can never decode);
- 500 when it is not (a handler failed, the idempotency store is down), so VOD tries again.
  Because VOD gives up within seconds, the event is first written to the dead-letter target:
  it is never lost, and replaying it later is safe (handlers that completed since are skipped);
- 403 when authentication fails (the reason goes to the log, not to the caller), 413 for a
  body over `max_body_bytes`, 503 when `max_concurrency` callbacks are already running,
  404 / 405 / 411 / 400 for requests that are not callbacks.

Authentication (`auth_keys`): VOD sends `X-VOD-TIMESTAMP` (Unix seconds) and
`X-VOD-SIGNATURE` = hex md5(callback URL + "|" + timestamp + "|" + AuthKey). The signature
proves the sender knows a key and bounds replays to the timestamp window; it does NOT cover
the body (see the README). Several keys are accepted at once so they can be rotated.

The server reads nothing but the request: it never fetches URLs found in payloads.

    vod-events serve-callbacks --config FILE    # or [http_callback] listen in the daemon
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import structlog

from vod_events.config import Config, parse_listen
from vod_events.deadletter import CALLBACK_SOURCE, DeadLetter
from vod_events.errors import ConfigError
from vod_events.processing import MAX_REASON, Outcome, Processor
from vod_events.service.http_server import BackgroundServer
from vod_events.transports import ReceivedMessage, TransportFactory

if TYPE_CHECKING:
    from vod_events.consumer import Consumer
    from vod_events.router import Router
    from vod_events.stats import Stats

log = structlog.get_logger("vod_events.service.http_callbacks")

TIMESTAMP_HEADER = "X-VOD-TIMESTAMP"
SIGNATURE_HEADER = "X-VOD-SIGNATURE"
# VOD waits 5 s for an answer: in-process handler retries must end well before that.
RETRY_BUDGET_S = 3.0
READ_TIMEOUT_S = 10.0  # a client that stalls mid-request loses its connection
DRAIN_LIMIT = 64 * 1024  # unread request bodies up to this size are read before an early reply
SHUTDOWN_POLL_S = 0.1  # how often the accept loop looks for a stop request
KEPT_MEMORY = 10_000  # bodies remembered as already kept after a failure (per process)


def sign(callback_url: str, timestamp: str, key: str) -> str:
    """VOD's callback signature: hex md5 of ``callback_url|timestamp|key``."""
    return hashlib.md5(f"{callback_url}|{timestamp}|{key}".encode()).hexdigest()


class Authenticator:
    """Checks VOD's callback signature against every configured key, and the timestamp."""

    def __init__(
        self,
        callback_url: str,
        keys: Sequence[str],
        window: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys or not all(keys):
            raise ValueError("at least one key is required, and no key may be empty")
        self.callback_url = callback_url
        self._keys = tuple(keys)
        self.window = window
        self.clock = clock

    def reject_reason(self, timestamp: str | None, signature: str | None) -> str | None:
        """None when the headers are authentic; else why not (for the log, not the caller)."""
        if not timestamp:
            return f"missing {TIMESTAMP_HEADER} header"
        if not signature:
            return f"missing {SIGNATURE_HEADER} header"
        if not timestamp.isdigit() or len(timestamp) > 12:
            return f"{TIMESTAMP_HEADER} is not Unix seconds"
        age = int(self.clock()) - int(timestamp)
        if age > self.window:
            return f"timestamp is {age} s old; the window is {self.window} s"
        if -age > self.window:
            return f"timestamp is {-age} s in the future; the window is {self.window} s"
        given = signature.strip().lower().encode()
        matched = False
        for key in self._keys:  # every key is compared, so timing does not tell which matched
            expected = sign(self.callback_url, timestamp, key).encode()
            matched |= hmac.compare_digest(expected, given)
        return None if matched else "signature matches no configured key"


@dataclass(frozen=True, slots=True)
class CallbackSettings:
    """The server's settings, checked; from `[http_callback]` by `from_config`."""

    host: str
    port: int
    path: str = "/vod/callback"
    authenticator: Authenticator | None = None
    max_body_bytes: int = 1024 * 1024
    max_concurrency: int = 16

    @classmethod
    def from_config(cls, config: Config) -> CallbackSettings:
        """Raises ConfigError naming the key at fault."""
        section = config.http_callback

        def error(message: str, key: str) -> ConfigError:
            return ConfigError(message, path=config.path, key=f"http_callback.{key}")

        if not section.listen:
            raise error("is required to receive callbacks (host:port)", "listen")
        try:
            host, port = parse_listen(section.listen)
        except ValueError as exc:
            raise error(str(exc), "listen") from None
        if not section.path.startswith("/"):
            raise error(f"must start with '/', got {section.path!r}", "path")
        authenticator = None
        if section.auth_keys:
            if not section.callback_url.startswith(("http://", "https://")):
                raise error(
                    "is required with auth_keys: the callback URL exactly as configured in "
                    "VOD, which is what VOD signs",
                    "callback_url",
                )
            if not all(section.auth_keys):
                raise error("must not contain an empty key", "auth_keys")
            authenticator = Authenticator(
                section.callback_url, section.auth_keys, section.timestamp_window
            )
        return cls(
            host=host,
            port=port,
            path=section.path,
            authenticator=authenticator,
            max_body_bytes=section.max_body_bytes,
            max_concurrency=section.max_concurrency,
        )


class _Slots:
    """A counting limit that refuses instead of waiting, and can wait until all are free."""

    def __init__(self, size: int) -> None:
        self._size = self._free = size
        self._cond = threading.Condition()

    def try_take(self) -> bool:
        with self._cond:
            if self._free == 0:
                return False
            self._free -= 1
            return True

    def give(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._free == self._size, timeout)


class _KeptBodies:
    """Digests of bodies already kept as dead letters after a failure, so VOD's retries of
    the same event do not write one letter each. Bounded; forgets the oldest first."""

    def __init__(self, size: int = KEPT_MEMORY) -> None:
        self._size = size
        self._digests: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, digest: str) -> bool:
        with self._lock:
            return digest in self._digests

    def add(self, digest: str) -> None:
        with self._lock:
            self._digests[digest] = None
            if len(self._digests) > self._size:
                self._digests.popitem(last=False)


class CallbackServer:
    """Serves VOD callbacks on `settings.host:port` until `close()`. Port 0 picks a free port.

    Each callback runs through `processor` in its request thread; at most
    `settings.max_concurrency` at once.
    """

    def __init__(self, processor: Processor, settings: CallbackSettings) -> None:
        self.processor = processor
        self.settings = settings
        self._slots = _Slots(settings.max_concurrency)
        self._kept = _KeptBodies()
        handler = type("BoundCallbackHandler", (_CallbackHandler,), {"receiver": self})
        self._http = BackgroundServer(
            settings.host,
            settings.port,
            handler,
            name="vod-events-callbacks",
            poll_interval=SHUTDOWN_POLL_S,
        )

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound."""
        return self._http.address

    @property
    def url(self) -> str:
        """Where this server takes callbacks (as seen locally; VOD may see a proxy's URL)."""
        return self._http.base_url + self.settings.path

    def start(self) -> CallbackServer:
        """Serve on a background thread."""
        self._http.start()
        if self.settings.authenticator is None:
            log.warning("callback server listening WITHOUT authentication", url=self.url)
        else:
            log.info("callback server listening", url=self.url)
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting, give running callbacks up to `timeout` s, release the store."""
        self._http.stop()
        if not self._slots.wait_idle(timeout):
            log.warning("callbacks still running at close; VOD will retry them")
        self.processor.store.close()

    def deliver(self, body: bytes, client: str) -> HTTPStatus:
        """Run one authenticated callback body through the pipeline; the status to reply."""
        now_ms = int(time.time() * 1000)
        message = ReceivedMessage(
            message_id=f"http-{uuid.uuid4().hex}",
            receipt_handle="",
            # A body that is not UTF-8 cannot be an event; it is dead-lettered readable.
            body=body.decode("utf-8", errors="replace"),
            dequeue_count=1,
            enqueue_time_ms=now_ms,
            first_dequeue_time_ms=now_ms,
            next_visible_time_ms=0,
            user_properties={"RemoteAddr": client},
        )
        self.processor.stats.incr("received")
        outcome = self.processor.process(message)
        if outcome.delete:
            return HTTPStatus.OK
        self._keep(message, outcome, hashlib.sha256(body).hexdigest())
        return HTTPStatus.INTERNAL_SERVER_ERROR

    def _keep(self, message: ReceivedMessage, outcome: Outcome, digest: str) -> None:
        """Write a failed callback to the dead-letter target: VOD stops retrying in seconds."""
        if digest in self._kept:
            return  # kept on an earlier attempt of the same event
        sink = self.processor.dead_letters
        if sink is None:
            log.error(
                "callback failed and no dead-letter target is set: lost if VOD's retries fail",
                message_id=message.message_id,
            )
            return
        reason = (
            f"not done over HTTP ({outcome.status.value}: {outcome.reason}); kept because VOD "
            "stops retrying after about 2 s. Replaying is safe: completed handlers are skipped."
        )
        letter = DeadLetter.of(message, reason[:MAX_REASON], self.processor.source)
        try:
            sink.put(letter)
        except Exception as exc:
            log.error(
                "callback failed and keeping it as a dead letter failed: lost if VOD's "
                "retries fail",
                message_id=message.message_id,
                error=repr(exc),
            )
            return
        self._kept.add(digest)
        self.processor.stats.incr("dead_lettered")
        log.warning(
            "callback failed; kept as a dead letter, VOD will retry",
            message_id=message.message_id,
            status=outcome.status.value,  # a plain str, whichever log renderer runs
        )


class _CallbackHandler(BaseHTTPRequestHandler):
    """One HTTP request. `receiver` is bound per server by `CallbackServer`."""

    receiver: CallbackServer
    server_version = "vod-events"
    sys_version = ""
    timeout = READ_TIMEOUT_S

    def do_POST(self) -> None:
        receiver = self.receiver
        if urlsplit(self.path).path != receiver.settings.path:
            self._reply(HTTPStatus.NOT_FOUND, early=True)
            return
        if not receiver._slots.try_take():
            log.warning("callback refused: max_concurrency callbacks already running")
            receiver.processor.stats.incr("callbacks_rejected")
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE, early=True)
            return
        try:
            self._post(receiver)
        finally:
            receiver._slots.give()

    def _post(self, receiver: CallbackServer) -> None:
        client = self.client_address[0]
        authenticator = receiver.settings.authenticator
        if authenticator is not None:
            reason = authenticator.reject_reason(
                self.headers.get(TIMESTAMP_HEADER), self.headers.get(SIGNATURE_HEADER)
            )
            if reason is not None:
                log.warning("callback rejected", reason=reason, client=client)
                receiver.processor.stats.incr("callbacks_rejected")
                self._reply(HTTPStatus.FORBIDDEN, early=True)
                return
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._reply(HTTPStatus.LENGTH_REQUIRED)  # VOD sends a Content-Length
            return
        length = self._content_length()
        if length is None:
            self._reply(HTTPStatus.LENGTH_REQUIRED)
            return
        if length > receiver.settings.max_body_bytes:
            log.warning("callback refused: body too large", bytes=length, client=client)
            receiver.processor.stats.incr("callbacks_rejected")
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, early=True)
            return
        body = self.rfile.read(length)
        if len(body) < length:
            self._reply(HTTPStatus.BAD_REQUEST)  # the client hung up mid-body
            return
        self._reply(receiver.deliver(body, client))

    def do_GET(self) -> None:
        self._reply(HTTPStatus.METHOD_NOT_ALLOWED, early=True)

    do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _content_length(self) -> int | None:
        text = self.headers.get("Content-Length", "")
        return int(text) if text.isdigit() else None

    def _reply(self, status: HTTPStatus, *, early: bool = False) -> None:
        """Answer with a one-word body. `early`: before reading the request body, which is
        read and dropped if small (closing a socket with unread data makes TCP reset the
        connection, and the client may then never see our answer)."""
        if early:
            length = self._content_length()
            if length is not None and length <= DRAIN_LIMIT:
                with contextlib.suppress(OSError):
                    self.rfile.read(length)
        body = f"{status.phrase.lower()}\n".encode()
        self.send_response(status)
        if status is HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", "POST")
        if status is HTTPStatus.SERVICE_UNAVAILABLE:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # outcomes are logged by the processor and above, in structured form


# --- assembly --------------------------------------------------------------------------------


def build_callback_server(
    config: Config,
    *,
    connect: TransportFactory | None = None,
    router: Router | None = None,
    stats: Stats | None = None,
    stopping: threading.Event | None = None,
) -> CallbackServer:
    """A callback server (not started) with a processor assembled from `config` like the
    consumer's: its handlers (or `router`), idempotency store and dead-letter target.

    Raises ConfigError, also when the address cannot be bound.
    """
    from vod_events.service.assemble import build_processor, transport_factory

    settings = CallbackSettings.from_config(config)
    retry = config.retry
    # Handler retries must end before VOD stops waiting for the answer (5 s).
    budget = dataclasses.replace(retry, max_seconds=min(retry.max_seconds, RETRY_BUDGET_S))
    processor = build_processor(
        dataclasses.replace(config, retry=budget),
        connect or transport_factory(config),
        router=router,
        stats=stats,
        stopping=stopping,
        source=CALLBACK_SOURCE,
        context_source="http",
    )
    try:
        return CallbackServer(processor, settings)
    except OSError as exc:  # the port is taken, or the address is not ours
        processor.store.close()
        raise ConfigError(
            f"cannot listen on {config.http_callback.listen}: {exc.strerror}",
            path=config.path,
            key="http_callback.listen",
        ) from None


@contextlib.contextmanager
def serving(config: Config, consumer: Consumer) -> Iterator[CallbackServer | None]:
    """Inside the daemon: serve callbacks alongside `consumer` when `[http_callback] listen`
    is set, with the consumer's handlers, counters and stop signal."""
    if not config.http_callback.listen:
        yield None
        return
    server = build_callback_server(
        config,
        connect=consumer.connect,
        router=consumer.processor.router,
        stats=consumer.stats,
        stopping=consumer.stopping,
    ).start()
    try:
        yield server
    finally:
        server.close(timeout=consumer.settings.shutdown_timeout)
