"""What `submit-ai-job` and `ai-jobs` share: where VOD is, which credentials, how errors print."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from vod_events.aijobs import (
    DEFAULT_REGION,
    AIJobInputError,
    Credentials,
    VodApiError,
)

EXIT_SERVICE = 1
EXIT_USAGE = 2


def add_api_arguments(parser: argparse.ArgumentParser) -> None:
    """The region, endpoint and credential options of both commands."""
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


def location(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments naming where VOD is and who we are."""
    return {"region": args.region, "endpoint": args.endpoint, "credentials": _credentials(args)}


def call_and_print(command: str, call: Callable[[], Sequence[Any]]) -> int:
    """Run an API call and print its result as JSON; the exit code."""
    try:
        output = call()
    except AIJobInputError as exc:
        print(f"vod-events {command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except VodApiError as exc:
        print(f"vod-events {command}: {exc.one_line()}", file=sys.stderr)
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
