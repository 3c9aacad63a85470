"""HTML pages: one analysis, and the index of analyses."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from canary.model import Counts, Histogram, stored_observation
from canary.replay import fmt_seconds
from canary.report.series import judged_rounds, metric_series, seconds
from canary.report.svg import NARROW, Chart, Marker, Series
from canary.report.svg import render as render_svg
from canary.store.tables import Analysis
from canary.verdict_words import deciding_effects, describe_metric, raw_evidence

#: One colour per arm, one dash pattern per quantile (p50 solid, p99 dashed).
COLORS = {"canary": "#d97706", "baseline": "#2563eb"}
DASHES = {"p50": "", "p90": "2 3", "p95": "8 3 2 3", "p99": "6 4"}
VERDICT_COLORS = {
    "pass": "#15803d",
    "fail": "#b91c1c",
    "inconclusive": "#a16207",
    "running": "#1d4ed8",
}
ACTION_COLORS = {"rollback": "#b91c1c", "abort": "#b91c1c", "promote": "#15803d"}
STATUSES = (
    "running",
    "paused",
    "halted",
    "promoted",
    "rolled_back",
    "inconclusive",
    "aborted",
    "completed",
)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1000px;color:#111827;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px}
.badge{display:inline-block;padding:2px 10px;border-radius:12px;color:#fff;font-weight:600}
.headline{font-size:16px;margin:12px 0;padding:12px 14px;border-left:5px solid;
background:#f9fafb}
.meta{color:#4b5563}table{border-collapse:collapse;width:100%;font-size:12.5px}
th,td{border-bottom:1px solid #e5e7eb;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f3f4f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
ul.reasons{margin:6px 0 0 18px;padding:0}nav a{margin-right:10px}
ul.reasons small{color:#4b5563}svg.chart{max-width:100%;height:auto;display:block}
.scroll{overflow-x:auto}.chart-narrow{display:none}
@media (max-width:640px){.chart-wide{display:none}.chart-narrow{display:block}
body{margin:12px auto;padding:0 10px}}
"""


def render(chart: Chart) -> str:
    """A chart twice: wide for screens, narrow for phones (CSS shows one)."""
    return (
        f'<div class="chart-wide">{render_svg(chart)}</div>'
        f'<div class="chart-narrow">{render_svg(chart, NARROW)}</div>'
    )


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body>{body}</body></html>"
    )


def _badge(verdict: str) -> str:
    color = VERDICT_COLORS.get(verdict, "#4b5563")
    return f'<span class="badge verdict" style="background:{color}">{escape(verdict)}</span>'


def headline(analysis: Analysis) -> str:
    """One sentence: what happened, when, why, and the deciding metrics' effect."""
    rounds = {r.index: r for r in analysis.rounds}
    final_actions = [a for a in analysis.actions if a.kind in ("rollback", "abort", "promote")]
    reason = analysis.reason or "no reason recorded"
    effects = _deciding_effects(analysis)
    if final_actions:
        action = final_actions[-1]
        row = rounds.get(action.round_index or -1)
        when = ""
        if row is not None:
            when = (
                f" at round {row.index} (t+{fmt_seconds(seconds(analysis, row))}, "
                f"canary weight {action.from_weight}%)"
            )
        verb = {"rollback": "Rolled back", "abort": "Aborted", "promote": "Promoted"}[action.kind]
        return f"{verb}{when}: {reason}{effects}"
    status = analysis.status.replace("_", " ")
    at = f" at round {analysis.verdict_round}" if analysis.verdict_round else ""
    return f"{status.capitalize()}, verdict {analysis.verdict}{at}: {reason}{effects}"


def _deciding_effects(analysis: Analysis) -> str:
    """`` — errors: error odds 5.0–6.3x baseline`` for the metrics carrying the verdict."""
    judged = judged_rounds(analysis)
    effects = deciding_effects(analysis.verdict, judged[-1].results) if judged else ""
    return f" — {effects}" if effects else ""


