"""Identifiers in the shapes the service uses: message ids, receipt handles, request ids.

Receipt handles use only URL-safe characters because the SDK puts them into query strings
without encoding them.
"""

from __future__ import annotations

import itertools
import re
import secrets

RECEIPT_HANDLE = re.compile(r"1-[A-Za-z0-9_-]{24}")


class IdSource:
    """Makes message ids unique to one server and receipt handles nobody can guess."""

    def __init__(self) -> None:
        # The service's ids look like "6CC4D900CA59A2CD-1-15180534A8F-200000015":
        # node, version, enqueue time in hex ms, sequence number.
        self._node = secrets.token_hex(8).upper()
        self._sequence = itertools.count(200000001)

    def message_id(self, now_ms: int) -> str:
        """A new message id, unique for the life of this server."""
        return f"{self._node}-1-{now_ms:X}-{next(self._sequence)}"

    @staticmethod
    def receipt_handle() -> str:
        """A new receipt handle; `is_well_formed_handle` accepts exactly these."""
        return "1-" + secrets.token_urlsafe(18)


def is_well_formed_handle(handle: str) -> bool:
    """True if `handle` has the shape of one of ours (else the service's ReceiptHandleError)."""
    return RECEIPT_HANDLE.fullmatch(handle) is not None


def request_id() -> str:
    """An x-mns-request-id: 24 upper-case hex digits."""
    return secrets.token_hex(12).upper()
