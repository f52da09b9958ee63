"""deploy/observability/: the Grafana dashboard and the Prometheus alert rules query only
metrics that a real daemon serves on /metrics, and both files are well formed.

A real `python -m vod_events.consume` process, fed a handled event, its duplicate and a poison
body over the local MNS server, is scraped once; every `vod_events_*` name in the dashboard's
and the rules' PromQL must be one of its samples (`_total` of a counter, `_bucket`/`_sum`/
`_count` of a histogram, a gauge by its name). Where `promtool` is installed (Debian:
`apt-get install prometheus`) it also checks the rules and the dashboard's queries, and runs
unit tests of the alerts: each fires in its scenario and not in its look-alike.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import event_body, jsonl_job_ids, wait_for
from prometheus_client.parser import text_string_to_metric_families
from service_process import Daemon

from vod_events.mns_server import LocalMNSServer
from vod_events.stats import BUCKETS
from vod_events.transports.mns import MNSTransport

OBSERVABILITY = Path(__file__).parent.parent / "deploy" / "observability"
DASHBOARD = OBSERVABILITY / "grafana-dashboard.json"
ALERTS = OBSERVABILITY / "alerts.yaml"
README = OBSERVABILITY / "README.md"

METRIC_NAME = re.compile(r"\bvod_events_\w+")
# The label matchers every panel query puts right after each metric name.
PANEL_SELECTOR = '{job=~"$job", instance=~"$instance"}'
RANGE_FUNCTION_ARGUMENT = re.compile(r"\b(?:rate|irate|increase|resets)\(\s*(vod_events_\w+)")
SEVERITIES = {"critical", "warning", "info"}
DURATION = re.compile(r"^(?:0|(?:\d+[smhd])+)$")

KEY_ID, SECRET = "obs-key-id", "obs-key-secret"

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool missing (Debian: apt-get install prometheus)"
)


# ------------------------------------------------------------ the assets


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels (collapsed rows keep theirs inside) included."""
    for panel in container.get("panels", []):
        yield panel
        yield from panels(panel)


