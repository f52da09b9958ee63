"""What `submit-ai-job` and `ai-jobs` share: where VOD is, which credentials, how errors print,
and `--wait`: polling until the jobs finish, the progress shown on a terminal, one JSON line per
finished job, and the exit codes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

from vod_events.aijobs import (
    DEFAULT_REGION,
    FIRST_POLL_INTERVAL,
    MAX_POLL_INTERVAL,
    NOT_FOUND,
    UNSEEN,
    AIJob,
    AIJobInputError,
    PollPolicy,
    VodApiError,
    WaitResult,
    wait_for_jobs,
)
from vod_events.config.credentials import (
    DEFAULT_CHAIN,
    ENV_ACCESS_KEY_ID,
    ENV_ACCESS_KEY_SECRET,
    ENV_SECURITY_TOKEN,
    MODES,
    STATIC,
    Credentials,
    how_to_supply,
    resolve,
)

EXIT_SERVICE = 1  # the service refused or could not be reached; with --wait: a job failed
EXIT_USAGE = 2
EXIT_TIMEOUT = 124  # --wait: the time ran out with jobs still running (as timeout(1) exits)
EXIT_INTERRUPTED = 130  # --wait: interrupted (Ctrl-C)

DEFAULT_TIMEOUT = 3600.0  # --wait gives up after an hour unless told otherwise
TICK = 1.0  # seconds between two redraws of the progress while waiting

# The event whose ``result`` has the same shape as a ListAIJob job of this Type.
EVENT_TYPES = {
    "AIVideoTag": "AIVideoTagComplete",
    "AIMediaDNA": "AIMediaDNAComplete",
    "AIMediaAudit": "AIMediaAuditComplete",
}


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    """The region, endpoint and credential options of both commands."""
    parser.add_argument("--region", default=DEFAULT_REGION, help="VOD region (%(default)s)")
    parser.add_argument(
        "--endpoint", help="HOST:PORT (or http://HOST:PORT) instead of the region's endpoint"
    )
    parser.add_argument(
        "--credentials",
        choices=MODES,
        default=STATIC,
        help=f"{STATIC}: the AccessKey from the flags below or {ENV_ACCESS_KEY_ID} / _SECRET / "
        f"{ENV_SECURITY_TOKEN}; {DEFAULT_CHAIN}: the Alibaba Cloud credential chain",
    )
    parser.add_argument("--access-key-id", help=f"else {ENV_ACCESS_KEY_ID}")
    parser.add_argument(
        "--access-key-secret",
        help=f"else {ENV_ACCESS_KEY_SECRET} (prefer the variable: flags are visible "
        "to other users in the process list)",
    )
    parser.add_argument("--security-token", help=f"else {ENV_SECURITY_TOKEN}")


def add_wait_arguments(parser: argparse.ArgumentParser) -> None:
    """--wait, and the options that only make sense with it."""
    group = parser.add_argument_group("waiting for the results")
    group.add_argument(
        "--wait",
        action="store_true",
        help="poll ListAIJob until every job has finished, then print each as one JSON line "
        "(exit 0: all succeeded, 1: one failed, 124: timed out)",
    )
    group.add_argument(
        "--timeout",
        type=_seconds,
        metavar="SECONDS",
        help=f"with --wait: give up after this long (default {DEFAULT_TIMEOUT:g})",
    )
    group.add_argument(
        "--poll-interval",
        type=_seconds,
        metavar="SECONDS",
        help=f"with --wait: the first pause between polls (default {FIRST_POLL_INTERVAL:g}; "
        f"it grows to {MAX_POLL_INTERVAL:g})",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def location(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments naming where VOD is and who we are.

    Raises AIJobInputError (exit 2, nothing sent) when no AccessKey is found.
    """
    return {"region": args.region, "endpoint": args.endpoint, "credentials": _credentials(args)}


