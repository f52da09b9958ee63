"""Which handlers run for which event.

    router = Router()

    @router.on(AIVideoTagComplete)            # by event class (subclasses match too)
    def save_tags(event: AIVideoTagComplete, ctx: HandlerContext) -> None: ...

    @router.on("AIMediaAuditComplete")        # by EventType string
    @router.on()                              # every event
    def audit(event: VodEvent, ctx: HandlerContext) -> None: ...

Every matching handler must succeed for a message to be deleted. Handlers run in the order
they were registered.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from vod_events.errors import ConfigError
from vod_events.events import VodEvent

# How a delivery arrived: from the MNS queue, or as a VOD HTTP callback.
ContextSource = Literal["mns", "http"]


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """What a handler knows about the delivery besides the event itself."""

    message_id: str
    dequeue_count: int  # 1 on the first delivery
    enqueue_time: datetime | None  # when the message entered the queue (UTC)
    source: ContextSource = "mns"


Handler = Callable[[Any, HandlerContext], object]


@dataclass(frozen=True, slots=True)
class Route:
    """One registration: a handler, a stable name for it, and what it matches."""

    handler: Handler
    name: str
    event_types: frozenset[str] | None  # None: any event type
    event_class: type[VodEvent] | None

    def matches(self, event: VodEvent) -> bool:
        if self.event_class is not None and not isinstance(event, self.event_class):
            return False
        return self.event_types is None or event.event_type in self.event_types


def handler_name(handler: Handler) -> str:
    """A stable name: `module:qualname` for functions, the class name for built-ins."""
    name = getattr(handler, "name", None)
    if isinstance(name, str):
        return name
    module = getattr(handler, "__module__", type(handler).__module__)
    qualname = getattr(handler, "__qualname__", type(handler).__qualname__)
    return f"{module}:{qualname}"


class Router:
    """An ordered list of routes; lookups are cached per event type and class."""

    MAX_CACHED = 1024

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self._cache: dict[tuple[type[VodEvent], str], tuple[Route, ...]] = {}

    def on(
        self, *selectors: str | type[VodEvent], name: str | None = None
    ) -> Callable[[Handler], Handler]:
        """Register the decorated handler for events matching any selector (none: all)."""

        def register(handler: Handler) -> Handler:
            self.add(handler, selectors, name=name)
            return handler

        return register

    def add(
        self,
        handler: Handler,
        selectors: Sequence[str | type[VodEvent]] = (),
        *,
        name: str | None = None,
    ) -> None:
        """Register `handler`; selectors are EventType strings, event classes, or "*"."""
        route_name = name or handler_name(handler)
        strings = {s for s in selectors if isinstance(s, str)}
        classes = [s for s in selectors if not isinstance(s, str)]
        if "*" in strings or not selectors:
            self.routes.append(Route(handler, route_name, None, None))
        if strings - {"*"}:
            self.routes.append(Route(handler, route_name, frozenset(strings - {"*"}), None))
        for cls in classes:
            self.routes.append(Route(handler, route_name, None, cls))
        self._cache.clear()

    def routes_for(self, event: VodEvent) -> tuple[Route, ...]:
        key = (type(event), event.event_type)
        found = self._cache.get(key)
        if found is None:
            seen: set[int] = set()
            matched = []
            for route in self.routes:
                # A handler registered under two selectors that both match runs once.
                if route.matches(event) and id(route.handler) not in seen:
                    seen.add(id(route.handler))
                    matched.append(route)
            found = tuple(matched)
            # Unknown EventType strings come from outside: keep the cache bounded.
            if len(self._cache) >= self.MAX_CACHED:
                self._cache.clear()
            self._cache[key] = found
        return found


def import_handler(spec: str) -> Handler:
    """Resolve `package.module:function` (or `:Class.method`) to a callable."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigError(f"handler {spec!r} must look like 'package.module:function'")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import module {module_name!r} for handler {spec!r}: {exc}"
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
