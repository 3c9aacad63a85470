"""Replaying with the recorded configuration reproduces the recorded decisions exactly.

The analyses are written by the real paths: the daemon's round pipeline
(`canary.rounds.daemon_round` with the in-memory router), the Argo web-metric
endpoint (the real app, called the way Argo calls it) and the judged-only pipeline
`canary analyze` uses. Only the numbers are scripted (seeded scenarios) instead of
coming from Prometheus.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from replay_helpers import (
    T0,
    argo_analysis,
    config,
    daemon_analysis,
    judged_analysis,
    scenario,
)

from canary.errors import UsageError
from canary.replay import load_stored, replay, resolve_settings
from canary.rounds import recorded_canary, recorded_settings
from canary.store.database import connect, migrate, sessions
from canary.store.tables import Analysis


def _replayed(url: str, analysis_id: str, **kwargs):  # type: ignore[no-untyped-def]
    with sessions(connect(url))() as session:
        stored = load_stored(session, analysis_id)
    return stored, replay(stored, resolve_settings(stored, **kwargs))


def _counts(url: str) -> dict[str, int]:
    engine = connect(url)
    with engine.connect() as connection:
        return {
            table: connection.scalar(sa.text(f"SELECT count(*) FROM {table}"))
            for table in ("analyses", "rounds", "observations", "metric_results", "actions")
        }


def test_daemon_decisions_are_reproduced(migrated_url: str) -> None:
    made = [
        daemon_analysis(
            migrated_url, scenario(11, 45, rps=150, baseline_errors=0.005, canary_errors=0.005)
        ),
        daemon_analysis(
            migrated_url, scenario(12, 45, rps=100, canary_errors=0.04, regression_from=8)
        ),
        daemon_analysis(
            migrated_url, scenario(13, 45, rps=100, canary_latency=1.6, regression_from=3)
        ),
        # a failed warm-up and failed rounds in a row: the engine halts at its weight
        daemon_analysis(migrated_url, scenario(14, 45, failed_rounds=(0, 4, 7, 8, 9))),
        # scattered failed rounds, then the budget: inconclusive, held
        daemon_analysis(
            migrated_url,
            scenario(15, 45, rps=5, failed_rounds=(2, 6)),
            cfg=config(on_inconclusive="hold", max_duration="15m"),
        ),
        daemon_analysis(
            migrated_url,
            scenario(16, 45, rps=150, baseline_errors=0.005, canary_errors=0.005),
            cfg=config(promotion="no-failure"),
        ),
    ]
    before = _counts(migrated_url)
    ends = set()
    for analysis_id in made:
        stored, result = _replayed(migrated_url, analysis_id)
        ends.add(result.recorded.decision)
        assert result.mode == "engine"
        assert result.differences == [], (analysis_id, result.differences)
        recorded = [(r.index, r.decision) for r in stored.rounds if r.decision is not None]
        assert [(r.index, r.decision) for r in result.rounds] == recorded
        assert result.replayed == result.recorded
        assert result.replayed.verdict == stored.verdict
    assert ends == {"promote", "rollback", "hold"}
    assert _counts(migrated_url) == before  # replay writes nothing


def test_argo_verdicts_are_reproduced(migrated_url: str) -> None:
    made = [
        argo_analysis(migrated_url, scenario(21, 25, canary_errors=0.05, regression_from=5)),
        argo_analysis(
            migrated_url, scenario(22, 12, rps=150, failed_rounds=(3,)), canary_hash="aa11"
        ),
        argo_analysis(
            migrated_url,
            scenario(23, 12, rps=3),
            canary_hash="bb22",
            cfg=config(max_duration="10m"),
        ),
    ]
    verdicts = set()
    for analysis_id in made:
        stored, result = _replayed(migrated_url, analysis_id)
        verdicts.add(stored.verdict)
        assert stored.source == "argo" and result.mode == "verdict"
        assert result.differences == [], (analysis_id, result.differences)
        assert [r.verdict for r in result.rounds] == [
            r.verdict for r in stored.rounds if r.index >= 1
        ]
        assert (result.replayed.verdict, result.replayed.round) == (
            stored.verdict,
            stored.verdict_round,
        )
    assert "fail" in verdicts


def test_judged_window_verdicts_are_reproduced(migrated_url: str) -> None:
    """The judged-only pipeline as `canary analyze` drives it: the window's end is the budget."""
    made = [
        judged_analysis(migrated_url, scenario(31, 10, rps=1), source="analyze"),
        judged_analysis(
            migrated_url,
            scenario(32, 20, canary_errors=0.05, regression_from=4),
            source="analyze",
            start=T0.replace(hour=12),
        ),
    ]
    verdicts = set()
    for analysis_id in made:
        stored, result = _replayed(migrated_url, analysis_id)
        verdicts.add(stored.verdict)
        assert result.differences == []
        assert (result.replayed.verdict, result.replayed.round) == (
            stored.verdict,
            stored.verdict_round,
        )
    assert verdicts == {"inconclusive", "fail"}