def call_and_print(
    command: str, call: Callable[[], Sequence[Any]], args: argparse.Namespace | None = None
) -> int:
    """Run an API call and print its result as JSON; the exit code. ``args``: the command's,
    checked for options that need --wait."""
    try:
        if args is not None and (args.timeout is not None or args.poll_interval is not None):
            raise AIJobInputError("--timeout and --poll-interval only apply with --wait")
        output = call()
    except AIJobInputError as exc:
        print(f"vod-events {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VodApiError as exc:
        print(f"vod-events {command}: {exc.one_line()}", file=sys.stderr)
        return EXIT_SERVICE
    print(json.dumps([dataclasses.asdict(item) for item in output], ensure_ascii=False, indent=2))
    return 0


def wait_and_print(
    command: str,
    args: argparse.Namespace,
    start: Callable[[dict[str, Any]], Mapping[str, str | None]],
) -> int:
    """--wait: ``start`` (given the location) names the jobs (job id -> type, when known), by
    submitting them or as given; then poll until they have finished, and print them.

    stdout: one JSON line per finished job (``job_record``), in the order of the ids, once the
    waiting is over. stderr: the progress when it is a terminal; else only what went wrong -
    a failed job (its code and message), an unknown id, the jobs still running.

    Exit codes: 0 every job succeeded; 1 one failed, VOD did not know an id (which stops the
    wait at once) or a result could not be read - whether or not others were still running -
    or the service refused; 124 the time ran out with jobs still running; 130 interrupted;
    2 invalid arguments, nothing sent.
    """
    try:
        timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT
        policy = PollPolicy(first_interval=args.poll_interval or FIRST_POLL_INTERVAL)
        where = location(args)
        jobs = start(where)
        if not jobs:
            print(f"vod-events {command}: no job to wait for", file=sys.stderr)
            return EXIT_SERVICE
        tracker = Tracker(jobs, sys.stderr if sys.stderr.isatty() else None)
        try:
            outcome = wait_for_jobs(
                list(jobs),
                timeout=timeout,
                policy=policy,
                on_progress=tracker.update,
                sleep=tracker.sleep,
                **where,
            )
        except KeyboardInterrupt:
            print_finished(tracker.state)
            print(f"vod-events {command}: interrupted", file=sys.stderr)
            _list_running(command, tracker.state.running)
            return EXIT_INTERRUPTED
    except AIJobInputError as exc:
        print(f"vod-events {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VodApiError as exc:
        print(f"vod-events {command}: {exc.one_line()}", file=sys.stderr)
        return EXIT_SERVICE
    return report(command, outcome, timeout)


def report(command: str, outcome: WaitResult, timeout: float) -> int:
    """Print the finished jobs (stdout) and what went wrong (stderr); the exit code."""
    print_finished(outcome)
    wrong = False
    for job in outcome.jobs:
        what = f"vod-events {command}: job {job.job_id}" + (f" ({job.type})" if job.type else "")
        if job.failed:
            reason = (
                ": ".join(part for part in (job.code, job.message) if part) or "no reason given"
            )
            print(f"{what} failed: {reason}", file=sys.stderr)
        elif job.status == NOT_FOUND:
            print(f"{what} not found: VOD does not know this job id", file=sys.stderr)
        elif job.succeeded and job.result_error:
            print(
                f"{what} succeeded, but its result is unreadable: {job.result_error}",
                file=sys.stderr,
            )
        else:
            continue
        wrong = True
    if outcome.running:
        if outcome.timed_out:
            print(f"vod-events {command}: timed out after {timeout:g} s", file=sys.stderr)
        _list_running(command, outcome.running)
    if wrong:
        return EXIT_SERVICE
    return EXIT_TIMEOUT if outcome.timed_out else 0


def _list_running(command: str, running: Sequence[AIJob]) -> None:
    if not running:
        return
    count = f"{len(running)} job{'s' if len(running) > 1 else ''}"
    print(f"vod-events {command}: {count} still running:", file=sys.stderr)
    for job in running:
        print(f"  {job.job_id}  {job.type or '-'}  {job.status}", file=sys.stderr)


def print_finished(outcome: WaitResult) -> None:
    """One JSON line per finished job, in order, on stdout (UTF-8, as `vod-events parse`)."""
    sys.stdout.flush()
    for job in outcome.finished:
        record = job_record(job)
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        try:
            encoded = line.encode("utf-8")
        except UnicodeEncodeError:  # unpaired surrogates: ASCII escapes instead
            encoded = json.dumps(record, separators=(",", ":")).encode("ascii")
        sys.stdout.buffer.write(encoded + b"\n")
    sys.stdout.flush()


def job_record(job: AIJob) -> dict[str, Any]:
    """A finished job as the matching event's fields: ``event_type``, ``status``, ``media_id``,
    ``job_id``, ``error_code``, ``error_message`` and ``result`` as `vod-events parse` prints
    them for an AIVideoTagComplete / AIMediaDNAComplete / AIMediaAuditComplete event; then
    what only ListAIJob tells: ``type``, ``creation_time``, ``complete_time``, and
    ``result_error`` with the ``data`` as sent when the result could not be read."""
    succeeded = job.succeeded
    return {
        "event_type": EVENT_TYPES.get(job.type or ""),
        "status": "success" if succeeded else "fail" if job.failed else job.status,
        "media_id": job.media_id,
        "job_id": job.job_id,
        "error_code": None if succeeded else job.code,
        "error_message": None if succeeded else job.message,
        "result": dataclasses.asdict(job.result) if job.result is not None else None,
        "type": job.type,
        "creation_time": job.creation_time,
        "complete_time": job.complete_time,
        "result_error": job.result_error,
        "data": job.data if job.result_error else None,
    }


class Tracker:
    """The latest state of the wait, and - given a terminal - the progress drawn on it: one
    line per job (id, type, status, time since the wait began, stopped when it finished),
    redrawn in place every second; on a ``TERM=dumb`` terminal, a line per change instead."""

    def __init__(
        self,
        jobs: Mapping[str, str | None],
        terminal: TextIO | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.types = dict(jobs)
        self.state = WaitResult(jobs=tuple(AIJob(job_id=i, status=UNSEEN) for i in jobs))
        self.terminal = terminal
        self.redraw = os.environ.get("TERM", "") != "dumb"
        self.clock = clock
        self.start = clock()
        self.ended: dict[str, float] = {}  # job id -> when it was seen finished
        self.drawn = 0  # lines of the last frame
        self.shown: dict[str, str] = {}  # job id -> the status last written (TERM=dumb)
        self.draw()

    def update(self, state: WaitResult) -> None:
        self.state = state
        now = self.clock() - self.start
        for job in state.jobs:
            if job.type:
                self.types[job.job_id] = job.type
            if (job.finished or job.status == NOT_FOUND) and job.job_id not in self.ended:
                self.ended[job.job_id] = now
        self.draw()

    def sleep(self, seconds: float) -> None:
        """Sleep, redrawing the elapsed times meanwhile."""
        if self.terminal is None or not self.redraw:
            time.sleep(seconds)
            return
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(TICK, left))
            self.draw()

    def draw(self) -> None:
        if self.terminal is None:
            return
        now = self.clock() - self.start
        jobs = self.state.jobs
        id_width = max(len(job.job_id) for job in jobs)
        type_width = max(len(self.types.get(job.job_id) or "-") for job in jobs)
        width = _columns(self.terminal) - 1  # a full line would wrap on some terminals
        lines = {
            job.job_id: (
                f"{job.job_id:<{id_width}}  {self.types.get(job.job_id) or '-':<{type_width}}  "
                f"{job.status:<10}  {_duration(self.ended.get(job.job_id, now))}"
            )[:width]
            for job in jobs
        }
        if self.redraw:
            up = f"\r\x1b[{self.drawn}A" if self.drawn else ""
            frame = "".join(f"\x1b[2K{line}\n" for line in lines.values())
            self.drawn = len(lines)
        else:
            changed = [job for job in jobs if self.shown.get(job.job_id) != job.status]
            frame, up = "".join(lines[job.job_id] + "\n" for job in changed), ""
            self.shown.update((job.job_id, job.status) for job in changed)
        self.terminal.write(up + frame)
        self.terminal.flush()


def _columns(stream: TextIO) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns or 80
    except (OSError, ValueError):
        return 80


def _duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``1h02m03s``."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def _credentials(args: argparse.Namespace) -> Credentials:
    flags = Credentials(
        args.access_key_id or "", args.access_key_secret or "", args.security_token or ""
    )
    credentials = resolve(args.credentials, flags=flags)
    if not credentials.default_chain and not credentials.has_access_key:
        chain = f"--credentials {DEFAULT_CHAIN}"
        raise AIJobInputError(f"no credentials: {how_to_supply(flags=True, chain=chain)}")
    return credentials
