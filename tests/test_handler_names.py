"""Handler names are idempotency keys: two handlers with one name would share a key, so the
second would be skipped as done. `Router.add` refuses a name a different handler has (each
way Python makes colliding names is tried), a config refuses two tables with one name, and
the generated names stay the same across restarts."""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import QUEUE, Harness, event_body, wait_for

from vod_events.config import from_dict
from vod_events.errors import ConfigError
from vod_events.events import VodEvent
from vod_events.router import (
    Handler,
    HandlerContext,
    Router,
    handler_name,
)
from vod_events.service.assemble import build_router

Make = Callable[..., Harness]
REPO = Path(__file__).resolve().parent.parent
ENDPOINT = {"mns": {"endpoint": "http://127.0.0.1:9876"}}


def recorder(calls: list[str], label: str) -> Callable[[VodEvent, HandlerContext], None]:
    """A closure: every handler this factory makes has the qualname `recorder.<locals>.handle`."""

    def handle(event: VodEvent, ctx: HandlerContext) -> None:
        calls.append(label)

    return handle


def record(calls: list[str], label: str, event: VodEvent, ctx: HandlerContext) -> None:
    calls.append(label)


class Notifier:
    """A callable class: its instances share the name `module:Notifier`."""

    def __init__(self, calls: list[str], label: str) -> None:
        self.calls, self.label = calls, label

    def __call__(self, event: VodEvent, ctx: HandlerContext) -> None:
        self.calls.append(self.label)

    def method(self, event: VodEvent, ctx: HandlerContext) -> None:
        self.calls.append(self.label)


def pairs(calls: list[str]) -> dict[str, tuple[Handler, Handler]]:
    return {
        "closures of one factory": (recorder(calls, "a"), recorder(calls, "b")),
        "lambdas of one scope": (
            lambda event, ctx: calls.append("a"),
            lambda event, ctx: calls.append("b"),
        ),
        "partials of one function": (
            functools.partial(record, calls, "a"),
            functools.partial(record, calls, "b"),
        ),
        "instances of one class": (Notifier(calls, "a"), Notifier(calls, "b")),
        "one method of two instances": (Notifier(calls, "a").method, Notifier(calls, "b").method),
    }


CASES = list(pairs([]))


@pytest.mark.parametrize("case", CASES)
def test_a_generated_name_that_collides_is_refused_asking_for_name(case: str) -> None:
    first, second = pairs([])[case]
    router = Router()
    router.add(first)
    with pytest.raises(ValueError) as refused:  # DuplicateHandlerName
        router.add(second)
    message = str(refused.value)
    assert repr(handler_name(first)) in message
    assert "idempotency" in message
    assert "name='...'" in message
    assert type(refused.value).__name__ == "DuplicateHandlerName"
    assert len(router.routes) == 1  # nothing half-registered


@pytest.mark.parametrize("case", CASES)
def test_with_distinct_names_both_handlers_run_for_one_event(harness: Make, case: str) -> None:
    calls: list[str] = []
    first, second = pairs(calls)[case]
    h = harness()
    h.router.add(first, name="first")
    h.router.add(second, name="second")
    h.put(event_body("job-1"))
    h.start()
    wait_for(lambda: h.stats.get("deleted") == 1, what="the deletion")
    h.stop()
    assert sorted(calls) == ["a", "b"]


def test_an_explicit_name_that_is_taken_is_refused_too() -> None:
    router = Router()
    router.add(recorder([], "a"), name="save")
    with pytest.raises(ValueError, match="'save' is taken"):
        router.add(Notifier([], "b"), name="save")


