"""Request authentication: MNS signature V2, the Date window and the protocol headers.

    StringToSign = VERB "\\n" Content-MD5 "\\n" Content-Type "\\n" Date "\\n"
                   + every x-mns-* header, lower-case, sorted, as "name:value\\n"
                   + the raw request target (path and query, undecoded)
    Authorization: MNS <AccessKeyId>:base64(HMAC-SHA1(secret, StringToSign))

Without credentials the server checks only that each request is well formed, so that any
client can talk to it; with them it verifies the signature like the service.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime

from vod_events.mns_server.errors import MNSError

API_VERSION = "2015-06-06"
MAX_CLOCK_SKEW_SECONDS = 15 * 60
_AUTHORIZATION = re.compile(r"MNS ([^:\s]+):(\S+)")


@dataclass(frozen=True)
class Credentials:
    """The one access key the server accepts. The secret never appears in a repr."""

    access_key_id: str
    access_key_secret: str = field(repr=False)


def string_to_sign(method: str, target: str, headers: Mapping[str, str]) -> str:
    """The V2 string to sign. `headers` maps lower-case names to values."""
    mns_headers = "".join(
        f"{name}:{headers[name]}\n" for name in sorted(headers) if name.startswith("x-mns-")
    )
    return (
        f"{method}\n{headers.get('content-md5', '')}\n{headers.get('content-type', '')}\n"
        f"{headers.get('date', '')}\n{mns_headers}{target}"
    )


def sign(secret: str, text: str) -> str:
    """base64(HMAC-SHA1(secret, text)): the signature part of the Authorization header."""
    digest = hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def check_request(
    method: str,
    target: str,
    headers: Mapping[str, str],
    *,
    body: bytes,
    credentials: Credentials | None,
    now: float,
) -> None:
    """Raise the service's error for the first thing wrong with the request, if any.

    `headers` maps lower-case names to values; `now` is seconds since the epoch.
    """
    version = headers.get("x-mns-version")
    if version is None:
        raise MNSError("MissingVersionHeader")
    if version != API_VERSION:
        raise MNSError("InvalidVersionHeader", f"The x-mns-version should be {API_VERSION}.")
    authorization = headers.get("authorization")
    if authorization is None:
        raise MNSError("MissingAuthorizationHeader")
    parts = _AUTHORIZATION.fullmatch(authorization)
    if parts is None:
        raise MNSError("InvalidAuthorizationHeader")
    _check_date(headers.get("date"), now)
    _check_content_md5(headers.get("content-md5"), body)
    if credentials is None:
        return
    if not hmac.compare_digest(parts[1], credentials.access_key_id):
        raise MNSError("InvalidAccessKeyId")
    expected = sign(credentials.access_key_secret, string_to_sign(method, target, headers))
    if not hmac.compare_digest(parts[2], expected):
        raise MNSError("SignatureDoesNotMatch")


def _check_date(date: str | None, now: float) -> None:
    if date is None:
        raise MNSError("MissingDateHeader")
    try:
        parsed = parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        raise MNSError("InvalidDateHeader") from None
    if parsed.tzinfo is None:  # "-0000": UTC by RFC 5322, naive to the parser
        parsed = parsed.replace(tzinfo=UTC)
    sent = parsed.timestamp()
    if abs(now - sent) > MAX_CLOCK_SKEW_SECONDS:
        raise MNSError("TimeExpired")


def _check_content_md5(content_md5: str | None, body: bytes) -> None:
    """Accept the SDK's quirky base64(hex digest) as well as the standard base64(digest)."""
    if content_md5 is None:
        return
    digest = hashlib.md5(body)
    accepted = (
        base64.b64encode(digest.hexdigest().encode("ascii")).decode("ascii"),
        base64.b64encode(digest.digest()).decode("ascii"),
    )
    if content_md5.strip() not in accepted:
        raise MNSError("InvalidDegist")
