"""Decoder throughput on the seed payloads, against the floor of plain JSON parsing.

For each payload: events/s of ``vod_events.decoder.decode(body)`` and of the floor, which is
``json.loads(body)`` plus ``json.loads(Data)`` when Data is a JSON string - the parsing any
decoder must do. They are timed in the same run, on the same process, in alternate rounds;
each figure is the best of ``--repeat`` rounds of ``--number`` calls. The ratio decode/floor
is what the issue's target (<= 3x) refers to.

Rows marked "(Base64)" / "(topic envelope, Base64)" decode the same seed in that encoding.
Their "ratio" is still against the plain seed's floor; their "+unwrap" ratio is against a floor
that also does the unwrapping any decoder must do first: Base64-decoding the body (and, for the
envelope, ``json.loads`` of the envelope to reach its Base64 ``Message``).

    .venv/bin/python bench/bench_decoder.py [--number 2000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import base64
import functools
import json
import platform
import timeit
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from vod_events.decoder import decode

SAMPLES = Path(str(resources.files("vod_events") / "samples"))
SEEDS = {
    "seed 000 AIVideoTagComplete": "AIVideoTagComplete.json",
    "seed 001 AIMediaDNAComplete": "AIMediaDNAComplete.json",
    "seed 002 AIVideoTagComplete": "AIVideoTagComplete.seed002.json",
    "seed 003 AIMediaAuditComplete": "AIMediaAuditComplete.json",
}


def parse_event(body: str) -> Any:
    """The parsing every decoder has to do: the body, and Data when it is a JSON string."""
    event = json.loads(body)
    data = event.get("Data")
    return json.loads(data) if isinstance(data, str) else event


def parse_wrapped(body: str, unwrap: Callable[[str], str]) -> Any:
    """The floor of an encoded body: unwrapping it, then parsing the event."""
    return parse_event(unwrap(body))


def from_base64(body: str) -> str:
    return base64.b64decode(body).decode("utf-8")


def from_envelope(body: str) -> str:
    return from_base64(json.loads(body)["Message"])


def best_of_alternate_rounds(
    calls: list[Callable[[], Any]], number: int, repeat: int
) -> list[float]:
    """Seconds per call of each of ``calls``: the best of ``repeat`` rounds of ``number`` calls
    each, the rounds alternating so that a burst of load from elsewhere on the machine slows
    all of them rather than one."""
    best = [float("inf")] * len(calls)
    for _ in range(repeat):
        for index, call in enumerate(calls):
            best[index] = min(best[index], timeit.timeit(call, number=number))
    return [seconds / number for seconds in best]


def envelope(body: str) -> str:
    return json.dumps(
        {
            "TopicOwner": "1234567890123456",
            "TopicName": "vod-events",
            "MessageId": "5F1A2B3C4D5E6F708192A3B4C5D6E7F8",
            "Message": base64.b64encode(body.encode("utf-8")).decode("ascii"),
            "PublishTime": 1715566308000,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=2000, help="calls per round")
    parser.add_argument("--repeat", type=int, default=15, help="rounds; the best one counts")
    args = parser.parse_args()

    # (label, body, the plain seed it encodes, how to unwrap body to it - None when plain)
    rows: list[tuple[str, str, str, Callable[[str], str] | None]] = []
    for label, name in SEEDS.items():
        body = (SAMPLES / name).read_text(encoding="utf-8")
        rows.append((label, body, body, None))
    tag = (SAMPLES / SEEDS["seed 000 AIVideoTagComplete"]).read_text(encoding="utf-8")
    rows.append(("seed 000 (Base64)", base64.b64encode(tag.encode()).decode(), tag, from_base64))
    rows.append(("seed 000 (topic envelope, Base64)", envelope(tag), tag, from_envelope))

    print(f"Python {platform.python_version()} on {platform.machine()}, ", end="")
    print(f"best of {args.repeat} x {args.number} calls")
    header = (
        f"{'payload':36} {'bytes':>6} {'floor/s':>9} {'decode/s':>9} {'us/event':>9} "
        f"{'ratio':>6} {'+unwrap':>7}"
    )
    print(header)
    print("-" * len(header))
    for label, body, plain, unwrap in rows:
        decode(body)  # warm up, and fail loudly if the payload does not decode
        calls: list[Callable[[], Any]] = [
            functools.partial(decode, body),
            functools.partial(parse_event, plain),
        ]
        if unwrap is not None:
            assert unwrap(body) == plain
            calls.append(functools.partial(parse_wrapped, body, unwrap))
        decoded, floor, *unwrap_floor = best_of_alternate_rounds(calls, args.number, args.repeat)
        with_unwrap = f"{decoded / unwrap_floor[0]:6.2f}x" if unwrap_floor else f"{'-':>7}"
        print(
            f"{label:36} {len(body):6d} {1 / floor:9,.0f} {1 / decoded:9,.0f} "
            f"{decoded * 1e6:9.1f} {decoded / floor:5.2f}x {with_unwrap}"
        )
    print(
        "ratio: decode / floor (json.loads of the plain seed and of its Data string).\n"
        "+unwrap: decode / (that floor plus Base64-decoding the body, and for the envelope\n"
        "json.loads of the envelope first) - the unwrapping any decoder must do as well."
    )


if __name__ == "__main__":
    main()
