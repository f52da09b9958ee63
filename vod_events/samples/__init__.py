"""Sample VOD event payloads, one or more per EventType, the seeds' payloads verbatim among
them: `<EventType>[.<variant>].json`. The demo sends them; the tests decode every one."""

from __future__ import annotations

from importlib import resources


def payloads() -> dict[str, str]:
    """Every sample body, by file name, in name order."""
    folder = resources.files(__name__)
    return {
        entry.name: entry.read_text(encoding="utf-8")
        for entry in sorted(folder.iterdir(), key=lambda e: e.name)
        if entry.name.endswith(".json")
    }
