"""`vod-events submit-ai-job`: start VOD AI jobs (SubmitAIJob) on one media.

    vod-events submit-ai-job --media-id ID --types AIVideoTag,AIMediaDNA [--config JSON]
        [--user-data JSON] [--region cn-shanghai] [--endpoint HOST:PORT]

Prints the jobs created as JSON. Exit codes: 0 done; 1 the service refused the request or
could not be reached (one line on stderr with the error code and request id); 2 invalid
arguments (nothing was sent).
"""

from __future__ import annotations

import argparse

from vod_events.aijobs import TYPE_REGIONS, submit_ai_job
from vod_events.cli._vod_api import add_api_arguments, call_and_print, location


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


def run(args: argparse.Namespace) -> int:
    return call_and_print(
        "submit-ai-job",
        lambda: submit_ai_job(
            args.media_id,
            args.types,
            config=args.config,
            user_data=args.user_data,
            **location(args),
        ),
    )