def panel_queries() -> list[str]:
    return [
        target["expr"]
        for panel in panels(dashboard())
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def variable_queries() -> list[str]:
    """The PromQL of the dashboard's query variables (`label_values(metric, label)`)."""
    found = []
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        found.append(query["query"] if isinstance(query, dict) else query)
        found.append(variable.get("definition", ""))
    return found


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(ALERTS.read_text())
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def alert_queries() -> list[str]:
    return [rule["expr"] for rule in rules()]


def referenced(queries: list[str]) -> set[str]:
    return {name for query in queries for name in METRIC_NAME.findall(query)}


# ------------------------------------------------------------ a real daemon's /metrics


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - a local URL
        body: bytes = response.read()
    return body.decode()


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Every sample name and family name a running daemon exposes, mapped to its type,
    after it handled an event, skipped its duplicate and dead-lettered a poison body."""
    work = tmp_path_factory.mktemp("observability")
    handled = work / "out.jsonl"
    with LocalMNSServer(access_key_id=KEY_ID, access_key_secret=SECRET) as server:
        server.create_queue("events")
        queue = MNSTransport(
            server.endpoint, "events", access_key_id=KEY_ID, access_key_secret=SECRET
        )
        for body in (event_body("job-1"), event_body("job-1"), "<html>not an event</html>"):
            queue.send(body)
        config = work / "vod-events.toml"
        config.write_text(
            f'[mns]\nendpoint = "{server.endpoint}"\nqueue = "events"\n'
            "[consumer]\npollers = 1\nworkers = 2\nwait_seconds = 1\n"
            f'[state]\ndir = "{work / "state"}"\n'
            '[log]\nformat = "json"\n'
            '[ops]\nlisten = "127.0.0.1:0"\n'
            f'[[handlers]]\nevents = ["*"]\ntype = "jsonl"\npath = "{handled}"\n'
        )
        env = {"ALIBABA_CLOUD_ACCESS_KEY_ID": KEY_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": SECRET}
        with Daemon(config, env) as daemon:

            def ops_url() -> str | None:
                for event in daemon.log_events():
                    if event["event"] == "ops endpoint listening":
                        return str(event["url"])
                return None

            wait_for(lambda: ops_url() is not None, timeout=30, what="the ops endpoint")
            metrics = f"{ops_url()}/metrics"
            done = (
                "vod_events_messages_handled_total 1.0",
                "vod_events_messages_duplicate_total 1.0",
                "vod_events_messages_dead_lettered_total 1.0",
                "vod_events_messages_deleted_total 3.0",
            )
            wait_for(
                lambda: all(line in scrape(metrics) for line in done),
                timeout=30,
                what="the three messages handled, skipped and dead-lettered",
            )
            text = scrape(metrics)
            assert "job-1" in jsonl_job_ids(handled)
            daemon.process.send_signal(signal.SIGTERM)
            assert daemon.wait() == 0
    found: dict[str, str] = {}
    for family in text_string_to_metric_families(text):
        found[family.name] = family.type
        for sample in family.samples:
            found[sample.name] = family.type
    return found


def sample_names(exposed: dict[str, str]) -> set[str]:
    """The names series get in Prometheus: a counter's `_total`, a histogram's three."""
    return {
        name
        for name, kind in exposed.items()
        if not (kind == "counter" and not name.endswith("_total"))
        and not (kind == "histogram" and not name.endswith(("_bucket", "_sum", "_count")))
    }


def test_every_metric_the_dashboard_queries_is_on_metrics(exposed: dict[str, str]) -> None:
    names = referenced(panel_queries() + variable_queries())
    assert len(names) >= 15  # the extraction found the queries at all
    missing = names - sample_names(exposed)
    assert not missing, f"the dashboard queries metrics /metrics does not serve: {missing}"


def test_every_metric_the_alerts_query_is_on_metrics(exposed: dict[str, str]) -> None:
    names = referenced(alert_queries())
    assert len(names) >= 6
    missing = names - sample_names(exposed)
    assert not missing, f"the alert rules query metrics /metrics does not serve: {missing}"


def test_rates_are_taken_of_counters_and_quantiles_of_buckets(exposed: dict[str, str]) -> None:
    for query in panel_queries() + alert_queries():
        for name in RANGE_FUNCTION_ARGUMENT.findall(query):
            assert exposed.get(name) in ("counter", "histogram"), f"rate of a gauge: {query}"
        if "histogram_quantile" in query:
            assert all(n.endswith("_bucket") for n in METRIC_NAME.findall(query)), query
            assert re.search(r"\bby \([^)]*\ble\b", query), f"le aggregated away: {query}"


def test_prose_names_only_metrics_that_exist(exposed: dict[str, str]) -> None:
    """Descriptions, annotations and the README may name a family or a sample; no other."""
    texts = [DASHBOARD.read_text(), ALERTS.read_text(), README.read_text()]
    unknown = referenced(texts) - set(exposed)
    assert not unknown, f"deploy/observability names metrics that do not exist: {unknown}"


# ------------------------------------------------------------ the dashboard


def test_dashboard_is_importable_json_with_unique_panel_ids() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36
    assert board["uid"] and board["title"]
    assert board["id"] is None  # an import gets its own
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {sorted(ids)}"
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        targets = panel["targets"]
        assert targets and all(t["expr"].strip() for t in targets), panel["title"]
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        assert panel["title"] and panel["description"], panel["id"]


def test_dashboard_panels_tile_the_grid_without_overlap() -> None:
    taken: dict[tuple[int, int], str] = {}
    for panel in panels(dashboard()):
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[x, y]}"
                taken[x, y] = panel["title"]


def test_dashboard_queries_the_chosen_data_source_job_and_instances() -> None:
    board = dashboard()
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"job", "instance"} <= set(variables)
    source = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == source, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == source, panel["title"]
            for match in METRIC_NAME.finditer(target["expr"]):
                after = target["expr"][match.end() :]
                assert after.startswith(PANEL_SELECTOR), f"{panel['title']}: {target['expr']}"


# ------------------------------------------------------------ the alert rules


def test_rules_file_has_the_prometheus_structure() -> None:
    loaded = yaml.safe_load(ALERTS.read_text())
    assert set(loaded) == {"groups"}
    for group in loaded["groups"]:
        assert group["name"] and group["rules"]
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"VodEvents[A-Z]\w+", rule["alert"])
        assert isinstance(rule["expr"], str) and rule["expr"].strip()
        assert DURATION.match(str(rule["for"])), rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES
        for annotation in ("summary", "description", "runbook"):
            assert rule["annotations"][annotation].strip(), (rule["alert"], annotation)


def test_every_alert_has_its_runbook_section_in_the_readme() -> None:
    headings = re.findall(r"^### (VodEvents\w+)$", README.read_text(), re.MULTILINE)
    names = [rule["alert"] for rule in rules()]
    assert sorted(headings) == sorted(names)
    for rule in rules():
        anchor = f"deploy/observability/README.md#{rule['alert'].lower()}"
        assert rule["annotations"]["runbook"].startswith(anchor), rule["alert"]


def test_the_issue_s_alerts_are_all_there() -> None:
    queries = {rule["alert"]: rule["expr"] for rule in rules()}
    assert "vod_events_event_lag_seconds_bucket" in queries["VodEventsLagHigh"]
    assert "vod_events_messages_dead_lettered_total" in queries["VodEventsDeadLetters"]
    assert "vod_events_messages_failed_total" in queries["VodEventsHandlerFailureRate"]
    assert "vod_events_up" in queries["VodEventsNotReady"]
    assert "vod_events_healthy" in queries["VodEventsNotLive"]  # what the watchdog acts on


def test_quantile_thresholds_stay_below_the_largest_bucket() -> None:
    """histogram_quantile never answers more than the largest finite bucket bound (it reads
    60 s when the quantile lies beyond it): a higher threshold could never fire."""
    for rule in rules():
        if "histogram_quantile" not in rule["expr"]:
            continue
        threshold = re.search(r">\s*([0-9.]+)\s*$", rule["expr"])
        assert threshold, rule["alert"]
        assert float(threshold.group(1)) < max(BUCKETS), rule["alert"]


# ------------------------------------------------------------ promtool, where installed


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", *args], capture_output=True, text=True, timeout=60, check=False
    )


@needs_promtool
def test_promtool_accepts_the_rules() -> None:
    done = promtool("check", "rules", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_promtool_accepts_the_dashboard_queries(tmp_path: Path) -> None:
    """Each panel query, Grafana's variables filled in, as a recording rule: promtool parses it."""
    grafana = {"$__rate_interval": "1m", "$__range": "6h", "$job": ".*", "$instance": ".*"}
    recorded = []
    for i, query in enumerate(panel_queries()):
        filled = query
        for variable, value in grafana.items():
            filled = filled.replace(variable, value)
        assert "$" not in filled, filled
        recorded.append({"record": f"dashboard:query_{i}", "expr": filled})
    rule_file = tmp_path / "dashboard-queries.yaml"
    rule_file.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    done = promtool("check", "rules", str(rule_file))
    assert done.returncode == 0, done.stdout + done.stderr


def series(name: str, values: str, **labels: str) -> dict[str, str]:
    matchers = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{matchers}}}", "values": values}


