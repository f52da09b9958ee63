"""systemd credentials (`LoadCredential=`, `LoadCredentialEncrypted=`) as config variables.

systemd puts each credential of a service in a file under `$CREDENTIALS_DIRECTORY` that only
the service can read. A credential named like one of our variables — `VOD_EVENTS_<SECTION>_<KEY>`
or `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` / `ALIBABA_CLOUD_SECURITY_TOKEN` — supplies that
variable, unless the environment sets it already:

    LoadCredential=ALIBABA_CLOUD_ACCESS_KEY_SECRET:/etc/vod-events/access-key-secret

so a secret sits neither in the config file nor in the process environment.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

NAME_PREFIXES = ("VOD_EVENTS_", "ALIBABA_CLOUD_")


def with_credentials(environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` plus the variables supplied as systemd credentials (environment wins)."""
    merged = dict(environ)
    directory = environ.get("CREDENTIALS_DIRECTORY", "")
    if not directory or not Path(directory).is_dir():
        return merged
    for path in sorted(Path(directory).iterdir()):
        if path.name.startswith(NAME_PREFIXES) and path.name not in merged and path.is_file():
            # `echo secret > file` adds a newline that is not part of the secret.
            merged[path.name] = path.read_text(encoding="utf-8").rstrip("\r\n")
    return merged
