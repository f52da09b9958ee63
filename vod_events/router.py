"""Which handlers run for which event.

    router = Router()

    @router.on(AIVideoTagComplete)            # by event class (subclasses match too)
    def save_tags(event: AIVideoTagComplete, ctx: HandlerContext) -> None: ...

    @router.on("AIMediaAuditComplete")        # by EventType string
    @router.on()                              # every event
    def audit(event: VodEvent, ctx: HandlerContext) -> None: ...

Every matching handler must succeed for a message to be deleted. Handlers run in the order
they were registered.

A handler's name is its idempotency key: once a handler with that name completed for an event,
no handler of that name runs for it again. So `add` refuses a name already taken by a
different handler (two closures from one factory, two lambdas of one module, two
`functools.partial` of one function, two instances of one callable class all get the same
generated name): pass `name=` a stable, unique name. It refuses an EventType string that is
not a known type too (a typo would match nothing, and every such event would be deleted as
unhandled), with a suggestion; `allow_unknown=True` accepts one VOD added after this release.

A transactional handler (`router.on(..., transactional=True)`) gets `ctx.db`: a psycopg
connection inside a transaction of the idempotency store's PostgreSQL database that also
records the handler's completion for the event. It commits after the handler returns; an
exception rolls back both. So the handler's rows and its completion are durable together or
not at all, whenever the process dies: its effects happen exactly once. It needs the
`postgres` idempotency store (`[dedupe] backend = "postgres"`).

    @router.on(AIVideoTagComplete, transactional=True)
    def save_tags(event: AIVideoTagComplete, ctx: HandlerContext) -> None:
        assert ctx.db is not None
        ctx.db.execute("INSERT INTO tags (media_id, tag) VALUES (%s, %s)", (...))

An `async def` handler (or a callable object whose `__call__` is one) is awaited on the
consumer's event-loop thread (`vod_events.aio`), with the same retries, claims, heartbeat and
dead letters as a sync one; sync handlers keep the worker threads. A transactional handler
must be sync (`ctx.db` is a blocking connection).

Per-handler limits: `timeout` seconds per call (an async call is cancelled, counted as a
failed try and retried; a sync one cannot be cancelled, so it is logged and counted as an
overrun while it runs on) and `max_concurrency`, the most calls of the handler at once.

    @router.on("AIMediaAuditComplete", timeout=10, max_concurrency=5)
    async def report(event: VodEvent, ctx: HandlerContext) -> None:
        await client.post(...)
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from vod_events.errors import ConfigError
from vod_events.events import EVENT_TYPES, VodEvent

if TYPE_CHECKING:  # psycopg is optional (the `postgres` extra); only its type is named here
    from psycopg import Connection
    from psycopg.rows import TupleRow

# How a delivery arrived: from the MNS queue, or as a VOD HTTP callback.
ContextSource = Literal["mns", "http"]


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """What a handler knows about the delivery besides the event itself.

    db: for a transactional handler, a connection inside the transaction that also records
        its completion (commit nothing yourself; `db.transaction()` makes a savepoint);
        None for every other handler.
    """

    message_id: str
    dequeue_count: int  # 1 on the first delivery
    enqueue_time: datetime | None  # when the message entered the queue (UTC)
    source: ContextSource = "mns"
    db: Connection[TupleRow] | None = None


Handler = Callable[[Any, HandlerContext], object]


@dataclass(frozen=True, slots=True)
class Route:
    """One registration: a handler, a stable name for it, and what it matches.

    transactional: the handler runs inside the store's transaction, with `ctx.db`.
    is_async: the handler is a coroutine function (see `is_async_handler`).
    timeout: seconds one call may take (None: no limit); see the module docstring.
    max_concurrency: the most calls of this handler at once (None: no limit)."""

    handler: Handler
    name: str
    event_types: frozenset[str] | None  # None: any event type
    event_class: type[VodEvent] | None
    transactional: bool = False
    is_async: bool = False
    timeout: float | None = None
    max_concurrency: int | None = None

    def matches(self, event: VodEvent) -> bool:
        if self.event_class is not None and not isinstance(event, self.event_class):
            return False
        return self.event_types is None or event.event_type in self.event_types


def handler_name(handler: Handler) -> str:
    """A name stable across restarts: the handler's own `name` attribute (the built-ins'),
    else `module:qualname` - of the function, of a method's class and function, of the
    function a `functools.partial` wraps, or of a callable instance's class.

    Not unique: closures from one factory share their qualname (`factory.<locals>.inner`),
    as do the lambdas of one scope, the partials of one function and the instances of one
    class. `Router.add` refuses the second of such a pair (see `DuplicateHandlerName`)."""
    name = getattr(handler, "name", None)
    if isinstance(name, str):
        return name
    if isinstance(handler, functools.partial):
        return handler_name(handler.func)
    module = getattr(handler, "__module__", None) or type(handler).__module__
    qualname = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{module}:{qualname}"


def is_async_handler(handler: Handler) -> bool:
    """Is calling `handler` starting a coroutine? True for an `async def` function or method,
    a `functools.partial` of one, and a callable object whose `__call__` is one."""
    if inspect.iscoroutinefunction(handler):  # unwraps partials
        return True
    call = getattr(type(handler), "__call__", None)  # noqa: B004 - the class's, not callable()
    return not inspect.isroutine(handler) and inspect.iscoroutinefunction(call)


def unknown_event_type(name: str) -> str | None:
    """None if `name` is "*" or a known EventType; else why not, with a "did you mean"."""
    if name == "*" or name in EVENT_TYPES:
        return None
    folded = {known.lower(): known for known in EVENT_TYPES}
    close = [folded[name.lower()]] if name.lower() in folded else []
    close = close or difflib.get_close_matches(name, list(EVENT_TYPES), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{name!r} is not a known EventType{hint}"


class DuplicateHandlerName(ValueError):
    """`Router.add` was given a name that a different handler already has."""


class TransactionalConflict(ValueError):
    """`Router.add` registered a handler again with another `transactional` flag (or other
    limits), or a transactional handler that is async."""


class Router:
    """An ordered list of routes; lookups are cached per event type and class."""

    MAX_CACHED = 1024

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self._cache: dict[tuple[type[VodEvent], str], tuple[Route, ...]] = {}

    def on(
        self,
        *selectors: str | type[VodEvent],
        name: str | None = None,
        allow_unknown: bool = False,
        transactional: bool = False,
        timeout: float | None = None,
        max_concurrency: int | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated handler for events matching any selector (none: all)."""

        def register(handler: Handler) -> Handler:
            self.add(
                handler,
                selectors,
                name=name,
                allow_unknown=allow_unknown,
                transactional=transactional,
                timeout=timeout,
                max_concurrency=max_concurrency,
            )
            return handler

        return register

    def add(
        self,
        handler: Handler,
        selectors: Sequence[str | type[VodEvent]] = (),
        *,
        name: str | None = None,
        allow_unknown: bool = False,
        transactional: bool = False,
        timeout: float | None = None,
        max_concurrency: int | None = None,
    ) -> None:
        """Register `handler`; selectors are EventType strings, event classes, or "*".

        `name` (default: `handler_name`) is the handler's idempotency key. Raises
        `DuplicateHandlerName` if a different handler has it already (the same handler may
        be registered again, for more selectors), `TransactionalConflict` if it is
        registered again with the other `transactional` flag, and ValueError for an
        EventType string that is not a known type, unless `allow_unknown`.

        `transactional`: run the handler inside the idempotency store's transaction, with
        `ctx.db` (see the module docstring); the consumer refuses to start unless its store
        is the PostgreSQL one.

        `timeout` (seconds > 0) and `max_concurrency` (>= 1): see the module docstring.
        ValueError for values out of range; TransactionalConflict for an async
        transactional handler, or one registered again with other limits.
        """
        route_name = name or handler_name(handler)
        is_async = is_async_handler(handler)
        if timeout is not None and not timeout > 0:
            raise ValueError(f"handler {route_name!r}: timeout must be > 0 seconds, not {timeout}")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(
                f"handler {route_name!r}: max_concurrency must be >= 1, not {max_concurrency}"
            )
        if transactional and is_async:
            raise TransactionalConflict(
                f"handler {route_name!r} is async and transactional: a transactional handler "
                "runs on a worker thread with ctx.db, a blocking connection; make it a plain "
                "`def`"
            )
        for route in self.routes:
            if route.name == route_name and not _same(route.handler, handler):
                raise DuplicateHandlerName(
                    f"handler name {route_name!r} is taken by another handler: names are "
                    "idempotency keys, so once either completed for an event the other would "
                    "be skipped as done. Give each a stable, unique name: "
                    "router.on(..., name='...') or router.add(..., name='...')"
                )
            if route.name == route_name and route.transactional != transactional:
                raise TransactionalConflict(
                    f"handler {route_name!r} is registered already with transactional="
                    f"{route.transactional}: one handler runs one way for every event it "
                    f"matches; register it again with transactional={route.transactional}"
                )
            if route.name == route_name and (route.timeout, route.max_concurrency) != (
                timeout,
                max_concurrency,
            ):
                raise TransactionalConflict(
                    f"handler {route_name!r} is registered already with timeout={route.timeout}"
                    f", max_concurrency={route.max_concurrency}: one handler has one set of "
                    "limits; register it again with the same ones"
                )
        strings = {s for s in selectors if isinstance(s, str)}
        if not allow_unknown:
            for selector in sorted(strings):
                problem = unknown_event_type(selector)
                if problem:
                    raise ValueError(
                        f"{problem} (for a type VOD added after this release, pass "
                        "allow_unknown=True)"
                    )
        classes = [s for s in selectors if not isinstance(s, str)]
        make = functools.partial(
            Route,
            handler,
            route_name,
            transactional=transactional,
            is_async=is_async,
            timeout=timeout,
            max_concurrency=max_concurrency,
        )
        if "*" in strings or not selectors:
            self.routes.append(make(None, None))
        if strings - {"*"}:
            self.routes.append(make(frozenset(strings - {"*"}), None))
        for cls in classes:
            self.routes.append(make(None, cls))
        self._cache.clear()

    @property
    def has_async(self) -> bool:
        """Does any route need the event loop?"""
        return any(r.is_async for r in self.routes)

    @property
    def transactional(self) -> list[str]:
        """The names of the transactional handlers, in registration order."""
        return list(dict.fromkeys(r.name for r in self.routes if r.transactional))

    def routes_for(self, event: VodEvent) -> tuple[Route, ...]:
        key = (type(event), event.event_type)
        found = self._cache.get(key)
        if found is None:
            seen: set[str] = set()
            matched = []
            for route in self.routes:
                # A handler registered under two selectors that both match runs once (a
                # name belongs to one handler: see `add`).
                if route.matches(event) and route.name not in seen:
                    seen.add(route.name)
                    matched.append(route)
            found = tuple(matched)
            # Unknown EventType strings come from outside: keep the cache bounded.
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
            self._cache[key] = found
        return found


