"""systemd/vod-events.service: what it promises, checked by systemd's own tools."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).parent.parent / "systemd" / "vod-events.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def service_section() -> dict[str, list[str]]:
    """[Service] settings; a setting given twice keeps every value."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values.setdefault(name, []).append(value)
    return values


def test_unit_is_a_notify_service_with_watchdog_state_and_secrets_outside_the_config() -> None:
    service = service_section()
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert service["WatchdogSec"] == ["90s"]
    assert service["Restart"] == ["on-failure"]
    assert service["RestartPreventExitStatus"] == ["2"]  # a config error does not loop
    assert service["StateDirectory"] == ["vod-events"]
    assert service["EnvironmentFile"] == ["-/etc/vod-events/credentials.env"]
    assert service["ExecStart"][0].endswith(" consume --config /etc/vod-events/config.toml")
    assert service["DynamicUser"] == ["yes"]
    parser = configparser.ConfigParser(strict=False)
    parser.read_string(UNIT.read_text())
    assert parser["Install"]["WantedBy"] == "multi-user.target"


@needs_analyze
def test_security_exposure_is_at_most_1_5() -> None:
    assert ANALYZE is not None
    done = subprocess.run(
        [ANALYZE, "security", "--offline=true", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    level = re.search(r"Overall exposure level for vod-events\.service: (\d+\.\d+)", done.stdout)
    assert level is not None, done.stdout + done.stderr
    assert float(level.group(1)) <= 1.5


@needs_analyze
def test_verify_is_clean(tmp_path: Path) -> None:
    # verify checks that ExecStart exists: point it at this environment's real entry point.
    assert ANALYZE is not None
    entry_point = Path(sys.executable).parent / "vod-events"
    if not entry_point.exists():
        pytest.skip("the vod-events entry point is not installed in this environment")
    unit = tmp_path / "vod-events.service"
    unit.write_text(UNIT.read_text().replace("/opt/vod-events/bin/vod-events", str(entry_point)))
    done = subprocess.run(
        [ANALYZE, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
