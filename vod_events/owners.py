"""Who holds an idempotency claim, and whether that process is still alive.

A claim's owner token names the process that took it: host, PID namespace, PID and the
process's start time, then a per-store counter. Another process reading the token can tell
a dead owner from a live one without waiting for the claim's lease to run out — but only
where that can be known for sure:

- same host and same PID namespace: the PID no longer exists, or now belongs to a process
  that started at another time (the PID was reused) → the owner is dead;
- anything else (another host, another container's PID namespace, a token in an unknown
  format, a platform without /proc) → unknown, so the owner is treated as alive and the
  lease (`claim_ttl`) decides.

A wrong "dead" would let two processes run one handler at once, so every doubt says "alive".
"""

from __future__ import annotations

import itertools
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path

SEPARATOR = "|"


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid").removeprefix("pid:")
    except OSError:
        return ""


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or
    None when there is no such process. Raises OSError when it cannot be known."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    return stat[stat.rindex(")") + 2 :].split()[19]


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """This process, as written into owner tokens."""

    host: str
    pid_namespace: str
    pid: int
    started: str

    @classmethod
    def current(cls) -> ProcessIdentity:
        try:
            started = _start_time(os.getpid()) or ""
        except (OSError, IndexError, ValueError):
            started = ""
        host = socket.gethostname().replace(SEPARATOR, "_")
        return cls(host, _pid_namespace(), os.getpid(), started)

    @property
    def prefix(self) -> str:
        return SEPARATOR.join((self.host, self.pid_namespace, str(self.pid), self.started))

    def owner_is_dead(self, token: str) -> bool:
        """True only when `token`'s process is certainly gone (see the module docstring)."""
        parts = token.split(SEPARATOR)
        if len(parts) != 5 or not self.pid_namespace or not self.started:
            return False
        host, namespace, pid_text, started, _ = parts
        if host != self.host or namespace != self.pid_namespace or not pid_text.isdigit():
            return False
        if int(pid_text) == self.pid:
            return started != self.started  # a previous process that had our PID
        try:
            now_started = _start_time(int(pid_text))
        except (OSError, IndexError, ValueError):
            return False
        return now_started is None or now_started != started


class OwnerTokens:
    """Makes owner tokens for one store: this process's identity, a random part (two stores
    of one process hold different claims) and a counter. No system call per token: a uuid4()
    per claim read os.urandom, which gives up the GIL - under load, a thread switch per claim."""

    def __init__(self, identity: ProcessIdentity | None = None) -> None:
        self.identity = identity or ProcessIdentity.current()
        self._prefix = f"{self.identity.prefix}{SEPARATOR}{uuid.uuid4().hex[:12]}-"
        self._count = itertools.count()

    def new(self) -> str:
        return f"{self._prefix}{next(self._count)}"  # next() on a count is atomic

    def owner_is_dead(self, token: str) -> bool:
        return self.identity.owner_is_dead(token)
