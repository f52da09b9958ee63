"""`vod-events submit-ai-job`: start VOD AI jobs (SubmitAIJob) on one media.

    vod-events submit-ai-job --media-id ID --types AIVideoTag,AIMediaDNA [--config JSON]
        [--user-data JSON] [--region cn-shanghai] [--endpoint HOST:PORT]
        [--wait [--timeout SECONDS] [--poll-interval SECONDS]]

Prints the jobs created as JSON. Exit codes: 0 done; 1 the service refused the request or
could not be reached (one line on stderr with the error code and request id); 2 invalid
arguments (nothing was sent).

With --wait, then polls ListAIJob until the jobs have finished and prints each as one JSON
line instead (see `vod_events.cli._vod_api.wait_and_print`). Exit codes: 0 every job
succeeded; 1 one failed (its code and message on stderr) or the service refused; 124 the
time ran out (the jobs still running listed on stderr); 2 invalid arguments.
"""

from __future__ import annotations

import argparse
from typing import Any

from vod_events.aijobs import TYPE_REGIONS, SubmittedJob, submit_ai_job
from vod_events.cli._vod_api import (
    add_api_arguments,
    add_wait_arguments,
    call_and_print,
    location,
    wait_and_print,
)

COMMAND = "submit-ai-job"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--media-id", required=True, help="the video to analyse")
    parser.add_argument(
        "--types",
        required=True,
        help=f"comma-separated job types: {', '.join(TYPE_REGIONS)}",
    )
    parser.add_argument(
        "--config", help='job configuration, JSON, e.g. {"AIVideoTag":{"AnalyseTypes":"ASR"}}'
    )
    parser.add_argument(
        "--user-data", help='JSON; its "Extend" (<= 512 bytes) comes back in the events'
    )
    add_api_arguments(parser)
    add_wait_arguments(parser)


def run(args: argparse.Namespace) -> int:
    def submit(where: dict[str, Any]) -> list[SubmittedJob]:
        return submit_ai_job(
            args.media_id, args.types, config=args.config, user_data=args.user_data, **where
        )

    if args.wait:
        return wait_and_print(
            COMMAND, args, lambda where: {job.job_id: job.type for job in submit(where)}
        )
    return call_and_print(COMMAND, lambda: submit(location(args)), args)