def render_analysis(analysis: Analysis) -> str:
    """The report of one analysis as a self-contained HTML page."""
    rounds = judged_rounds(analysis)
    x_end = max([seconds(analysis, r) for r in rounds] or [1.0])
    x_range = (0.0, max(x_end, 1.0))
    markers = []
    by_index = {r.index: r for r in analysis.rounds}
    for action in analysis.actions:
        row = by_index.get(action.round_index or -1)
        if row is not None:
            markers.append(
                Marker(
                    seconds(analysis, row),
                    f"{action.kind} {action.to_weight}%",
                    ACTION_COLORS.get(action.kind, "#6b7280"),
                )
            )
    decided = by_index.get(analysis.verdict_round or -1)
    if decided is not None and analysis.verdict in ("pass", "fail", "inconclusive"):
        markers.append(
            Marker(
                seconds(analysis, decided),
                f"{analysis.verdict.upper()} decided",
                VERDICT_COLORS[analysis.verdict],
                kind="decision",
            )
        )
    color = VERDICT_COLORS.get(analysis.verdict, "#4b5563")
    body = [
        f"<h1>{escape(analysis.canary)} {_badge(analysis.verdict)}</h1>",
        f'<div class="meta">analysis <code>{escape(analysis.id)}</code> · status '
        f"<b>{escape(analysis.status)}</b> · judge {escape(analysis.judge)} · source "
        f"{escape(analysis.source)} · revision {escape(analysis.revision or '-')} · started "
        f"{analysis.started_at:%Y-%m-%d %H:%M:%S} UTC · {len(rounds)} rounds</div>",
        f'<div class="headline" style="border-color:{color}">{escape(headline(analysis))}</div>',
    ]
    items = [f"<li>{escape(r)}</li>" for row in rounds[-1:] for r in row.reasons]
    for row in rounds[-1:]:
        for result in row.results:
            words = describe_metric(
                result.metric, result.verdict, result.statistics, result.reasons
            )
            notes = "".join(f"<br><small>{escape(n)}</small>" for n in words.notes)
            items.append(
                f'<li class="metric-words"><b>{escape(words.metric)}</b> '
                f"{escape(words.verdict)} — {escape(words.summary)}{notes}</li>"
            )
    if items:
        body.append(f'<ul class="reasons">{"".join(items)}</ul>')

    weights = [(seconds(analysis, r), float(r.weight)) for r in rounds]
    body.append("<h2>Canary weight and actions</h2>")
    body.append(
        render(
            Chart(
                "canary weight",
                "canary weight %",
                [Series("weight", "#7c3aed", weights, step=True)],
                x_range,
                markers=markers,
                y_range=(0, 100),
                start=analysis.started_at,
                y_unit="%",
                css_class="chart weight",
            )
        )
    )
    for metric in metric_series(analysis):
        body.append(f"<h2>{escape(metric.name)} <small>({escape(metric.kind)})</small></h2>")
        series = [
            Series(
                label,
                COLORS[label.split()[0]],
                points,
                dash=DASHES.get(label.split()[-1], ""),
            )
            for label, points in metric.arms.items()
            if label.split()[0] in COLORS
        ]
        if series:
            body.append(
                render(
                    Chart(
                        f"{metric.name}: canary vs baseline",
                        metric.unit,
                        series,
                        x_range,
                        markers=markers,
                        start=analysis.started_at,
                        css_class="chart observations",
                    )
                )
            )
        if metric.fail_progress or metric.pass_progress:
            body.append(
                render(
                    Chart(
                        f"{metric.name}: evidence toward each decision",
                        "evidence toward decision",
                        [
                            Series("FAIL evidence", VERDICT_COLORS["fail"], metric.fail_progress),
                            Series(
                                "PASS evidence",
                                VERDICT_COLORS["pass"],
                                metric.pass_progress,
                                dash="6 4",
                            ),
                        ],
                        x_range,
                        thresholds=[(100.0, "decides", "#374151")],
                        markers=markers,
                        y_range=(0, 100),
                        start=analysis.started_at,
                        y_unit="%",
                        css_class="chart evidence",
                    )
                )
            )
    scores = [(seconds(analysis, r), r.score) for r in rounds if r.score is not None]
    if scores:
        body.append("<h2>Score</h2>")
        body.append(
            render(
                Chart(
                    "score",
                    "score 0-100",
                    [Series("score", "#0f766e", scores)],
                    x_range,
                    markers=markers,
                    y_range=(0, 100),
                    start=analysis.started_at,
                    css_class="chart score",
                )
            )
        )
    body.append("<h2>Rounds</h2>")
    body.append(_round_table(analysis))
    return _page(f"{analysis.canary} {analysis.id}: {analysis.verdict}", "".join(body))


