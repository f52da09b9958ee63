"""Receive VOD events by HTTP callback and run them through the same pipeline as the MNS path.

VOD POSTs each event's JSON to the callback URL. Only a 200 counts as delivered; VOD waits
5 s, tries 3 times about 1 s apart, then drops the event. So this server replies:

- 200 once the event is done: handled, a duplicate, of a type no handler wants, or durably
  dead-lettered (a body that can never decode);
- 500 when it is not (a handler failed, the idempotency store is down), so VOD tries again.
  Because VOD gives up within seconds, the event is first written to the dead-letter target
  with the failure's reason: it is never lost, and replaying it later is safe (handlers that
  completed since are skipped);
- 503 "in progress" when another delivery of the same event is running a handler right now
  (see "Slow handlers");
- 403 when authentication fails (the reason goes to the log, not to the caller), 413 for a
  body over `max_body_bytes`, 408 for a request that did not arrive within `read_deadline`,
  503 when `max_concurrency` callbacks are already running, 404 / 405 / 411 / 400 for
  requests that are not callbacks.

Slow clients. A request is checked as far as possible before it costs anything: the
signature is checked on the headers alone, before the body is read; the whole request
(request line, headers, body) must arrive within ONE deadline, `read_deadline` (5 s, VOD's
own patience) from the connection opening, however slowly it trickles in; and a processing
slot (`max_concurrency`) is taken only for a complete, authentic request. Connections, one
thread each, are capped at `max_connections`; past that the oldest connection that has not
yet sent a complete request is dropped for the new one (`http_server.Connections`). So
clients that dribble bytes or sit idle cost a bounded number of threads for a few seconds
each, and never a slot: VOD's callbacks, which arrive whole at once, keep being answered.

Slow handlers. A handler may outlive VOD's 5 s; VOD then hangs up and tries again. The
handler is not cut short: it runs to its end in its request thread, and its outcome is
recorded as if VOD were still waiting - a success completes its idempotency claim (VOD's
next try is a duplicate: 200), a failure is kept as a dead letter with the handler's own
error as the reason. The answer to the vanished client is lost (a warning says it came too
late). A try that meets a claim in progress waits for it at most `CLAIM_WAIT_S` (3 s, so VOD
still gets an answer) when this process runs it; if it is still running, or runs elsewhere,
the try is answered 503 "in progress" and writes nothing: the delivery that holds the claim
owns the event's fate (its success is recorded; its failure goes back to its queue or into a
dead letter with the real reason), and a later try of VOD's, if any, finds it done (VOD may
log the event as undelivered though it was handled). Claims are short
leases: a server with its own idempotency store renews its claims every
`dedupe.renew_interval` (`serve-callbacks`); inside the daemon it shares the consumer's store,
which renews them, so a callback and a queue message of the same event meet the same claims
whatever the backend.

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
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import structlog

from vod_events.config import Config, parse_listen
from vod_events.deadletter import CALLBACK_SOURCE, DeadLetter
from vod_events.dedupe import IdempotencyStore, renew_interval
from vod_events.errors import ConfigError
from vod_events.processing import MAX_REASON, Outcome, OutcomeStatus, Processor
from vod_events.service.http_server import BackgroundServer, DeadlineHandler, Stage
from vod_events.transports import ReceivedMessage, TransportFactory

if TYPE_CHECKING:
    from vod_events.consumer import Consumer
    from vod_events.router import Router
    from vod_events.stats import Stats

log = structlog.get_logger("vod_events.service.http_callbacks")

TIMESTAMP_HEADER = "X-VOD-TIMESTAMP"
SIGNATURE_HEADER = "X-VOD-SIGNATURE"
VOD_TIMEOUT_S = 5.0  # how long VOD waits for an answer before it counts the try as failed
# VOD waits 5 s for an answer: in-process handler retries must end well before that.
RETRY_BUDGET_S = 3.0
# How long a try waits for another thread of this process running the same handler before
# it is answered 503 "in progress": VOD must get its answer within its 5 s.
CLAIM_WAIT_S = 3.0
READ_DEADLINE_S = 5.0  # the whole request must arrive within this of the connection opening
MIN_CONNECTIONS = 64  # open connections allowed: at least this many,
CONNECTIONS_PER_SLOT = 4  # and this many per processing slot (`max_concurrency`)
DRAIN_LIMIT = 64 * 1024  # unread request bodies up to this size are read before an early reply
DRAIN_S = 1.0  # for at most this long
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
    """The server's settings, checked; from `[http_callback]` by `from_config`.

    read_deadline: seconds from a connection opening by which its whole request (line,
        headers, body) must have arrived; later, it is answered 408 (or just closed).
    max_connections: open connections at most; past that the oldest that has not sent a
        complete request is dropped (`http_server.Connections`). Not a config key: four per
        `max_concurrency` slot, at least 64.
    """

    host: str
    port: int
    path: str = "/vod/callback"
    authenticator: Authenticator | None = None
    max_body_bytes: int = 1024 * 1024
    max_concurrency: int = 16
    read_deadline: float = READ_DEADLINE_S
    max_connections: int = MIN_CONNECTIONS

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
            max_connections=max(MIN_CONNECTIONS, CONNECTIONS_PER_SLOT * section.max_concurrency),
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


class _Renewer:
    """Renews the claims `store` holds every `renew_interval(store)`, on a daemon thread,
    for a server that has no consumer to do it."""

    def __init__(self, store: IdempotencyStore) -> None:
        self._store = store
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name="vod-events-callback-claims", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        interval = renew_interval(self._store)
        while not self._stop.wait(interval):
            try:
                self._store.renew()
            except Exception as exc:  # the next round tries again; two may fail in a lease
                log.warning("renewing idempotency claims failed", error=repr(exc))


class CallbackServer:
    """Serves VOD callbacks on `settings.host:port` until `close()`. Port 0 picks a free port.

    Each callback runs through `processor` in its connection's thread; at most
    `settings.max_concurrency` at once, and only once the request has arrived whole and
    authentic (see the module docstring).

    owns_store: the processor's idempotency store is this server's own: the server renews its
        claims while it runs and closes it at `close()`. False when the store is shared with
        a consumer, which does both.
    """

    def __init__(
        self, processor: Processor, settings: CallbackSettings, *, owns_store: bool = True
    ) -> None:
        self.processor = processor
        self.settings = settings
        self.owns_store = owns_store
        self._slots = _Slots(settings.max_concurrency)
        self._kept = _KeptBodies()
        self._renewer = _Renewer(processor.store) if owns_store else None
        handler = type(
            "BoundCallbackHandler",
            (_CallbackHandler,),
            {"receiver": self, "read_deadline": settings.read_deadline},
        )
        self._http = BackgroundServer(
            settings.host,
            settings.port,
            handler,
            name="vod-events-callbacks",
            poll_interval=SHUTDOWN_POLL_S,
            max_connections=settings.max_connections,
        )

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) actually bound."""
        return self._http.address

    @property
    def url(self) -> str:
        """Where this server takes callbacks (as seen locally; VOD may see a proxy's URL)."""
        return self._http.base_url + self.settings.path

    @property
    def open_connections(self) -> int:
        """Connections open right now (at most `settings.max_connections`)."""
        connections = self._http.connections
        return 0 if connections is None else len(connections)

    def start(self) -> CallbackServer:
        """Serve on a background thread (and renew the store's claims, if it is ours)."""
        if self._renewer is not None:
            self._renewer.start()
        self._http.start()
        if self.settings.authenticator is None:
            log.warning("callback server listening WITHOUT authentication", url=self.url)
        else:
            log.info("callback server listening", url=self.url)
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop accepting, drop connections whose request is incomplete, give running
        callbacks up to `timeout` s, then stop renewing and close the store, if it is ours."""
        self._http.stop()
        if not self._slots.wait_idle(timeout):
            log.warning("callbacks still running at close; VOD will retry them")
        if self._renewer is not None:
            self._renewer.stop()
        self.processor.close()  # its async handlers' loop, if it has one
        if self.owns_store:
            self.processor.store.close()

    def deliver(self, body: bytes, client: str, *, started: float | None = None) -> HTTPStatus:
        """Run one authenticated callback body through the pipeline; the status to reply.
        `started`: time.monotonic() when the request's connection opened."""
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
            status = HTTPStatus.OK
        elif outcome.status is OutcomeStatus.DEFERRED:
            # The delivery holding the claim owns the event's fate: nothing to keep here.
            log.info(
                "callback's event is being handled by another delivery; answering 503 so "
                "VOD asks again",
                message_id=message.message_id,
            )
            status = HTTPStatus.SERVICE_UNAVAILABLE
        else:
            self._keep(message, outcome, hashlib.sha256(body).hexdigest())
            status = HTTPStatus.INTERNAL_SERVER_ERROR
        if started is not None and (took := time.monotonic() - started) > VOD_TIMEOUT_S:
            log.warning(
                "callback answered after VOD stopped waiting; VOD retries it, and the "
                "outcome stands",
                message_id=message.message_id,
                took_s=round(took, 1),
                status=int(status),
            )
        return status

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