def test_one_handler_may_be_registered_again_and_runs_once(harness: Make) -> None:
    calls: list[str] = []
    h = harness()
    notifier = Notifier(calls, "m")

    @h.router.on("AIVideoTagComplete")
    @h.router.on()
    def both(event: VodEvent, ctx: HandlerContext) -> None:
        calls.append("both")

    # A bound method is a new object each time it is read, equal to the last one.
    h.router.add(notifier.method, ["AIVideoTagComplete"])
    h.router.add(notifier.method)
    h.put(event_body("job-1"))
    h.start()
    wait_for(lambda: h.stats.get("deleted") == 1, what="the deletion")
    h.stop()
    assert sorted(calls) == ["both", "m"]
    assert h.broker.bodies(QUEUE) == []


def test_a_partial_is_named_after_its_function() -> None:
    name = handler_name(functools.partial(record, [], "a"))
    assert name == f"{record.__module__}:record"


def test_generated_names_are_the_same_in_every_process(tmp_path: Path) -> None:
    """Names are idempotency keys: a restarted daemon must compute the same ones."""
    (tmp_path / "handlers_mod.py").write_text(
        textwrap.dedent(
            """
            import functools

            def factory():
                def inner(event, ctx): ...
                return inner

            def plain(event, ctx, extra=None): ...

            class Callable:
                def __call__(self, event, ctx): ...
                def method(self, event, ctx): ...

            HANDLERS = [
                factory(), lambda event, ctx: None, functools.partial(plain, extra=object()),
                Callable(), Callable().method, plain,
            ]
            """
        )
    )
    script = (
        "import handlers_mod; from vod_events.router import handler_name; "
        "print('\\n'.join(handler_name(h) for h in handlers_mod.HANDLERS))"
    )

    def names() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=REPO,
            env={"PYTHONPATH": f"{tmp_path}:{REPO}", "PYTHONHASHSEED": "random"},
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.splitlines()

    first = names()
    assert first == names()
    assert first == [
        "handlers_mod:factory.<locals>.inner",
        "handlers_mod:<lambda>",
        "handlers_mod:plain",
        "handlers_mod:Callable",
        "handlers_mod:Callable.method",
        "handlers_mod:plain",
    ]


# ------------------------------------------------------------------ in a config


@pytest.mark.parametrize(
    ("tables", "key", "name"),
    [
        (
            [{"type": "log"}, {"type": "log", "events": ["AIMediaDNAComplete"]}],
            "handlers[1]",
            "log",
        ),
        (
            [{"type": "jsonl", "path": "a.jsonl"}, {"type": "jsonl", "path": "./a.jsonl"}],
            "handlers[1]",
            "jsonl:a.jsonl",
        ),
        (
            [{"type": "log", "name": "audit"}, {"call": "sample_handlers:record", "name": "audit"}],
            "handlers[1].name",
            "audit",
        ),
        (
            [{"type": "log"}, {"call": "sample_handlers:record", "name": "log"}],
            "handlers[1].name",
            "log",
        ),
    ],
)
def test_a_config_refuses_two_tables_with_one_name(
    tables: list[dict[str, object]], key: str, name: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        from_dict({**ENDPOINT, "handlers": tables}, "cfg.toml", {})
    assert str(refused.value) == (
        f"cfg.toml, key {key!r}: has the same name as handlers[0], {name!r}: names are "
        "idempotency keys, so once one completed for an event the other would be skipped as "
        "done; give one of them a distinct `name`"
    )


def test_a_config_may_list_one_function_twice_and_distinct_names_are_fine() -> None:
    tables = [
        {"call": "sample_handlers:record", "events": ["AIVideoTagComplete"]},
        {"call": "sample_handlers:record", "events": ["AIMediaDNAComplete"]},
        {"type": "log"},
        {"type": "log", "name": "second-log"},
        {"type": "http", "url": "http://127.0.0.1:1/a"},
        {"type": "http", "url": "http://127.0.0.1:1/b"},
    ]
    config = from_dict({**ENDPOINT, "handlers": tables}, "cfg.toml", {})
    router = build_router(config)
    assert [route.name for route in router.routes] == [
        "sample_handlers:record",
        "sample_handlers:record",
        "log",
        "second-log",
        "http:http://127.0.0.1:1/a",
        "http:http://127.0.0.1:1/b",
    ]
