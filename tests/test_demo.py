"""`vod-events demo`, the README's first command, run as a newcomer runs it: the installed
command in a fresh process, 20 times in a row. Every run must exit 0 within seconds and
print the same summary; the README's sample output must be what it prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNS = 20
SUMMARY = "done: 37 received, 32 handled, 4 duplicates skipped, 1 dead-lettered, 37 deleted"
HANDLED_LINES = 32  # one per distinct event: 33 samples, one of them the same event as another
SECONDS_PER_RUN = 10.0  # a run takes about half a second; a hang is caught long before


@dataclass(frozen=True)
class DemoRun:
    returncode: int
    seconds: float
    output: str  # stdout and stderr in one stream, in the order a terminal shows them
    state: Path


def run_demo(state: Path) -> DemoRun:
    command = Path(sys.executable).with_name("vod-events")  # the installed console script
    assert command.exists(), f"{command} is missing: install the package (make setup)"
    started = time.monotonic()
    try:
        done = subprocess.run(
            [str(command), "demo", "--state-dir", str(state)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode(errors="replace") if exc.stdout else ""
        return DemoRun(-1, time.monotonic() - started, output, state)
    return DemoRun(
        done.returncode, time.monotonic() - started, done.stdout.decode(errors="replace"), state
    )


@pytest.fixture(scope="module")
def demo_runs(tmp_path_factory: pytest.TempPathFactory) -> list[DemoRun]:
    base = tmp_path_factory.mktemp("demo")
    return [run_demo(base / f"run-{i}") for i in range(RUNS)]


def normalized(text: str) -> list[str]:
    """The output's lines with what differs between runs (port, message ids, times, the
    state directory) replaced by placeholders."""
    rules = [
        (r"http://127\.0\.0\.1:\d+", "http://127.0.0.1:<port>"),
        (r"dead letter \S+\.json", "dead letter <message>.json"),
        (r"message_id=\S+", "message_id=<id>"),
        (r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z", "<time>"),
        (r"\S*/events\.jsonl", "<state>/events.jsonl"),
    ]
    lines = []
    for raw in text.splitlines():
        line = raw
        for pattern, replacement in rules:
            line = re.sub(pattern, replacement, line)
        lines.append(line.rstrip())
    return lines


def problems(run: DemoRun) -> list[str]:
    found = []
    if run.returncode != 0:
        found.append(f"exit code {run.returncode}")
    if run.seconds > SECONDS_PER_RUN:
        found.append(f"took {run.seconds:.1f} s")
    lines = run.output.splitlines()
    if SUMMARY not in lines:
        found.append("no summary line " + repr(SUMMARY))
    if (handled := sum(line.startswith("  handled  ") for line in lines)) != HANDLED_LINES:
        found.append(f"{handled} 'handled' lines, not {HANDLED_LINES}")
    if not any(re.fullmatch(r"  dead letter \S+\.json: undecodable: .+", ln) for ln in lines):
        found.append("no dead letter with its reason")
    events = run.state / "events.jsonl"
    if not events.exists() or len(events.read_text().splitlines()) != HANDLED_LINES:
        found.append(f"{events} does not hold {HANDLED_LINES} events")
    if len(list((run.state / "dead-letters").glob("*.json"))) != 1:
        found.append("not exactly one dead-letter file")
    return found


def test_demo_exits_0_with_the_same_summary_every_time(demo_runs: list[DemoRun]) -> None:
    failures = {i: found for i, run in enumerate(demo_runs) if (found := problems(run))}
    slowest = max(run.seconds for run in demo_runs)
    print(f"{RUNS} runs, slowest {slowest:.2f} s")
    assert not failures, "\n\n".join(
        f"run {i}: {', '.join(found)}\n{demo_runs[i].output[-3000:]}"
        for i, found in failures.items()
    )
    # Not only the summary: every run prints the same lines, in the same order.
    first = normalized(demo_runs[0].output)
    differing = [i for i, run in enumerate(demo_runs) if normalized(run.output) != first]
    assert not differing, f"runs {differing} printed other lines than run 0"


def readme_sample() -> list[str]:
    """The README's sample output of `make demo`: the first code block after the sentence
    that introduces it."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    intro = text.index("`make demo` starts the local MNS server")
    match = re.search(r"^```\n(.*?)^```", text[intro:], flags=re.DOTALL | re.MULTILINE)
    assert match, "no code block after the README's description of `make demo`"
    return normalized(match.group(1))


def test_readme_sample_output_is_what_the_demo_prints(demo_runs: list[DemoRun]) -> None:
    """The sample's lines, in order; a line `...` stands for lines left out, anything else
    must be there as shown, the first line first and the last line last."""
    printed = normalized(demo_runs[0].output)
    sample = readme_sample()
    chunks: list[list[str]] = [[]]
    for line in sample:
        if line.strip() == "...":
            chunks.append([])
        else:
            chunks[-1].append(line)
    position = 0
    for n, chunk in enumerate(chunks):
        if not chunk:
            continue
        starts = [
            i
            for i in range(position, len(printed) - len(chunk) + 1)
            if printed[i : i + len(chunk)] == chunk
        ]
        assert starts, (
            f"README sample lines not printed (in this order, after line {position}):\n"
            + "\n".join(chunk)
            + "\n\nprinted:\n"
            + "\n".join(printed)
        )
        start = starts[0]
        assert n > 0 or start == 0, "the README sample does not begin with the first line"
        position = start + len(chunk)
    assert chunks[-1] and position == len(printed), (
        "the README sample does not end with the last line printed:\n" + "\n".join(printed)
    )
