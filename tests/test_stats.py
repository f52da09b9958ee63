"""The counter table: the `CounterName` Literal and `COUNTERS` name the same counters."""

from __future__ import annotations

import re
from pathlib import Path
from typing import get_args

import pytest

from vod_events.stats import COUNTERS, CounterName, Stats


def test_the_literal_and_the_table_list_the_same_counters_in_order() -> None:
    # mypy checks each row's name against the Literal; this catches a Literal entry
    # without a row (it would type-check and then raise KeyError at run time).
    assert tuple(c.name for c in COUNTERS) == get_args(CounterName)


def test_metric_names_are_unique_prometheus_names_without_suffix() -> None:
    metrics = [c.metric for c in COUNTERS]
    assert len(set(metrics)) == len(metrics)
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", m) for m in metrics)
    assert not any(m.endswith("_total") for m in metrics)  # the client library adds it
    assert all(c.help.endswith(".") for c in COUNTERS)


def test_stats_start_every_counter_of_the_table_at_zero() -> None:
    stats = Stats()
    assert stats.snapshot().counters == {c.name: 0 for c in COUNTERS}
    stats.incr("received", 3)
    stats.incr("handled")
    assert (stats.get("received"), stats.get("handled"), stats.get("failed")) == (3, 1, 0)


def test_a_misspelt_counter_name_is_a_type_error(tmp_path: Path) -> None:
    api = pytest.importorskip("mypy.api")
    snippet = tmp_path / "misspelt.py"
    snippet.write_text(
        "from vod_events.stats import Stats\n"
        "Stats().incr('recieved')\n"  # the misspelling under test
        "Stats().incr('received')\n"
    )
    stdout, _, status = api.run(
        ["--strict", "--no-incremental", "--follow-imports=silent", str(snippet)]
    )
    assert status == 1
    assert 'misspelt.py:2: error: Argument 1 to "incr" of "Stats" has incompatible type' in stdout
    assert "misspelt.py:3" not in stdout
