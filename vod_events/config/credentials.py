"""Which credentials call Alibaba Cloud: one resolver for the daemon, `doctor` and `dlq` (MNS,
through the config), `send` (MNS, flags) and `submit-ai-job` / `ai-jobs` (VOD, flags).

Precedence, highest first, field by field (an id from a flag combines with a secret from the
environment):
1. command-line flags: `--access-key-id`, `--access-key-secret`, `--security-token`;
2. the config file's `[mns] access_key_id` / `access_key_secret` / `security_token` (each
   overridable as `VOD_EVENTS_MNS_<KEY>`, like every key: see `schema`);
3. the variables `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET`,
   `ALIBABA_CLOUD_SECURITY_TOKEN` (for the daemon also systemd credentials: see `secrets`);
4. when chosen (`[mns] credentials = "default"`, `--credentials default`): the Alibaba Cloud
   default credential chain, in place of 1-3. Its first link reads the same variables; then a
   profile file, OIDC (RRSA) and the ECS RAM role; it refreshes temporary keys before expiry.

A config's AccessKey fields are resolved once, when it is loaded (`resolve` with the file's
values and the environment given to `load`), whatever the mode: so every secret it could use
is known to masking. `Config.credentials` is then the value to connect with.

The result is an `aijobs.Credentials` value, whose repr shows no secret; nothing here formats
a secret into a message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from vod_events.aijobs import Credentials
from vod_events.errors import ConfigError

__all__ = [
    "DEFAULT_CHAIN",
    "ENV_ACCESS_KEY_ID",
    "ENV_ACCESS_KEY_SECRET",
    "ENV_SECURITY_TOKEN",
    "MODES",
    "STATIC",
    "Credentials",
    "default_chain",
    "how_to_supply",
    "resolve",
]

ENV_ACCESS_KEY_ID = "ALIBABA_CLOUD_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"  # noqa: S105 - a variable name
ENV_SECURITY_TOKEN = "ALIBABA_CLOUD_SECURITY_TOKEN"  # noqa: S105 - a variable name

STATIC = "static"  # an AccessKey from flags, config or environment
DEFAULT_CHAIN = "default"  # the Alibaba Cloud default credential chain
MODES = (STATIC, DEFAULT_CHAIN)


def resolve(
    mode: str = STATIC,
    *,
    flags: Credentials | None = None,
    config: Credentials | None = None,
    environ: Mapping[str, str] | None = None,
) -> Credentials:
    """The credentials to call Alibaba Cloud with, by the precedence in the module docstring.

    mode: `STATIC` or `DEFAULT_CHAIN`; the chain ignores every other argument.
    flags / config: the AccessKey given on the command line / in the config; None (or an
        empty field) falls through to the next source.
    environ: the variables to read; default `os.environ`. Pass `{}` for values that already
        include the environment (a loaded config).

    The result may lack an id or a secret: the caller says what is missing (`how_to_supply`),
    as only it knows its exit codes and options. Raises ValueError for an unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"credentials mode must be one of {', '.join(MODES)}, got {mode!r}")
    if mode == DEFAULT_CHAIN:
        return Credentials(default_chain=True)
    env = os.environ if environ is None else environ
    layers = [
        layer
        for layer in (
            flags,
            config,
            Credentials(
                access_key_id=env.get(ENV_ACCESS_KEY_ID, ""),
                access_key_secret=env.get(ENV_ACCESS_KEY_SECRET, ""),
                security_token=env.get(ENV_SECURITY_TOKEN, ""),
            ),
        )
        if layer is not None
    ]
    return Credentials(
        access_key_id=next((c.access_key_id for c in layers if c.access_key_id), ""),
        access_key_secret=next((c.access_key_secret for c in layers if c.access_key_secret), ""),
        security_token=next((c.security_token for c in layers if c.security_token), ""),
    )


def how_to_supply(*, flags: bool = False, config: bool = False, chain: str = "") -> str:
    """What to do when `resolve` found no AccessKey: the places the caller reads, the
    variables first (flags are visible to other users in the process list, and a config
    file should not hold secrets), and how to choose the default chain when `chain` names
    the caller's option for it."""
    ways = [f"set {ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET}"]
    if flags:
        ways.append("pass --access-key-id and --access-key-secret")
    if config:
        ways.append("set [mns] access_key_id and access_key_secret")
    if chain:
        ways.append(f"use the default credential chain ({chain})")
    return ", or ".join(ways)


def default_chain(path: str | None = None) -> Any:
    """A client of the Alibaba Cloud default credential chain (alibabacloud-credentials).

    It finds nothing until asked (`get_credential()`), then caches and refreshes before
    expiry: ask it for every request. Raises ConfigError, naming `path` and the
    `mns.credentials` key, if the package is not installed.
    """
    try:
        from alibabacloud_credentials.client import Client as CredentialClient
    except ImportError:
        raise ConfigError(
            "credentials = 'default' needs the alibabacloud-credentials package "
            "(pip install alibabacloud-credentials)",
            path=path,
            key="mns.credentials",
        ) from None
    return CredentialClient()
