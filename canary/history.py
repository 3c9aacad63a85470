"""Stored analyses as plain data for `canary history` and `canary show` (JSON or tables).

`history_rows` lists analyses (one query); `analysis_detail` gives one analysis round
by round — weights, per-arm observations, per-metric verdicts and evidence,
decisions and the actions taken — with the rounds, observations, results and
actions loaded in four queries (selectinload), not one per round.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from canary.model import Counts, Histogram, Verdict, stored_observation
from canary.store.analyses import list_analyses, load_analysis_full
from canary.store.database import Session
from canary.store.reads import latest_judged_rounds
from canary.store.tables import Analysis, Round
from canary.verdict_words import MetricWords, describe_metric

__all__ = [
    "analysis_detail",
    "describe_observation",
    "history_rows",
    "latest_words",
]


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _duration(analysis: Analysis) -> float | None:
    end = analysis.finished_at or analysis.updated_at
    if end is None or analysis.started_at is None:
        return None
    return max(0.0, (end - analysis.started_at).total_seconds())


def history_rows(
    session: Session,
    *,
    canary: str | None = None,
    since: datetime | None = None,
    verdict: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Analyses newest first: id, canary, revision, started, duration, rounds, verdict ..."""
    if verdict is not None:
        Verdict(verdict)  # ValueError for an unknown verdict; the CLI validates first
    rows = list_analyses(session, canary=canary, since=since, verdict=verdict, limit=limit)
    return [
        {
            "id": a.id,
            "canary": a.canary,
            "revision": a.revision,
            "source": a.source,
            "judge": a.judge,
            "status": a.status,
            "started": _iso(a.started_at),
            "finished": _iso(a.finished_at),
            "durationSeconds": _duration(a),
            "rounds": a.rounds_done,
            "verdict": a.verdict,
            "verdictRound": a.verdict_round,
            "weight": a.weight,
            "reason": a.reason,
        }
        for a in rows
    ]


def latest_words(session: Session, analysis_ids: list[str]) -> dict[str, list[MetricWords]]:
    """Per analysis, its latest judged round's metrics in plain words (two queries)."""
    rows = latest_judged_rounds(session, analysis_ids)
    return {
        row.analysis_id: [
            describe_metric(r.metric, r.verdict, r.statistics, r.reasons) for r in row.results
        ]
        for row in rows
    }


def _round_detail(row: Round, actions: list[dict[str, Any]]) -> dict[str, Any]:
    observations: dict[str, dict[str, Any]] = {}
    counters: dict[str, dict[str, Any]] = {}
    for observation in row.observations:
        observations.setdefault(observation.metric, {})[observation.arm] = observation.delta
        if observation.snapshot is not None:
            counters.setdefault(observation.metric, {})[observation.arm] = observation.snapshot
    results = {
        result.metric: {
            "verdict": result.verdict,
            "verdictRound": result.verdict_round,
            "reasons": list(result.reasons or []),
            "statistics": result.statistics or {},
            "evidence": result.evidence or {},
        }
        for result in row.results
    }
    return {
        "round": row.index,
        "warmup": row.index == 0,
        "windowStart": _iso(row.window_start),
        "windowEnd": _iso(row.window_end),
        "recordedAt": _iso(row.recorded_at),
        "weight": row.weight,
        "step": row.step,
        "error": row.error,
        "verdict": row.verdict,
        "decision": row.decision,
        "score": row.score,
        "reasons": list(row.reasons or []),
        "observations": observations,
        # The raw per-series counters Prometheus returned at the round's end (audit).
        "counters": counters,
        "metrics": results,
        "actions": actions,
    }


def _action(action: Any) -> dict[str, Any]:
    return {
        "id": action.id,
        "round": action.round_index,
        "kind": action.kind,
        "fromWeight": action.from_weight,
        "toWeight": action.to_weight,
        "state": action.state,
        "error": action.error,
        "created": _iso(action.created_at),
        "done": _iso(action.done_at),
    }


def analysis_detail(session: Session, analysis_id: str) -> dict[str, Any]:
    """One analysis round by round; NotFoundError (exit 2) for an unknown id."""
    analysis = load_analysis_full(session, analysis_id)
    actions = [_action(a) for a in analysis.actions]
    by_round: dict[int | None, list[dict[str, Any]]] = {}
    for action in actions:
        by_round.setdefault(action["round"], []).append(action)
    return {
        "id": analysis.id,
        "canary": analysis.canary,
        "key": analysis.key,
        "revision": analysis.revision,
        "source": analysis.source,
        "judge": analysis.judge,
        "status": analysis.status,
        "verdict": analysis.verdict,
        "verdictRound": analysis.verdict_round,
        "reason": analysis.reason,
        "weight": analysis.weight,
        "step": analysis.step,
        "started": _iso(analysis.started_at),
        "updated": _iso(analysis.updated_at),
        "finished": _iso(analysis.finished_at),
        "durationSeconds": _duration(analysis),
        "settings": analysis.settings,
        "rounds": [_round_detail(r, by_round.get(r.index, [])) for r in analysis.rounds],
        # Actions not tied to a round: the start, and operators' pause/resume/abort/promote.
        "otherActions": by_round.get(None, []),
    }


def _quantile_bound(bounds: list[Any], buckets: list[int], q: float) -> str:
    total = buckets[-1] if buckets else 0
    if total == 0:
        return "-"
    for bound, count in zip(bounds, buckets, strict=False):
        if count >= q * total:
            return "+Inf" if bound in ("+Inf", math.inf) else f"{float(bound):g}"
    return "+Inf"


def describe_observation(delta: Mapping[str, Any] | None) -> str:
    """One arm's delta in a few words: ``3/1,000 failed (0.30%)``, ``n=950 p50≤25 p99≤250``;
    ``unreadable: ...`` for a stored value that is not an observation."""
    try:
        observation = stored_observation(delta)
    except ValueError as exc:
        return f"unreadable: {exc}"
    if observation is None:
        return "no data"
    if isinstance(observation, Counts):
        total, failed = observation.total, observation.failed
        rate = f" ({100 * failed / total:.2f}%)" if total else ""
        return f"{failed:,}/{total:,} failed{rate}"
    if isinstance(observation, Histogram):
        bounds, buckets = list(observation.bounds), list(observation.buckets)
        total = buckets[-1] if buckets else 0
        if total == 0:
            return "n=0"
        p50 = _quantile_bound(bounds, buckets, 0.5)
        p99 = _quantile_bound(bounds, buckets, 0.99)
        return f"n={total:,} p50≤{p50} p99≤{p99}"
    return f"{observation:g}"
