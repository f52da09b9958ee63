"""Secrets outside the config file, and a warning when the file itself holds them.

1. systemd credentials.
systemd puts each credential of a service in a file under `$CREDENTIALS_DIRECTORY` that only
the service can read. A credential named like one of our variables — `VOD_EVENTS_<SECTION>_<KEY>`
or `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` / `ALIBABA_CLOUD_SECURITY_TOKEN` — supplies that
variable, unless the environment sets it already:

    LoadCredential=ALIBABA_CLOUD_ACCESS_KEY_SECRET:/etc/vod-events/access-key-secret

so a secret sits neither in the config file nor in the process environment.

2. Exposure: warn when a config file holds a secret that other users can read.

A secret (AccessKey, Redis URL password, http handler key) belongs in a file only its owner
can read, or outside the file: environment variables from a root-only `EnvironmentFile=`,
systemd credentials, or a Kubernetes Secret.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vod_events.config.schema import SECTIONS, HandlerSection
from vod_events.errors import ConfigError

NAME_PREFIXES = ("VOD_EVENTS_", "ALIBABA_CLOUD_")


def with_credentials(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` plus the variables supplied as systemd credentials (environment wins).

    Raises ConfigError, naming the credential (never its content), for one that cannot be
    read or is not UTF-8 text."""
    merged = dict(environ)
    directory = environ.get("CREDENTIALS_DIRECTORY", "")
    if not directory or not Path(directory).is_dir():
        return merged
    for path in sorted(Path(directory).iterdir()):
        if path.name.startswith(NAME_PREFIXES) and path.name not in merged and path.is_file():
            try:
                text = path.read_bytes().decode("utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"cannot read {path}: {exc.strerror or exc}",
                    path=f"systemd credential {path.name}",
                ) from None
            except UnicodeDecodeError:
                raise ConfigError(
                    f"{path} is not UTF-8 text", path=f"systemd credential {path.name}"
                ) from None
            # `echo secret > file` adds a newline that is not part of the secret.
            merged[path.name] = text.rstrip("\r\n")
    return merged


def secret_keys_in_file(path: str | os.PathLike[str]) -> list[str]:
    """The secret keys that have a non-empty value in the file itself (not from the env)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []  # loading the config reports these properly
    found = []
    for name, cls in SECTIONS.items():
        found += _secret_keys(cls, name, data.get(name))
    handlers = data.get("handlers")
    if isinstance(handlers, list):
        for i, raw in enumerate(handlers):
            found += _secret_keys(HandlerSection, f"handlers[{i}]", raw)
    return found


def _secret_keys(cls: type[Any], label: str, raw: object) -> list[str]:
    if not isinstance(raw, dict):
        return []
    return [
        f"{label}.{f.name}"
        for f in dataclasses.fields(cls)
        if f.metadata.get("secret") and raw.get(f.name)
    ]


def exposure_warning(path: str | os.PathLike[str]) -> str | None:
    """A warning with the fix if `path` holds secrets and its group or others can read it."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None
    if not mode & (stat.S_IRGRP | stat.S_IROTH):
        return None
    keys = secret_keys_in_file(path)
    if not keys:
        return None
    readers = " and ".join(
        who
        for who, bit in (("its group", stat.S_IRGRP), ("other users", stat.S_IROTH))
        if mode & bit
    )
    return (
        f"{path} holds secrets ({', '.join(keys)}) and is readable by {readers} "
        f"(mode {mode:04o}); run `chmod 600 {path}` or move the secrets to environment "
        "variables (VOD_EVENTS_<SECTION>_<KEY>, ALIBABA_CLOUD_ACCESS_KEY_*)"
    )
