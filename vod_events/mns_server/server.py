"""`LocalMNSServer`: the wire-compatible MNS server, run from a background thread.

    with LocalMNSServer(queues=("q1",)) as srv:
        account = mns.account.Account(srv.endpoint, "id", "secret")
        ...

The server is one asyncio event loop in one daemon thread. Every request, every store
operation and every long-poll wait runs on that loop, so the stores need no locks and two
clients can never be handed the same message. Methods called from other threads
(`create_queue`, `queue_info`, `set_faults`) are passed to the loop and waited for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TypeVar

from vod_events.mns_server.api import MNSApi
from vod_events.mns_server.auth import Credentials
from vod_events.mns_server.errors import MNSError
from vod_events.mns_server.faults import FaultInjector
from vod_events.mns_server.httpd import HTTPServer
from vod_events.mns_server.ids import IdSource
from vod_events.mns_server.longpoll import ArrivalSignals
from vod_events.mns_server.model import QueueAttributes, QueueAttributeUpdate, QueueInfo
from vod_events.mns_server.queues import QueueStore
from vod_events.mns_server.topics import TopicStore

log = logging.getLogger(__name__)

_T = TypeVar("_T")

# How often due messages are made visible (and dead letters moved) in queues nobody reads.
SWEEP_INTERVAL_SECONDS = 0.25
_START_TIMEOUT_SECONDS = 10.0
_CALL_TIMEOUT_SECONDS = 10.0


class LocalMNSServer:
    """A local MNS service that aliyun-mns-sdk 1.3.0 cannot tell from the real one.

    `queues` are created at construction with the defaults (`visibility_timeout` is the
    default VisibilityTimeout of every queue created without one). `dead_letter` binds
    (source, target, max_receive_count): a message of `source` received more than
    `max_receive_count` times moves to `target`; both queues are created if missing.
    With `access_key_id` and `access_key_secret`, requests must carry a valid V2 signature;
    without, any well-formed Authorization is accepted. `latency_ms`, `fault_rate` and
    `seed` inject network trouble, and `max_long_polls` caps concurrent long polls as MNS
    does per IP (see `faults.py`).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        queues: Iterable[str] = (),
        *,
        access_key_id: str | None = None,
        access_key_secret: str | None = None,
        latency_ms: float = 0,
        fault_rate: float = 0.0,
        seed: int | None = None,
        max_long_polls: int = 0,
        dead_letter: Iterable[tuple[str, str, int]] = (),
        visibility_timeout: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if (access_key_id is None) != (access_key_secret is None):
            raise ValueError("give both access_key_id and access_key_secret, or neither")
        self.host = host
        self._requested_port = port
        self._credentials = (
            Credentials(access_key_id, access_key_secret)
            if access_key_id is not None and access_key_secret is not None
            else None
        )
        self._faults = FaultInjector(
            fault_rate=fault_rate, latency_ms=latency_ms, seed=seed, max_long_polls=max_long_polls
        )
        ids = IdSource()
        self._signals = ArrivalSignals()
        try:
            defaults = QueueAttributes(visibility_timeout=visibility_timeout).validated()
        except MNSError as error:
            raise ValueError(error.message) from None
        self._queues = QueueStore(clock=clock, default_attributes=defaults, ids=ids)
        self._queues.wake = self._signals.wake
        self._topics = TopicStore(self._queues, ids, clock=clock)
        self._api = MNSApi(
            self._queues,
            self._topics,
            self._signals,
            self._credentials,
            clock,
            max_long_polls=lambda: self._faults.max_long_polls,
        )
        for name in queues:
            self._create_or_update(name, QueueAttributeUpdate())
        for source, target, max_receive_count in dead_letter:
            self._bind_dead_letter(source, target, max_receive_count)

        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._port: int | None = None
        self._stopped = False

    # ---------------------------------------------------------------- lifecycle

    @property
    def verifies_signatures(self) -> bool:
        """True if requests must be signed with the configured access key."""
        return self._credentials is not None

    @property
    def port(self) -> int:
        """The port listened on (the real one when constructed with port 0)."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def endpoint(self) -> str:
        """The URL to give the SDK's Account, e.g. "http://127.0.0.1:9876"."""
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"http://{host}:{self.port}"

    def start(self) -> LocalMNSServer:
        """Start serving from a background thread; return once listening.

        Raises OSError if the address cannot be listened on.
        """
        if self._thread is not None:
            raise RuntimeError("the server was already started")
        if not self.verifies_signatures:
            log.info(
                "local MNS server: no access key configured, signatures are not verified "
                "(any well-formed Authorization header is accepted)"
            )
        self._thread = threading.Thread(target=self._run, name="local-mns-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(_START_TIMEOUT_SECONDS):
            raise RuntimeError("the local MNS server did not start in time")
        if self._startup_error is not None:
            self._thread.join()
            raise self._startup_error
        return self

    def stop(self) -> None:
        """Stop serving and close every connection. Safe to call more than once."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or self._stopped:
            return
        self._stopped = True
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed
                loop.call_soon_threadsafe(stopping.set)
        thread.join(_START_TIMEOUT_SECONDS)

    def __enter__(self) -> LocalMNSServer:
        if self._thread is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --------------------------------------------------------- control at run time

    def create_queue(
        self,
        name: str,
        visibility_timeout: int | None = None,
        polling_wait_seconds: int | None = None,
        maximum_message_size: int | None = None,
        *,
        message_retention_period: int | None = None,
        delay_seconds: int | None = None,
    ) -> None:
        """Create a queue, or change the given attributes of the existing one.

        Attributes not given take the service's defaults (VisibilityTimeout: the server's).
        Raises ValueError for a bad name or an attribute out of the service's range.
        """
        update = QueueAttributeUpdate(
            visibility_timeout=visibility_timeout,
            maximum_message_size=maximum_message_size,
            message_retention_period=message_retention_period,
            delay_seconds=delay_seconds,
            polling_wait_seconds=polling_wait_seconds,
        )
        self._in_loop(lambda: self._create_or_update(name, update))

    def queue_info(self, name: str) -> QueueInfo:
        """GetQueueAttributes without HTTP: attributes and message counts.

        Raises KeyError if there is no such queue.
        """
        return self._in_loop(lambda: self._queue_info(name))

    def set_faults(
        self,
        fault_rate: float | None = None,
        latency_ms: float | None = None,
        max_long_polls: int | None = None,
    ) -> None:
        """Change the injected fault rate, latency and/or long-poll cap while the server
        runs (None leaves a value as it is)."""
        self._faults.set(
            fault_rate=fault_rate, latency_ms=latency_ms, max_long_polls=max_long_polls
        )

    # ---------------------------------------------------------------- internals

    def _create_or_update(self, name: str, update: QueueAttributeUpdate) -> None:
        try:
            if self._queues.has_queue(name):
                self._queues.set_queue_attributes(name, update)
            else:
                self._queues.create_queue(name, update)
        except MNSError as error:
            raise ValueError(f"queue {name!r}: {error.message}") from None

    def _bind_dead_letter(self, source: str, target: str, max_receive_count: int) -> None:
        try:
            self._queues.set_dead_letter(source, target, max_receive_count)
        except MNSError as error:
            raise ValueError(f"dead letter {source}:{target}: {error.message}") from None
        for name in (source, target):
            if not self._queues.has_queue(name):
                self._create_or_update(name, QueueAttributeUpdate())

    def _queue_info(self, name: str) -> QueueInfo:
        try:
            return self._queues.queue_info(name)
        except MNSError:
            raise KeyError(name) from None

    def _in_loop(self, call: Callable[[], _T]) -> _T:
        """Run `call` on the server's loop (where the stores live) and return its result."""
        loop, thread = self._loop, self._thread
        if (
            loop is None
            or thread is None
            or not thread.is_alive()
            or threading.get_ident() == thread.ident
        ):
            return call()
        result: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(call())
            except Exception as error:
                result.set_exception(error)

        loop.call_soon_threadsafe(run)
        return result.result(_CALL_TIMEOUT_SECONDS)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:
            if not self._ready.is_set():
                self._startup_error = error
                self._ready.set()
            else:
                log.exception("local MNS server stopped on an unexpected error")

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        http = HTTPServer(self._api.handle, self._faults)
        try:
            self._port = await http.start(self.host, self._requested_port)
        except OSError as error:
            self._startup_error = error
            self._ready.set()
            return
        self._ready.set()
        sweeper = asyncio.create_task(self._sweep())
        try:
            await self._stopping.wait()
        finally:
            sweeper.cancel()
            await http.close()

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_SECONDS)
            self._queues.advance()
