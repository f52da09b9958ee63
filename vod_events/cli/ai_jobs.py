"""`vod-events ai-jobs JOB_ID...`: each job's status and decoded result (ListAIJob).

Prints JSON. Exit codes as `submit-ai-job`: 0 done; 1 the service refused or could not be
reached; 2 invalid arguments.
"""

from __future__ import annotations

import argparse

from vod_events.aijobs import list_ai_jobs
from vod_events.cli._vod_api import add_api_arguments, call_and_print, location


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_ids", nargs="+", metavar="JOB_ID", help="AI job ids")
    add_api_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return call_and_print("ai-jobs", lambda: list_ai_jobs(args.job_ids, **location(args)))