class _CallbackHandler(DeadlineHandler):
    """One connection, one request. `receiver` and `read_deadline` are bound per server by
    `CallbackServer`. The order is the point: headers (path, signature, length) first, then
    the body within the deadline, then a slot, then the pipeline."""

    receiver: CallbackServer
    server_version = "vod-events"
    sys_version = ""

    def do_POST(self) -> None:
        receiver = self.receiver
        settings = receiver.settings
        stats = receiver.processor.stats
        client = self.client_address[0]
        if urlsplit(self.path).path != settings.path:
            self._refuse(HTTPStatus.NOT_FOUND)
            return
        if settings.authenticator is not None:
            reason = settings.authenticator.reject_reason(
                self.headers.get(TIMESTAMP_HEADER), self.headers.get(SIGNATURE_HEADER)
            )
            if reason is not None:
                log.warning("callback rejected", reason=reason, client=client)
                stats.incr("callbacks_rejected")
                self._refuse(HTTPStatus.FORBIDDEN)
                return
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._refuse(HTTPStatus.LENGTH_REQUIRED)  # VOD sends a Content-Length
            return
        length = self._content_length()
        if length is None:
            self._refuse(HTTPStatus.LENGTH_REQUIRED)
            return
        if length > settings.max_body_bytes:
            log.warning("callback refused: body too large", bytes=length, client=client)
            stats.incr("callbacks_rejected")
            self._refuse(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return
        self.enter(Stage.READING)
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            log.warning(
                "callback refused: the request did not arrive within the read deadline",
                deadline_s=settings.read_deadline,
                client=client,
            )
            stats.incr("callbacks_rejected")
            self._reply(HTTPStatus.REQUEST_TIMEOUT)
            return
        except OSError:
            return  # reset by the client
        if len(body) < length:
            return  # the client hung up mid-body, or the connection was dropped
        if not receiver._slots.try_take():
            log.warning("callback refused: max_concurrency callbacks already running")
            stats.incr("callbacks_rejected")
            self._reply(HTTPStatus.SERVICE_UNAVAILABLE)
            return
        try:
            if not self.enter(Stage.BUSY):
                return  # dropped meanwhile: the server is closing; VOD will retry
            status = receiver.deliver(body, client, started=self.opened)
            in_progress = status is HTTPStatus.SERVICE_UNAVAILABLE
            self._reply(status, "in progress" if in_progress else None)
        finally:
            receiver._slots.give()

    def do_GET(self) -> None:
        self._refuse(HTTPStatus.METHOD_NOT_ALLOWED)

    do_PUT = do_DELETE = do_HEAD = do_PATCH = do_GET

    def _content_length(self) -> int | None:
        text = self.headers.get("Content-Length", "")
        return int(text) if text.isdigit() else None

    def _refuse(self, status: HTTPStatus) -> None:
        """Answer before reading the request body. A small body is read and dropped first,
        for at most DRAIN_S (closing a socket with unread data makes TCP reset the
        connection, and the client may then never see our answer)."""
        length = self._content_length()
        if length is not None and length <= DRAIN_LIMIT:
            self.reader.deadline = min(self.reader.deadline, time.monotonic() + DRAIN_S)
            with contextlib.suppress(OSError):  # TimeoutError included
                self.rfile.read(length)
        self._reply(status)

    def _reply(self, status: HTTPStatus, text: str | None = None) -> None:
        """Answer with a one-line body (`text`, else the status's phrase), then close."""
        self.close_connection = True
        body = f"{text or status.phrase.lower()}\n".encode()
        try:
            self.send_response(status)
            if status is HTTPStatus.METHOD_NOT_ALLOWED:
                self.send_header("Allow", "POST")
            if status is HTTPStatus.SERVICE_UNAVAILABLE:
                self.send_header("Retry-After", "1")
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError as exc:
            log.debug("could not answer: the client has gone", status=int(status), error=repr(exc))

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
    store: IdempotencyStore | None = None,
    settings: CallbackSettings | None = None,
) -> CallbackServer:
    """A callback server (not started) with a processor assembled from `config` like the
    consumer's: its handlers (or `router`), idempotency store and dead-letter target.

    store: an idempotency store to share (the consumer's); None builds one from `[dedupe]`,
        which the server then renews and closes itself.
    settings: instead of `CallbackSettings.from_config(config)`.

    Raises ConfigError, also when the address cannot be bound.
    """
    from vod_events.service.assemble import build_processor, transport_factory

    settings = settings or CallbackSettings.from_config(config)
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
        store=store,
        own_claim_wait=CLAIM_WAIT_S,
    )
    owns_store = store is None
    try:
        return CallbackServer(processor, settings, owns_store=owns_store)
    except OSError as exc:  # the port is taken, or the address is not ours
        if owns_store:
            processor.store.close()
        raise ConfigError(
            f"cannot listen on {config.http_callback.listen}: {exc.strerror}",
            path=config.path,
            key="http_callback.listen",
        ) from None


@contextlib.contextmanager
def serving(config: Config, consumer: Consumer) -> Iterator[CallbackServer | None]:
    """Inside the daemon: serve callbacks alongside `consumer` when `[http_callback] listen`
    is set, with the consumer's handlers, counters, stop signal and idempotency store (one
    store, so a callback and a queue message of the same event meet the same claims, and
    the consumer's heartbeat renews both paths' claims)."""
    if not config.http_callback.listen:
        yield None
        return
    server = build_callback_server(
        config,
        connect=consumer.connect,
        router=consumer.processor.router,
        stats=consumer.stats,
        stopping=consumer.stopping,
        store=consumer.processor.store,
    ).start()
    try:
        yield server
    finally:
        server.close(timeout=consumer.settings.shutdown_timeout)
