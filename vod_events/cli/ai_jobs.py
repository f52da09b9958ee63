"""`vod-events ai-jobs JOB_ID...`: each job's status and decoded result (ListAIJob).

Prints JSON. Exit codes as `submit-ai-job`: 0 done; 1 the service refused or could not be
reached; 2 invalid arguments.

With --wait [--timeout SECONDS], polls until every job has finished and prints each as one
JSON line; exit codes as `submit-ai-job --wait` (0, 1 a job failed or an id is unknown, 124
timed out, 2). An id VOD does not know can never finish: it stops the wait at once.
"""

from __future__ import annotations

import argparse

from vod_events.aijobs import job_ids_of, list_ai_jobs
from vod_events.cli._vod_api import (
    add_api_arguments,
    add_wait_arguments,
    call_and_print,
    location,
    wait_and_print,
)

COMMAND = "ai-jobs"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_ids", nargs="+", metavar="JOB_ID", help="AI job ids")
    add_api_arguments(parser)
    add_wait_arguments(parser)


def run(args: argparse.Namespace) -> int:
    if args.wait:
        return wait_and_print(COMMAND, args, lambda where: dict.fromkeys(job_ids_of(args.job_ids)))
    return call_and_print(COMMAND, lambda: list_ai_jobs(args.job_ids, **location(args)), args)
