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
    from_dict,
    key,
    masked,
    parse_listen,
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
    "from_dict",
    "key",
    "load",
    "masked",
    "parse_listen",
    "secret_values",
]


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read, merge and validate a config file. Raises ConfigError."""
    where = str(path)
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError("file not found", path=where) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=where) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=where) from None
    # Without an explicit environ: the process environment plus systemd credentials.
    return from_dict(data, where, with_credentials(os.environ) if environ is None else environ)
