"""deploy/grafana and deploy/prometheus: the alerts pass promtool's checks and a unit
test each; the dashboard's queries run against a real Prometheus scraping the
service's own /metrics while `canary demo` runs the real daemon."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml
from prometheus_harness import (
    PROMTOOL,
    PrometheusServer,
    free_port,
    wait_for_series,
)

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "canary-rules.yaml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "canary-rules.test.yaml"
DASHBOARD = ROOT / "deploy" / "grafana" / "canary-dashboard.json"


def _rule_file(tmp_path: Path) -> Path:
    """The PrometheusRule's spec.groups as the plain rule file Prometheus reads."""
    resource = yaml.safe_load(RULES.read_text())
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    assert resource["kind"] == "PrometheusRule"
    path = tmp_path / "canary-rules.groups.yaml"
    path.write_text(yaml.safe_dump({"groups": resource["spec"]["groups"]}, sort_keys=False))
    return path


def _alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["spec"]["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_rules_pass_promtool_check_and_their_unit_tests(tmp_path: Path) -> None:
    rules = _rule_file(tmp_path)
    check = subprocess.run([PROMTOOL, "check", "rules", str(rules)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"SUCCESS: {len(_alerts())} rules found" in check.stdout
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    unit = subprocess.run(
        [PROMTOOL, "test", "rules", RULE_TESTS.name], capture_output=True, text=True, cwd=tmp_path
    )
    assert unit.returncode == 0, unit.stdout + unit.stderr
    # every alert has a unit test in which it fires, and one in which it stays quiet
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    cases = [case for test in tests for case in test.get("alert_rule_test", [])]
    names = {rule["alert"] for rule in _alerts()}
    assert names == {
        "CanaryAnalysisStuck",
        "CanaryAnalysisHalted",
        "CanaryQueriesFailing",
        "CanaryTrafficDrift",
    }
    for name in names:
        assert any(c["alertname"] == name and c["exp_alerts"] for c in cases), name
        assert any(c["alertname"] == name and not c["exp_alerts"] for c in cases), name


def _panel_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            # Grafana's variables as Grafana fills them: all canaries, a 1m rate window
            expr = target["expr"].replace("$canary", ".*").replace("$__rate_interval", "1m")
            queries.append((panel["title"], expr))
    return queries


def test_dashboard_covers_what_operators_watch() -> None:
    titles = {title for title, _ in _panel_queries()}
    for needed in ("Running analyses", "Halted analyses", "Round lateness", "Query errors"):
        assert needed in titles
    assert any("Verdicts" in t for t in titles) and any("Actions" in t for t in titles)


def _query(prometheus: PrometheusServer, expr: str) -> dict:
    response = httpx.post(
        f"{prometheus.url}/api/v1/query", data={"query": expr, "time": time.time()}, timeout=30
    )
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", (expr, body)
    assert not body.get("warnings"), (expr, body["warnings"])
    return body["data"]


def test_dashboard_and_alert_queries_on_the_service_s_own_metrics(tmp_path: Path) -> None:
    port = free_port()
    prometheus = PrometheusServer(tmp_path / "prometheus", scrape_targets=[f"127.0.0.1:{port}"])
    demo = subprocess.Popen(
        [sys.executable, "-m", "canary", "demo", "--listen", f"127.0.0.1:{port}",
         "--keep-serving", "--data-dir", str(tmp_path / "demo")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    try:
        with prometheus:
            # the demo's rounds are scraped while they run; it keeps serving when done
            wait_for_series(prometheus, 'canary_rounds_total{outcome="advance"}', timeout=120)
            wait_for_series(prometheus, 'canary_analyses{status="rolled_back"}', timeout=120)
            wait_for_series(prometheus, 'canary_analyses{status="promoted"}', timeout=120)
            time.sleep(3)  # a few more scrapes after the end, for the rates
            for title, expr in _panel_queries():
                data = _query(prometheus, expr)
                assert data["result"], f"panel {title!r}: no data for {expr}"
            for rule in _alerts():
                _query(prometheus, rule["expr"])  # valid on the real series
            # what the demo did shows on the dashboard
            outcomes = _query(prometheus, "sum by (status, verdict) (canary_analyses)")
            found = {(r["metric"]["status"], r["metric"]["verdict"]) for r in outcomes["result"]}
            assert {("promoted", "pass"), ("rolled_back", "fail")} <= found
    finally:
        demo.send_signal(signal.SIGINT)
        try:
            out, err = demo.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            demo.kill()
            out, err = demo.communicate()
    assert re.search(r"report pages: http://127\.0\.0\.1:\d+/analyses", out), out + err


def test_store_gauges_count_analyses_and_a_stuck_round(tmp_path: Path) -> None:
    """What the stuck and halted alerts read, straight from the store at scrape time."""
    from datetime import UTC, datetime, timedelta

    from canary import telemetry
    from canary.model import AnalysisStatus
    from canary.store.analyses import create_analysis
    from canary.store.database import connect, migrate, sessions

    engine = connect(f"sqlite:///{tmp_path / 'canary.db'}")
    migrate(engine)
    factory = sessions(engine)
    now = datetime.now(UTC)
    with factory.begin() as session:
        late = create_analysis(
            session, canary="checkout", source="daemon", judge="sequential", settings={}
        )
        late.next_round_at = now - timedelta(seconds=400)
        create_analysis(
            session,
            canary="search",
            source="daemon",
            judge="sequential",
            settings={},
            status=AnalysisStatus.HALTED,
        )
    telemetry.watch_store(factory)
    try:
        _check_store_gauges(tmp_path, engine)
    finally:
        telemetry.watch_store(None)


def _check_store_gauges(tmp_path: Path, engine: object) -> None:
    from canary import telemetry

    sample = telemetry.REGISTRY.get_sample_value
    overdue = sample("canary_analysis_round_overdue_seconds", {"canary": "checkout"})
    assert overdue is not None and 400 <= overdue < 460
    labels = {"canary": "search", "status": "halted", "verdict": "running"}
    assert sample("canary_analyses", labels) == 1.0
    assert sample("canary_store_up") == 1.0
    engine.dispose()  # type: ignore[attr-defined]
    (tmp_path / "canary.db").unlink()  # a store that does not answer: up 0, no gauges
    assert sample("canary_store_up") == 0.0
    assert sample("canary_analyses", labels) is None
