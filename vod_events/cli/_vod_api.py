"""What `submit-ai-job` and `ai-jobs` share: where VOD is, which credentials, how errors print."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from vod_events.aijobs import DEFAULT_REGION, AIJobInputError, VodApiError
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


def location(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments naming where VOD is and who we are.

    Raises AIJobInputError (exit 2, nothing sent) when no AccessKey is found.
    """
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
    flags = Credentials(
        args.access_key_id or "", args.access_key_secret or "", args.security_token or ""
    )
    credentials = resolve(args.credentials, flags=flags)
    if not credentials.default_chain and not credentials.has_access_key:
        chain = f"--credentials {DEFAULT_CHAIN}"
        raise AIJobInputError(f"no credentials: {how_to_supply(flags=True, chain=chain)}")
    return credentials
