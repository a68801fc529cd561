"""The alert rules and the Grafana dashboard shipped under deploy/: valid for Prometheus (`promtool`, from
Debian's `prometheus` package, which `make test` installs), each alert firing when it should, and every
metric they name one the hub exports and docs/operations.md explains."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ackhub.client.agency import Verdict, start_subscription
from ackhub.core.clock import ManualClock
from tests.console_kit import console_url, escalate, publish, start_console_hub
from tests.harness import Inbox, RunningHub, wait_for

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "ackhub-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "ackhub-alerts.test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "ackhub-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"
PROMTOOL = shutil.which("promtool")
METRIC = re.compile(r"\backhub_[a-z0-9_]+")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum", "_created")

# Skipped only outside CI: there `make test` has installed promtool, and its absence must fail.
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="no promtool (make test installs Debian's prometheus)",
)


def _promtool(*args: str, cwd: Path = ROOT) -> str:
    assert PROMTOOL is not None, "promtool is missing: `make prometheus` installs it"
    run = subprocess.run([PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


def _rule_expressions() -> list[str]:
    return [line.split("expr:", 1)[1].strip() for line in RULES.read_text().splitlines() if "expr:" in line]


def _dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert len(found) >= 8, "a panel per thing the operator watches"
    return found


def _dashboard_variables() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [v["definition"] for v in dashboard["templating"]["list"] if v["type"] == "query"]


@needs_promtool
def test_alert_rules_are_valid_and_fire_when_they_should() -> None:
    """`promtool check rules` accepts the rules; `promtool test rules` shows each alert firing, and not before."""
    assert "SUCCESS: 5 rules found" in _promtool("check", "rules", str(RULES))
    assert "SUCCESS" in _promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)


@needs_promtool
def test_dashboard_queries_are_promql(tmp_path: Path) -> None:
    """Every panel's query parses as PromQL: each becomes a recording rule that `promtool check rules` reads."""
    rules = ["groups:", "  - name: dashboard", "    rules:"]
    for i, expr in enumerate(_dashboard_expressions()):
        rules += [f"      - record: dashboard:panel_{i}", f"        expr: {json.dumps(expr)}"]
    path = tmp_path / "dashboard-rules.yml"
    path.write_text("\n".join(rules) + "\n")
    assert f"SUCCESS: {len(_dashboard_expressions())} rules found" in _promtool("check", "rules", str(path))


@pytest.fixture(name="scraped")
def fixture_scraped(tmp_path: Path, clock: ManualClock) -> Iterator[set[str]]:
    """The metric names a hub with some traffic exports: a case, an acknowledgement, a checkpoint."""
    hub: RunningHub = start_console_hub(tmp_path, clock)
    try:
        start_subscription(hub.agency("fx", clock=clock), Inbox(lambda d: Verdict.received()))
        escalate(hub, clock, publish(hub))
        hub.run(hub.server.checkpoint())
        import httpx

        def scrape() -> str:
            text = httpx.get(console_url(hub) + "/metrics").text
            return text if "ackhub_ack_latency_seconds_bucket" in text else ""

        text = wait_for(scrape, what="fx's acknowledgement in the histogram")
        names = set()
        for family in text_string_to_metric_families(text):
            names.add(family.name)
            names.update(sample.name for sample in family.samples)
        yield names
    finally:
        hub.stop()


def test_rules_and_dashboard_name_only_exported_metrics(scraped: set[str]) -> None:
    """Each ackhub metric in an alert rule, a panel or a dashboard variable is one the hub's /metrics serves."""
    named = {
        name
        for expr in (*_rule_expressions(), *_dashboard_expressions(), *_dashboard_variables())
        for name in METRIC.findall(expr)
    }
    assert named, "the rules and panels name the hub's metrics"
    assert sorted(named - scraped) == []


def test_every_exported_metric_is_explained_in_operations_doc(scraped: set[str]) -> None:
    """docs/operations.md names every metric the hub exports, and every alert the rules define."""
    doc = OPERATIONS.read_text()
    families = {
        name for name in scraped if not name.endswith(HISTOGRAM_SUFFIXES) and name.startswith("ackhub_")
    }
    assert sorted(name for name in families if f"`{name}`" not in doc) == []
    alerts = re.findall(r"- alert: (\w+)", RULES.read_text())
    assert sorted(alert for alert in alerts if f"### {alert}" not in doc) == []
