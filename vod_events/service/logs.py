"""Logging: structlog for our lines, and the stdlib `logging` of the SDK and libraries routed
through the same renderer, so one process writes one format.

JSON lines when stdout is not a terminal (journald, containers) or `format = "json"`;
coloured key=value lines on a terminal. With tracing on, a line written while a span is
current (during a delivery, in a handler) carries its `trace_id` and `span_id` (hex).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from vod_events import tracing

_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


def add_trace_ids(_logger: Any, _method: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: the current span's `trace_id` and `span_id`, if one is current."""
    ids = tracing.current_ids()
    if ids is not None:
        event_dict.setdefault("trace_id", ids[0])
        event_dict.setdefault("span_id", ids[1])
    return event_dict


def configure(level: str = "info", fmt: str = "auto", *, tracing: bool = False) -> None:
    """tracing: add `trace_id` / `span_id` to lines written inside a span (`[tracing]`)."""
    json_lines = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    numeric = _LEVELS[level]
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        *([add_trace_ids] if tracing else []),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