def _round_table(analysis: Analysis) -> str:
    head = (
        "<tr><th>#</th><th>t</th><th>weight</th><th>decision</th><th>verdict</th>"
        "<th>canary</th><th>baseline</th><th>metrics (raw evidence)</th><th>note</th></tr>"
    )
    rows = []
    for row in analysis.rounds:
        sides = {"canary": [], "baseline": []}
        unreadable = []
        for observation in row.observations:
            try:
                read = stored_observation(observation.delta)
            except ValueError as exc:
                unreadable.append(f"{observation.metric} {observation.arm} unreadable: {exc}")
                continue
            if isinstance(read, Counts):
                text = f"{observation.metric} {read.failed}/{read.total}"
            elif isinstance(read, Histogram):
                text = f"{observation.metric} n={read.total}"
            else:
                text = f"{observation.metric} {'-' if read is None else f'{read:g}'}"
            sides.setdefault(observation.arm, []).append(escape(text))
        metrics = "<br>".join(
            f"{escape(r.metric)}: {escape(r.verdict)}"
            + (f" <small>({escape(raw)})</small>" if (raw := raw_evidence(r.statistics)) else "")
            for r in row.results
        )
        note = row.error or ("warm-up: counter snapshot only" if row.index == 0 else "")
        note = "; ".join([note, *unreadable] if note else unreadable)
        rows.append(
            f'<tr class="round"><td class="num">{row.index}</td>'
            f'<td class="num">{fmt_seconds(seconds(analysis, row))}</td>'
            f'<td class="num">{row.weight}%</td><td>{escape(row.decision or "-")}</td>'
            f"<td>{escape(row.verdict)}</td><td>{'<br>'.join(sides['canary'])}</td>"
            f"<td>{'<br>'.join(sides['baseline'])}</td><td>{metrics}</td>"
            f"<td>{escape(note)}</td></tr>"
        )
    return f'<div class="scroll"><table class="rounds">{head}{"".join(rows)}</table></div>'


def render_index(
    analyses: Sequence[Analysis],
    *,
    status: str | None = None,
    link: Callable[[str], str] = lambda analysis_id: f"/analyses/{analysis_id}",
    filter_link: Callable[[str | None], str] = lambda s: (
        f"/analyses?status={s}" if s else "/analyses"
    ),
) -> str:
    """The list of analyses, newest first, with links to filter by status."""
    filters = [f'<a href="{escape(filter_link(None))}">all</a>']
    filters += [f'<a href="{escape(filter_link(s))}">{s.replace("_", " ")}</a>' for s in STATUSES]
    rows = []
    for analysis in analyses:
        rows.append(
            f'<tr class="analysis"><td><a href="{escape(link(analysis.id))}">'
            f"{escape(analysis.id)}</a></td><td>{escape(analysis.canary)}</td>"
            f"<td>{escape(analysis.status)}</td><td>{_badge(analysis.verdict)}</td>"
            f'<td class="num">{analysis.rounds_done}</td>'
            f"<td>{analysis.started_at:%Y-%m-%d %H:%M:%S}</td>"
            f"<td>{escape(analysis.reason or '')}</td></tr>"
        )
    title = f"canary analyses{f' ({status})' if status else ''}"
    body = (
        f"<h1>{escape(title)}</h1><nav>{''.join(filters)}</nav>"
        "<table><tr><th>analysis</th><th>canary</th><th>status</th><th>verdict</th>"
        "<th>rounds</th><th>started (UTC)</th><th>reason</th></tr>"
        f"{''.join(rows)}</table>"
    )
    return _page(title, body)
