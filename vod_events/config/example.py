"""Generate `config.example.toml` from the config schema, so the reference cannot drift.

Every key of every section is written with its meaning, what is allowed, its environment
variable and its default, as a commented-out line: the example loads as it is, and
uncommenting a line changes nothing until its value is edited. A test compares the
committed file with this output. Regenerate it with:

    python -m vod_events.config.example > config.example.toml
"""

from __future__ import annotations

import dataclasses
import sys
import textwrap
from typing import Any

from vod_events.config import ENV_PREFIX, SECTIONS, HandlerSection, toml_writer

WIDTH = 99  # keeps every line of the example within 100 columns

HEADER = """\
# vod-events configuration: every key, its default and its meaning.
# Generated from vod_events/config/schema.py (python -m vod_events.config.example): do not edit.
#
# Where a value comes from, highest precedence first:
#   1. the environment variable VOD_EVENTS_<SECTION>_<KEY>, e.g. VOD_EVENTS_CONSUMER_WORKERS=32
#      (lists: comma-separated; the i-th [[handlers]] table, from 0: VOD_EVENTS_HANDLERS_<i>_<KEY>),
#      or a systemd credential (LoadCredential=) of that name;
#   2. this file (vod-events consume --config FILE);
#   3. for the AccessKey only: ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET,
#      ALIBABA_CLOUD_SECURITY_TOKEN;
#   4. the defaults shown below.
# Check a file, and see the effective values with secrets masked:
#   vod-events check-config --config FILE
# Keep secrets out of this file (environment, systemd credentials, a Kubernetes Secret), or
# make it readable by its owner only (chmod 600): vod-events warns otherwise.
"""

SECTION_DOCS = {
    "mns": "The MNS queue VOD writes events to, and the credentials to read it.",
    "consumer": "How the queue is consumed: threads, long polling, shutdown.",
    "retry": "Retries of a failing handler: in process first, then by redelivery.",
    "dedupe": "Idempotency: a handler that succeeded never runs again for a redelivered event.",
    "dead_letter": "Where messages that can never succeed go, with their body and the reason.",
    "state": "Where the daemon keeps its files (dedupe database, dead letters).",
    "log": "Logging (structlog): JSON lines for journald and containers, or console output.",
    "ops": "The ops endpoint: /metrics (Prometheus), /healthz and /readyz.",
    "http_callback": "Receiving VOD HTTP callbacks instead of (or besides) the MNS queue.",
    "tracing": "Tracing: an OpenTelemetry span per delivery, a child span per handler call.",
    "handlers": (
        "Handlers: one [[handlers]] table each; several may match an event and all must\n"
        "succeed. Either `call` (your function) or `type` (built-in: jsonl, log, http)."
    ),
}

# Keys written active (uncommented) with a value other than the default, so the example runs:
# against the local MNS server (`vod-events mns-server`), logging every event.
ACTIVE_VALUES: dict[str, Any] = {
    "mns.endpoint": "http://127.0.0.1:9876",
    "handlers.type": "log",
}


def example_toml() -> str:
    """The text of config.example.toml."""
    parts = [HEADER]
    for name, cls in SECTIONS.items():
        parts.append(_section(f"[{name}]", name, cls(), env_section=name.upper()))
    parts.append(_section("[[handlers]]", "handlers", HandlerSection(), env_section="HANDLERS_<i>"))
    return "\n".join(parts)


def _section(header: str, name: str, defaults: Any, *, env_section: str) -> str:
    lines = [f"# {line}".rstrip() for line in SECTION_DOCS.get(name, "").splitlines()]
    lines.append(header)
    for field in dataclasses.fields(defaults):
        lines += textwrap.wrap(
            field.metadata["doc"],
            WIDTH,
            initial_indent="# ",
            subsequent_indent="# ",
            break_on_hyphens=False,  # never `vod-` / `events` across two lines
        )
        details = _allowed(field)
        details.append(f"env: {ENV_PREFIX}{env_section}_{field.name.upper()}")
        if field.metadata.get("secret"):
            details.append("secret: masked in output, never logged")
        if details:
            lines += textwrap.wrap(
                f"({'; '.join(details)})", WIDTH, initial_indent="#   ", subsequent_indent="#    "
            )
        default = getattr(defaults, field.name)
        assignment = f"{toml_writer.key(field.name)} = "
        active = ACTIVE_VALUES.get(f"{name}.{field.name}")
        if active is not None:
            lines.append(f"# default: {toml_writer.value(default)}")
            lines.append(assignment + toml_writer.value(active))
        else:
            lines.append("# " + assignment + toml_writer.value(default))
    return "\n".join(lines) + "\n"


def _allowed(field: dataclasses.Field[Any]) -> list[str]:
    meta = field.metadata
    low, high, choices = meta.get("low"), meta.get("high"), meta.get("choices", ())
    if field.type == "bool":
        return ["true or false"]
    if choices:
        return ["one of " + ", ".join(toml_writer.value(c) for c in choices)]
    if low is not None or high is not None:
        kind = {"int": "an integer", "int | str": '"auto" or an integer'}.get(
            str(field.type), "a number"
        )
        lower = "" if low is None else f"{_number(low)}"
        upper = "" if high is None else f"{_number(high)}"
        return [f"{kind} in {lower or '-inf'}..{upper or 'inf'}"]
    return []


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def main() -> int:
    sys.stdout.write(example_toml())
    return 0


if __name__ == "__main__":
    sys.exit(main())