def fires(alert: str, at: str, *expected: dict[str, str]) -> dict[str, Any]:
    return {
        "eval_time": at,
        "alertname": alert,
        "exp_alerts": [{"exp_labels": labels} for labels in expected],
    }


A = {"job": "vod-events", "instance": "a:9400"}
B = {"job": "vod-events", "instance": "b:9400"}


def lag_buckets(job: str, bucket: str, per_minute: int) -> list[dict[str, str]]:
    """A lag histogram whose every event falls into `bucket`, `per_minute` events a minute."""
    bounds = ["0.5", "30.0", "60.0", "+Inf"]
    grows = f"0+{per_minute}x20"
    return [
        series(
            "vod_events_event_lag_seconds_bucket",
            grows if float(le) >= float(bucket) else "0x20",
            job=job,
            instance="a:9400",
            le=le,
        )
        for le in bounds
    ]


def deliveries(job: str, *, received: str, failed: str, dead: str) -> list[dict[str, str]]:
    """One replica's received, failed (handed back) and dead-lettered counters."""
    return [
        series(f"vod_events_messages_{name}_total", values, job=job, instance=f"{job}:9400")
        for name, values in (("received", received), ("failed", failed), ("dead_lettered", dead))
    ]


SCENARIOS: list[dict[str, Any]] = [
    {  # exported vod-events metrics, then stops answering; a node exporter down does not count
        "input_series": [
            series("up", "1 1 1 0x10", **A),
            series("vod_events_up", "1 1 1 _x10", **A),
            series("up", "0x13", job="node", instance="n:9100"),
        ],
        "alert_rule_test": [
            fires("VodEventsDown", "5m"),
            fires("VodEventsDown", "9m", {**A, "severity": "critical"}),
        ],
    },
    {
        "input_series": [series("vod_events_healthy", "1 1 0x6", **A)],
        "alert_rule_test": [
            fires("VodEventsNotLive", "3m"),
            fires("VodEventsNotLive", "5m", {**A, "severity": "critical"}),
        ],
    },
    {
        "input_series": [
            series("vod_events_up", "1 0x10", **A),
            series("vod_events_up", "1x10", **B),
        ],
        "alert_rule_test": [
            fires("VodEventsNotReady", "4m"),
            fires("VodEventsNotReady", "7m", {**A, "severity": "warning"}),
        ],
    },
    {  # a: restarts on an idle queue, b: on a busy one, each seen through its counter
        "input_series": [
            series("vod_events_empty_receives_total", "0 3 6 1 4 1 4 1 4", **A),
            series("vod_events_messages_received_total", "0x8", **A),
            series("vod_events_empty_receives_total", "0x8", **B),
            series("vod_events_messages_received_total", "0 9 2 9 2 9 2 9 9", **B),
        ],
        "alert_rule_test": [
            fires("VodEventsRestarting", "6m", {**B, "severity": "warning"}),
            fires("VodEventsRestarting", "8m", *[{**x, "severity": "warning"} for x in (A, B)]),
        ],
    },
    {  # slow: every event waits 30-60 s; fast: under half a second
        "input_series": [*lag_buckets("slow", "60.0", 10), *lag_buckets("fast", "0.5", 10)],
        "alert_rule_test": [
            fires("VodEventsLagHigh", "8m"),
            fires("VodEventsLagHigh", "16m", {"job": "slow", "severity": "warning"}),
        ],
    },
    {
        "input_series": [
            series("vod_events_messages_dead_lettered_total", "0 0 0 1 1 1", **A),
            series("vod_events_messages_dead_lettered_total", "0x5", job="other", instance="o:1"),
        ],
        "alert_rule_test": [
            fires("VodEventsDeadLetters", "2m"),
            fires("VodEventsDeadLetters", "4m", {"job": "vod-events", "severity": "warning"}),
        ],
    },
    {  # failing: 30 % fail; healthy: none; quiet: all fail, but too few to judge
        "input_series": [
            *deliveries("failing", received="0+10x30", failed="0+2x30", dead="0+1x30"),
            *deliveries("healthy", received="0+10x30", failed="0x30", dead="0x30"),
            *deliveries("quiet", received="0+0.5x30", failed="0+0.5x30", dead="0x30"),
        ],
        "alert_rule_test": [
            fires("VodEventsHandlerFailureRate", "8m"),
            fires("VodEventsHandlerFailureRate", "20m", {"job": "failing", "severity": "warning"}),
        ],
    },
]


@needs_promtool
def test_alerts_fire_in_their_scenarios_and_not_in_look_alikes(tmp_path: Path) -> None:
    # The rules as they are, less their annotations: promtool compares annotations exactly,
    # and the scenarios are about when an alert fires, not its wording.
    loaded = yaml.safe_load(ALERTS.read_text())
    for group in loaded["groups"]:
        for rule in group["rules"]:
            del rule["annotations"]
    rule_file = tmp_path / "alerts.yaml"
    rule_file.write_text(yaml.safe_dump(loaded))
    tested = {case["alertname"] for s in SCENARIOS for case in s["alert_rule_test"]}
    assert tested == {rule["alert"] for rule in rules()}  # one scenario per alert at least
    unit_tests = tmp_path / "alerts.test.yaml"
    unit_tests.write_text(
        yaml.safe_dump(
            {
                "rule_files": [str(rule_file)],
                "evaluation_interval": "1m",
                "tests": [{"interval": "1m", **scenario} for scenario in SCENARIOS],
            }
        )
    )
    done = promtool("test", "rules", str(unit_tests))
    assert done.returncode == 0, done.stdout + done.stderr
