"""`vod-events submit-ai-job` and `vod-events ai-jobs`: the AI job API on the command line.

    vod-events submit-ai-job --media-id ID --types AIVideoTag,AIMediaDNA [--config JSON]
        [--user-data JSON] [--region cn-shanghai] [--endpoint HOST:PORT]
    vod-events ai-jobs JOB_ID...

Both print JSON on stdout: the jobs created, or each job's status and decoded result.
Exit codes: 0 done; 1 the service refused the request or could not be reached (one line on
stderr with the error code and request id); 2 invalid arguments (nothing was sent).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from vod_events.aijobs import (
    DEFAULT_REGION,
    TYPE_REGIONS,
    AIJobInputError,
    Credentials,
    VodApiError,
    list_ai_jobs,
    submit_ai_job,
)

EXIT_SERVICE = 1
EXIT_USAGE = 2


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of whichever of the two commands `parser` is for."""
    if parser.get_default("command") == "ai-jobs":
        parser.add_argument("job_ids", nargs="+", metavar="JOB_ID", help="AI job ids")
    else:
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
    parser.add_argument("--region", default=DEFAULT_REGION, help="VOD region (%(default)s)")
    parser.add_argument(
        "--endpoint", help="HOST:PORT (or http://HOST:PORT) instead of the region's endpoint"
    )
    parser.add_argument(
        "--credentials",
        choices=("static", "default"),
        default="static",
        help="static: the AccessKey from the flags below or ALIBABA_CLOUD_ACCESS_KEY_ID / "
        "_SECRET / ALIBABA_CLOUD_SECURITY_TOKEN; default: the Alibaba Cloud credential chain",
    )
    parser.add_argument("--access-key-id", help="else ALIBABA_CLOUD_ACCESS_KEY_ID")
    parser.add_argument(
        "--access-key-secret",
        help="else ALIBABA_CLOUD_ACCESS_KEY_SECRET (prefer the variable: flags are visible "
        "to other users in the process list)",
    )
    parser.add_argument("--security-token", help="else ALIBABA_CLOUD_SECURITY_TOKEN")


def run(args: argparse.Namespace) -> int:
    """Run `submit-ai-job` or `ai-jobs` (``args.command``) and print its JSON result."""
    location: dict[str, Any] = {
        "region": args.region,
        "endpoint": args.endpoint,
        "credentials": _credentials(args),
    }
    try:
        if args.command == "ai-jobs":
            output: Any = list_ai_jobs(args.job_ids, **location)
        else:
            output = submit_ai_job(
                args.media_id,
                args.types,
                config=args.config,
                user_data=args.user_data,
                **location,
            )
    except AIJobInputError as exc:
        print(f"vod-events {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VodApiError as exc:
        print(f"vod-events {args.command}: {exc.one_line()}", file=sys.stderr)
        return EXIT_SERVICE
    print(json.dumps([dataclasses.asdict(item) for item in output], ensure_ascii=False, indent=2))
    return 0


def _credentials(args: argparse.Namespace) -> Credentials:
    if args.credentials == "default":
        return Credentials(default_chain=True)
    env = Credentials.from_env()
    return Credentials(
        access_key_id=args.access_key_id or env.access_key_id,
        access_key_secret=args.access_key_secret or env.access_key_secret,
        security_token=args.security_token or env.security_token,
    )
