"""Configuration: the schema (`schema`), where secrets come from (`secrets`), which
credentials call Alibaba Cloud (`credentials`), the example file (`example`) and its TOML
writer (`toml_writer`). `load` is the one entry point."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping

from vod_events.config.schema import (
    ENV_PREFIX,
    SECRET_MASK,
    SECTIONS,
    Config,
    ConsumerSection,
    HandlerSection,
    Override,
    from_dict,
    key,
    masked,
    parse_listen,
    require_handlers,
    secret_values,
)
from vod_events.config.secrets import with_credentials
from vod_events.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "SECRET_MASK",
    "SECTIONS",
    "Config",
    "ConsumerSection",
    "HandlerSection",
    "Override",
    "from_dict",
    "key",
    "load",
    "masked",
    "parse_listen",
    "require_handlers",
    "secret_values",
]


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, merge and validate a config file. Raises ConfigError.

    Without `environ`: the process environment plus the variables systemd credentials
    supply (`secrets.with_credentials`)."""
    where = str(path)
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise ConfigError("file not found", path=where) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", path=where) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise ConfigError(
            f"not UTF-8 text (bad byte 0x{raw[exc.start]:02x} on line {line}); "
            "TOML files are UTF-8",
            path=where,
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=where) from None
    if environ is None:
        merged = with_credentials(os.environ)
        supplied = set(merged) - set(os.environ)
        return from_dict(data, where, merged, from_credentials=supplied)
    return from_dict(data, where, environ)
