"""Operator operations (`canary.control`) and their CLI commands, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from daemon_stack import canary_entry, config_dict, make_config, write_toml

from canary import control
from canary.cli import main
from canary.errors import ConfigError, NotFoundError, UsageError
from canary.model import AnalysisStatus
from canary.rounds import ensure_analysis
from canary.store.analyses import load_analysis_full

RAW = config_dict(
    "http://127.0.0.1:9",
    "/nonexistent",
    [canary_entry("app"), canary_entry("other", steps=((5, 60), (50, 60)))],
)


@pytest.fixture
def config():  # type: ignore[no-untyped-def]
    return make_config(RAW)


def _actions(sessions, analysis_id: str) -> list[tuple[str, int, str]]:  # type: ignore[no-untyped-def]
    with sessions.begin() as session:
        analysis = load_analysis_full(session, analysis_id)
        return [(a.kind, a.to_weight, a.state) for a in analysis.actions]


def test_start_records_the_first_step_as_a_pending_action(sessions, config) -> None:
    analysis_id = control.start_analysis(sessions, config, "other", revision="v7")
    with sessions.begin() as session:
        analysis = load_analysis_full(session, analysis_id)
        assert analysis.status == "running" and analysis.source == "daemon"
        assert analysis.revision == "v7" and analysis.weight == 5
        assert analysis.engine_state["status"] == "running"
        assert analysis.settings["name"] == "other"  # the whole canary is recorded
    assert _actions(sessions, analysis_id) == [("start", 5, "pending")]


def test_a_canary_has_one_active_analysis_at_a_time(sessions, config) -> None:
    first = control.start_analysis(sessions, config, "app")
    with pytest.raises(UsageError, match=f"already has an active analysis {first}"):
        control.start_analysis(sessions, config, "app")
    control.pause_analysis(sessions, first)
    with pytest.raises(UsageError, match="paused"):
        control.start_analysis(sessions, config, "app")
    control.abort_analysis(sessions, first)
    assert control.start_analysis(sessions, config, "app") != first


def test_unknown_canary_and_analysis_are_clear_errors(sessions, config) -> None:
    with pytest.raises(ConfigError, match=r"no canary named 'nope' .known: app, other"):
        control.start_analysis(sessions, config, "nope")
    with pytest.raises(NotFoundError, match="no analysis with id 'missing'"):
        control.pause_analysis(sessions, "missing")


def test_pause_resume_abort_transitions(sessions, config) -> None:
    analysis_id = control.start_analysis(sessions, config, "app")
    paused = control.pause_analysis(sessions, analysis_id)
    assert paused.status is AnalysisStatus.PAUSED and paused.action_id is None
    with pytest.raises(UsageError, match=r"cannot pause .*only a running analysis"):
        control.pause_analysis(sessions, analysis_id)
    assert control.resume_analysis(sessions, analysis_id).status is AnalysisStatus.RUNNING
    with pytest.raises(UsageError, match="already running"):
        control.resume_analysis(sessions, analysis_id)
    aborted = control.abort_analysis(sessions, analysis_id)
    assert aborted.status is AnalysisStatus.ABORTED and aborted.weight == 0
    assert _actions(sessions, analysis_id)[-1] == ("abort", 0, "pending")
    for op in (control.abort_analysis, control.promote_analysis, control.resume_analysis):
        with pytest.raises(UsageError, match="already aborted"):
            op(sessions, analysis_id)


def test_promote_now_records_a_move_to_100(sessions, config) -> None:
    analysis_id = control.start_analysis(sessions, config, "app")
    promoted = control.promote_analysis(sessions, analysis_id)
    assert promoted.status is AnalysisStatus.PROMOTED and promoted.weight == 100
    assert _actions(sessions, analysis_id)[-1] == ("promote", 100, "pending")


def test_judged_only_analyses_cannot_be_operated(sessions, config) -> None:
    analysis_id = ensure_analysis(sessions, config.canary[0], key="argo-1", source="argo")
    with pytest.raises(UsageError, match=r"judged-only analysis .argo."):
        control.pause_analysis(sessions, analysis_id)


def test_status_lists_every_canary(sessions, config) -> None:
    analysis_id = control.start_analysis(sessions, config, "app")
    rows = {row["canary"]: row for row in control.status(sessions, config)}
    assert rows["other"]["analysis"] is None and not rows["other"]["active"]
    app = rows["app"]["analysis"]
    assert rows["app"]["active"] and app["analysisId"] == analysis_id
    assert app["pendingActions"][0]["kind"] == "start"


def test_cli_commands(
    migrated_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_toml(RAW, tmp_path / "canary.toml")
    base = ["--config", str(path), "--database-url", migrated_url]

    assert main([*base, "start", "app", "--revision", "v2", "--json"]) == 0
    started = json.loads(capsys.readouterr().out)
    analysis_id = started["analysisId"]
    assert main([*base, "pause", analysis_id]) == 0
    assert f"analysis {analysis_id}: paused" in capsys.readouterr().out
    assert main([*base, "pause", analysis_id]) == 2
    assert "only a running analysis can be paused" in capsys.readouterr().err
    assert main([*base, "abort", analysis_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "aborted"
    assert main([*base, "status", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["analysis"]["status"] == "aborted"
    assert main([*base, "status"]) == 0
    table = capsys.readouterr().out
    assert "aborted" in table and "idle" in table
    assert main([*base, "resume", "nope"]) == 2
    assert "no analysis with id 'nope'" in capsys.readouterr().err
