"""Report pages in real headless Chromium: they load cleanly and show when and why."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path

import browser as chromium
import pytest
from api_fixtures import TOKEN, make_config, serve
from stored_analyses import T0, regressing_analysis

from canary.judge.round_values import bucket_quantile
from canary.model import Histogram
from canary.report import render_analysis, render_index
from canary.store.analyses import list_analyses, load_analysis_full
from canary.store.database import connect, migrate, sessions

#: An e-value or any float in scientific notation.
RAW = re.compile(r"(?<![\w-])\d(\.\d+)?e[+-]\d+")


@pytest.fixture
def report_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'canary.db'}"
    migrate(connect(url))
    return url


def test_quantiles_interpolate_inside_the_bucket() -> None:
    assert bucket_quantile(0.5, Histogram((10.0, 20.0, math.inf), (0, 100, 100))) == 15.0
    assert bucket_quantile(0.5, Histogram((10.0, math.inf), (0, 10))) == 10.0
    assert math.isnan(bucket_quantile(0.5, Histogram((10.0, math.inf), (0, 0))))


def test_rolled_back_report_shows_when_and_why(report_db: str, tmp_path: Path) -> None:
    analysis_id = regressing_analysis(report_db)
    with sessions(connect(report_db))() as session:
        analysis = load_analysis_full(session, analysis_id)
        html = render_analysis(analysis)
        rounds = len(analysis.rounds)
        rollback = next(a for a in analysis.actions if a.kind == "rollback")
    path = tmp_path / "report.html"
    path.write_text(html)

    page = chromium.load(path.as_uri())
    assert page.console == []
    headline = re.search(r'<div class="headline"[^>]*>(.*?)</div>', page.dom).group(1)
    assert headline.startswith(f"Rolled back at round {rollback.round_index} (t+")
    assert "failed" in headline and "errors" in headline
    # Per chart (the wide rendering): one point per round per line.
    weight_chart = re.search(r'<svg class="chart weight".*?</svg>', page.dom, re.S).group(0)
    assert weight_chart.count('class="point"') == rounds
    evidence = re.findall(r'<svg class="chart evidence".*?</svg>', page.dom, re.S)
    assert len(evidence) == 2  # errors and latency
    assert evidence[0].count('class="point" data-series="FAIL evidence"') == rounds
    assert 'class="threshold"' in evidence[0]
    observations = re.search(r'<svg class="chart observations".*?</svg>', page.dom, re.S)
    assert observations.group(0).count('class="point" data-series="canary"') == rounds
    assert page.dom.count('<tr class="round">') == rounds
    # Every chart marks the step changes and the decision.
    charts = re.findall(r"<svg class=\"chart [^\"]*\".*?</svg>", page.dom, re.S)
    assert len(charts) == 2 * 5  # weight, 2 x (observations, evidence); wide and narrow
    for chart in charts:
        assert chart.count('class="marker decision"') == 1
        assert "FAIL decided" in chart and "advance 40%" in chart and "rollback 0%" in chart
    # Plain words lead; raw e-values only in the detail table.
    summary = re.search(r'<ul class="reasons">.*?</ul>', page.dom, re.S).group(0)
    assert re.search(
        r"errors</b> fail — error odds (at least )?\d+\.\d(–\d+(\.\d+)?)?x baseline", summary
    )
    assert "FAIL evidence 100% — decided" in summary
    outside_table = page.dom.split('<table class="rounds">')[0]
    assert not RAW.search(outside_table)
    assert "e_fail " in page.dom.split('<table class="rounds">')[1]
    for width in (1280, 390):
        shot = chromium.screenshot(
            path.as_uri(), f"report-rolled-back-{width}.png", f"{width},2400"
        )
        assert shot.stat().st_size > 10_000


def _ticks(svg: str, axis: str) -> list[str]:
    return re.findall(rf'<text class="{axis}-tick"[^>]*>([^<]*)</text>', svg)


def _is_round(value: float) -> bool:
    """1, 2, 2.5 or 5 times a power of ten (or 0)."""
    if value == 0:
        return True
    mantissa = abs(value) / 10 ** math.floor(math.log10(abs(value)))
    return any(math.isclose(mantissa, m) for m in (1, 2, 2.5, 5, 10))


def test_charts_have_round_ticks_and_a_legend_per_line(report_db: str) -> None:
    analysis_id = regressing_analysis(report_db)
    server = serve(report_db, make_config("http://127.0.0.1:9"))  # the API's page
    try:
        page = chromium.load(f"{server.url}/analyses/{analysis_id}?token={TOKEN}")
    finally:
        server.stop()
    assert page.console == []
    dom = page.dom  # the SVG as Chromium parsed it
    charts = re.findall(r'<svg class="chart observations".*?</svg>', dom, re.S)
    latency = next(c for c in charts if "latency: canary vs baseline" in c)
    values = [float(t) for t in _ticks(latency, "y")]
    assert len(values) >= 3
    steps = {round(b - a, 9) for a, b in itertools.pairwise(values)}
    assert len(steps) == 1 and _is_round(steps.pop())  # evenly spaced by a round step
    assert all(_is_round(v) or _is_round(v % 100) for v in values)
    assert _ticks(latency, "x")[0] == "t+0" and all(
        re.fullmatch(r"t\+\d+[smh]", t) for t in _ticks(latency, "x")[1:]
    )
    # One legend entry per line; colour tells the arm, dash tells the quantile.
    entries = dict(
        re.findall(r'<g class="legend-entry" data-series="([^"]+)"><line ([^>]*)>', latency)
    )
    assert set(entries) == {"canary p50", "canary p99", "baseline p50", "baseline p99"}

    def attr(series: str, name: str) -> str:
        found = re.search(rf'{name}="([^"]*)"', entries[series])
        return found.group(1) if found else ""

    assert attr("canary p50", "stroke") == attr("canary p99", "stroke")
    assert attr("canary p50", "stroke") != attr("baseline p50", "stroke")
    assert attr("canary p50", "stroke-dasharray") == attr("baseline p50", "stroke-dasharray")
    assert attr("canary p50", "stroke-dasharray") != attr("canary p99", "stroke-dasharray")
    weight = re.search(r'<svg class="chart weight".*?</svg>', dom, re.S).group(0)
    assert _ticks(weight, "y") == ["0%", "25%", "50%", "75%", "100%"]


def test_an_hour_long_analysis_reads_in_wall_clock_time(report_db: str, tmp_path: Path) -> None:
    analysis_id = regressing_analysis(report_db, minutes=10)
    with sessions(connect(report_db))() as session:
        html = render_analysis(load_analysis_full(session, analysis_id))
    path = tmp_path / "long.html"
    path.write_text(html)
    page = chromium.load(path.as_uri())
    assert page.console == []
    for chart in re.findall(r'<svg class="chart [^"]*".*?</svg>', page.dom, re.S):
        labels = _ticks(chart, "x")
        assert labels[0].endswith(" UTC") and all(
            re.fullmatch(r"\d\d:\d\d( UTC)?", label) for label in labels
        ), labels
    for width in (1280, 390):
        chromium.screenshot(path.as_uri(), f"report-long-{width}.png", f"{width},2400")


def test_values_off_a_fixed_scale_are_marked_not_dropped() -> None:
    from canary.report.svg import Chart, Series, render

    svg = render(
        Chart(
            "c",
            "score",
            [Series("score", "#000", [(0, 50.0), (1, 140.0), (2, -5.0)])],
            (0, 2),
            y_range=(0, 100),
        )
    )
    assert svg.count('class="point"') == 1
    clipped = re.findall(r'<path class="clipped"[^>]*>.*?<title>([^<]*)</title>', svg)
    assert clipped == ["score: 140 (off the scale)", "score: -5 (off the scale)"]


def test_long_analyses_show_wall_clock_time() -> None:
    from canary.report.svg import Chart, Series, render

    points = [(float(t), 1.0) for t in range(0, 7201, 600)]
    svg = render(Chart("c", "v", [Series("v", "#000", points)], (0, 7200), start=T0))
    labels = _ticks(svg, "x")
    assert labels[0] == "12:00 UTC" and labels[-1] == "14:00"
    assert all(re.fullmatch(r"\d\d:\d[05]( UTC)?", label) for label in labels)
    short = render(Chart("c", "v", [Series("v", "#000", points[:2])], (0, 600), start=T0))
    assert _ticks(short, "x")[-1] == "t+10m"


def test_index_lists_and_filters(report_db: str, tmp_path: Path) -> None:
    regressing_analysis(report_db)
    with sessions(connect(report_db))() as session:
        html = render_index(list_analyses(session), status="rolled_back")
    path = tmp_path / "index.html"
    path.write_text(html)
    page = chromium.load(path.as_uri())
    assert page.console == []
    assert page.dom.count('<tr class="analysis">') == 1
    assert "/analyses?status=rolled_back" in page.dom


def test_report_command_writes_one_self_contained_file(report_db: str, tmp_path: Path) -> None:
    from canary.cli import main

    analysis_id = regressing_analysis(report_db)
    out = tmp_path / "out.html"
    assert main(["--database-url", report_db, "report", analysis_id, "--out", str(out)]) == 0
    html = out.read_text()
    assert "<svg" in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert main(["--database-url", report_db, "report", "nope", "--out", str(out)]) == 2


STATUS_TOML = """
[[canary]]
name = "checkout"
namespace = "shop"
[canary.traffic]
virtual_service = "checkout"
canary = { host = "checkout", subset = "canary" }
stable = { host = "checkout", subset = "stable" }
[canary.arms.canary]
match = { destination_canonical_revision = "v2" }
[canary.arms.baseline]
match = { destination_canonical_revision = "v1" }
"""


def test_analyses_ended_at_their_budget_read_inconclusive_everywhere(  # type: ignore[no-untyped-def]
    backfilled_scenarios, report_db: str, tmp_path: Path, capsys
) -> None:
    """An analysis the budget ends without PASS or FAIL — a daemon rollout, an Argo
    measurement series through a running API server's endpoint, a `canary analyze`
    window of a real Prometheus — is inconclusive and no longer running in `history`, `show`,
    `status` and the report page in Chromium."""

    from metrics_scenarios import BOUNDARIES, iso, write_config
    from replay_helpers import T0, argo_analysis, config, daemon_analysis, scenario

    from canary.cli import main

    def cli(*args: str) -> tuple[int, str]:
        code = main(["--database-url", report_db, *args])
        return code, capsys.readouterr().out

    quiet = scenario(5, 8, rps=3)  # too few requests for evidence either way
    one_step = [{"weight": 10, "duration": "60m"}]
    ended = {
        "daemon": daemon_analysis(
            report_db, quiet, cfg=config(max_rounds=4, steps=one_step), start=T0
        ),
        "argo": argo_analysis(report_db, quiet, cfg=config(max_rounds=4), start=T0),
    }
    server, _ = backfilled_scenarios
    toml = Path(write_config(tmp_path / "analyze.toml", server.url, "resets"))
    toml.write_text(toml.read_text().replace('interval = "2m"', 'interval = "2m"\nmax_rounds = 1'))
    code = main(
        [
            "--config", str(toml), "--database-url", report_db, "analyze", "--canary", "shop",
            "--from", iso(BOUNDARIES[0]), "--to", iso(BOUNDARIES[-1]), "--json",
        ]
    )  # fmt: skip
    analyzed = json.loads(capsys.readouterr().out)
    assert (code, analyzed["verdict"], len(analyzed["rounds"])) == (0, "inconclusive", 2)
    ended["analyze"] = analyzed["analysis_id"]
    budget = {"daemon": 4, "argo": 4, "analyze": 1}

    code, out = cli("history", "--json")
    rows = {row["id"]: row for row in json.loads(out)}
    for source, analysis_id in ended.items():
        row = rows[analysis_id]
        assert row["verdict"] == "inconclusive" and row["status"] != "running", source
        assert row["verdictRound"] == budget[source], source

        code, out = cli("show", analysis_id, "--json")
        last = json.loads(out)["rounds"][-1]
        assert row["finished"] == last["windowEnd"], source  # ended with its last round

        code, out = cli("show", analysis_id)
        head = out.split("\n\n")[0]
        assert f"verdict   inconclusive at round {budget[source]}" in head, head
        assert "running" not in head, head

        page_file = tmp_path / f"{source}.html"
        assert cli("report", analysis_id, "--out", str(page_file))[0] == 0
        page = chromium.load(page_file.as_uri())
        assert page.console == []
        badge = re.search(r'<span class="badge verdict"[^>]*>(.*?)</span>', page.dom).group(1)
        assert badge == "inconclusive", source
        meta = re.search(r'<div class="meta">(.*?)</div>', page.dom).group(1)
        headline = re.search(r'<div class="headline"[^>]*>(.*?)</div>', page.dom).group(1)
        assert "running" not in (meta + headline).lower(), (source, meta, headline)

    status_toml = tmp_path / "status.toml"
    status_toml.write_text(STATUS_TOML)
    code = main(["--config", str(status_toml), "--database-url", report_db, "status", "--json"])
    (row,) = json.loads(capsys.readouterr().out)
    assert row["active"] is False
    assert row["analysis"]["analysisId"] == ended["daemon"]
    assert (row["analysis"]["status"], row["analysis"]["verdict"]) == (
        "inconclusive",
        "inconclusive",
    )