@pytest.fixture
def sqlite_url(tmp_path) -> str:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'canary.db'}"
    migrate(connect(url))
    return url


def test_other_settings_show_what_they_would_have_decided(sqlite_url: str) -> None:
    analysis_id = daemon_analysis(
        sqlite_url, scenario(12, 45, rps=100, canary_errors=0.04, regression_from=8)
    )
    _, recorded = _replayed(sqlite_url, analysis_id)
    assert recorded.recorded.decision == "rollback"
    rolled_back_at = recorded.recorded.round
    assert rolled_back_at is not None

    # Far stricter FAIL evidence: the rollback comes later, or not within the data.
    _, strict = _replayed(sqlite_url, analysis_id, overrides=["alpha_fail=0.000001"])
    assert not strict.reproduced
    assert strict.replayed.round is None or strict.replayed.round > rolled_back_at
    first = strict.differences[0]
    assert first.index == rolled_back_at
    assert (first.recorded_decision, first.decision) == ("rollback", "continue")

    # A per-metric override wins over the every-metric one.
    _, same = _replayed(
        sqlite_url, analysis_id, overrides=["alpha_fail=0.000001", "errors.alpha_fail=0.01"]
    )
    assert same.replayed.round == rolled_back_at

    # A configuration file's settings for the canary replace the recorded ones.
    lenient = config(max_duration="3m")
    _, budget = _replayed(sqlite_url, analysis_id, config=lenient)
    assert budget.replayed.round == 3
    assert budget.replayed.verdict == "inconclusive"


def test_bad_overrides_are_refused_with_the_key(sqlite_url: str) -> None:
    analysis_id = daemon_analysis(sqlite_url, scenario(3, 5))
    with sessions(connect(sqlite_url))() as session:
        stored = load_stored(session, analysis_id)
    cases = {
        "nonsense=1": "nonsense",
        "alpha_fail=2": "alpha_fail",
        "nope.margin=2": "no metric named 'nope'",
        "promotion=sometimes": "promotion",
        "max_rounds": "expected KEY=VALUE",
    }
    for item, expected in cases.items():
        with pytest.raises(UsageError, match=expected):
            resolve_settings(stored, overrides=[item])
    with pytest.raises(UsageError, match="unknown judge"):
        resolve_settings(stored, judge="coin_flip")


#: Every key a stored metric carried before metrics were typed per judge: the keys of
#: all three judges, those its judge did not use being null (or ignored).
OLD_METRIC_KEYS = [
    *("name", "kind", "query", "failure_codes", "quantiles"),
    *("alpha_fail", "alpha_pass", "tolerance", "margin", "fail_grid", "pass_grid"),
    *("min_requests", "robust", "robust_cv"),
    *("direction", "critical", "must_have_data", "nan_strategy", "effect_size"),
    *("outlier_strategy", "group"),
    *("min", "max", "failure_limit", "consecutive", "no_data"),
]


def test_an_analysis_stored_in_the_old_settings_form_loads_and_replays(sqlite_url: str) -> None:
    analysis_id = daemon_analysis(
        sqlite_url, scenario(12, 45, rps=100, canary_errors=0.04, regression_from=8)
    )
    engine = connect(sqlite_url)
    with sessions(engine).begin() as session:
        analysis = session.get(Analysis, analysis_id)
        written = recorded_canary(analysis)
        old = dict(analysis.settings)
        old["metrics"] = [
            {key: metric.get(key) for key in OLD_METRIC_KEYS} for metric in old["metrics"]
        ]
        old["metrics"][0]["direction"] = "increase"  # a key the sequential judge ignored
        analysis.settings = old
    with sessions(engine)() as session:
        analysis = session.get(Analysis, analysis_id)
        assert recorded_canary(analysis) == written
        assert recorded_settings(analysis) == written.settings()

    stored, result = _replayed(sqlite_url, analysis_id)
    assert result.reproduced and result.differences == []
    assert result.recorded.decision == "rollback"
    with sessions(engine)() as session:  # reading the old form rewrote nothing stored
        assert session.get(Analysis, analysis_id).settings == old
    # Another judge drops the recorded judge's keys; --set keys are the new judge's.
    limits = ["errors.max=0.02", "latency.max=10000"]
    _, other = _replayed(sqlite_url, analysis_id, judge="threshold", overrides=limits)
    assert other.replayed.verdict == "fail"
    with pytest.raises(UsageError, match=r"direction: not a key of a sequential metric"):
        resolve_settings(stored, overrides=["errors.direction=decrease"])
