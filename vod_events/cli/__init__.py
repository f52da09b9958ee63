"""The `vod-events` command line: one table of subcommands, each living in its own module.

A subcommand module exposes two functions:

    def configure(parser: argparse.ArgumentParser) -> None   # add its arguments
    def run(args: argparse.Namespace) -> int                 # do the work, return the exit code

Modules are imported only when their command runs, so `vod-events parse` does not pay for the
MNS server or the consumer.

Standard output closed by its reader (`vod-events parse *.json | head`): the command stops
quietly, with no traceback, and exits 141 (128 + SIGPIPE), what a shell reports for any Unix
tool the closed pipe stopped (`cat`, `grep`), so `set -o pipefail` treats it as they are.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence
from typing import Protocol, cast

from vod_events.errors import ConfigError

EXIT_CONFIG = 2  # any command: the configuration is invalid, and nothing was done
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # stdout's reader went away (`| head`)


def config_error(exc: ConfigError) -> int:
    """Report an invalid configuration the way every command does; return the exit code."""
    print(f"vod-events: config error: {exc}", file=sys.stderr)
    return EXIT_CONFIG


# name -> (module, one-line help). Order is the order shown by `vod-events --help`.
COMMANDS: dict[str, tuple[str, str]] = {
    "consume": (
        "vod_events.cli.consume",
        "run the daemon: poll MNS, handle events, delete on success",
    ),
    "demo": (
        "vod_events.cli.demo",
        "run the daemon against an embedded local MNS server with samples",
    ),
    "parse": ("vod_events.cli.parse", "decode event payloads and print them as JSON lines"),
    "mns-server": ("vod_events.mns_server.cli", "run the local wire-compatible MNS server"),
    "send": ("vod_events.cli.send", "send files as messages to an MNS queue"),
    "check-config": ("vod_events.cli.check_config", "validate a config file and print it, masked"),
    "doctor": ("vod_events.cli.doctor", "check connectivity, queue attributes and handlers"),
    "dlq": ("vod_events.cli.dlq", "list or replay dead letters"),
    "dedupe": (
        "vod_events.cli.dedupe",
        "create the PostgreSQL idempotency tables ahead of time (dedupe migrate)",
    ),
    "submit-ai-job": ("vod_events.cli.submit_ai_job", "submit VOD AI jobs (SubmitAIJob)"),
    "ai-jobs": ("vod_events.cli.ai_jobs", "show AI job status and results (ListAIJob)"),
    "serve-callbacks": ("vod_events.cli.serve_callbacks", "receive VOD HTTP callbacks"),
}


class CommandModule(Protocol):
    def configure(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _usage(commands: dict[str, tuple[str, str]]) -> str:
    width = max(len(n) for n in commands) if commands else 0
    lines = ["usage: vod-events COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_text}" for name, (_, help_text) in commands.items()]
    lines += ["", "Run `vod-events COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    commands = COMMANDS
    if not args or args[0] in ("-h", "--help"):
        print(_usage(commands))
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in commands:
        print(f"vod-events: unknown command {name!r}\n\n{_usage(commands)}", file=sys.stderr)
        return 2
    module_name, help_text = commands[name]
    module = cast(CommandModule, importlib.import_module(module_name))
    parser = argparse.ArgumentParser(prog=f"vod-events {name}", description=help_text)
    module.configure(parser)
    parsed = parser.parse_args(rest)
    try:
        code = module.run(parsed)
        sys.stdout.flush()  # a pipe's last block: its error is ours to handle, not exit's
    except BrokenPipeError:
        return stdout_closed()
    return code


def stdout_closed() -> int:
    """Stop writing to a standard output whose reader went away; return EXIT_BROKEN_PIPE.

    What is still buffered can never be written: standard output is pointed at /dev/null,
    so that flushing it at exit raises nothing (and prints no "Exception ignored")."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by an object without a file
        return EXIT_BROKEN_PIPE
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)
    return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())