def _same(a: Handler, b: Handler) -> bool:
    """One handler: the same object, or equal ones (`obj.method` makes a new, equal, bound
    method each time it is read)."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # an __eq__ that cannot compare: not the same
        return False


def import_handler(spec: str) -> Handler:
    """Resolve `package.module:function` (or `:Class.method`) to a callable.

    Raises ConfigError for anything that stops it: a malformed spec, a module that is not
    there, or one that fails while it is imported (a SyntaxError, an exception, `sys.exit`).
    """
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigError(f"handler {spec!r} must look like 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import module {module_name!r} for handler {spec!r}: {exc}"
        ) from None
    except SyntaxError as exc:
        raise ConfigError(
            f"cannot import module {module_name!r} for handler {spec!r}: SyntaxError in "
            f"{exc.filename}, line {exc.lineno}: {exc.msg}"
        ) from None
    except (Exception, SystemExit) as exc:  # the module's own code failed as it ran
        raise ConfigError(
            f"cannot import module {module_name!r} for handler {spec!r}: importing it raised "
            f"{type(exc).__name__}: {exc}"
        ) from None
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ConfigError(
                f"module {module_name!r} has no {attr_path!r} (handler {spec!r})"
            ) from None
    if not callable(target):
        raise ConfigError(f"handler {spec!r} is not callable")
    return target  # type: ignore[no-any-return]
