"""`canary replay` as a user runs it: one analysis, the --all backtest, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import browser as chromium
import pytest
import sqlalchemy as sa
from replay_helpers import history_database

from canary.cli import main


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    return history_database(tmp_path_factory.mktemp("replay-cli"))


def run(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _rows(url: str) -> int:
    with sa.create_engine(url).connect() as connection:
        return sum(
            connection.scalar(sa.text(f"SELECT count(*) FROM {t}"))
            for t in ("analyses", "rounds", "observations", "metric_results", "actions")
        )


def test_replay_one_analysis_json_and_text(store, capsys) -> None:  # type: ignore[no-untyped-def]
    url, ids = store
    before = _rows(url)
    code, out, _ = run(capsys, url, "replay", ids["bad"], "--json")
    assert code == 1  # the replayed verdict is FAIL
    body = json.loads(out)
    assert body["reproduced"] is True and body["differences"] == []
    assert body["recorded"] == body["replayed"]
    assert body["replayed"]["decision"] == "rollback"

    code, out, _ = run(capsys, url, "replay", ids["bad"], "--set", "alpha_fail=0.000001")
    assert code == (1 if "replayed: fail" in out else 0)
    assert "recorded: fail at round" in out
    assert "differ" in out and "rollback" in out and "continue" in out

    code, out, _ = run(capsys, url, "replay", ids["argo_bad"])
    assert code == 1 and "every round reproduced" in out
    assert _rows(url) == before


def test_replay_with_another_judge(store, capsys) -> None:  # type: ignore[no-untyped-def]
    url, ids = store
    code, out, _ = run(capsys, url, "replay", ids["bad"], "--judge", "mann_whitney", "--json")
    body = json.loads(out)
    assert code == (1 if body["replayed"]["verdict"] == "fail" else 0)
    assert body["judge"] == "mann_whitney"
    # The threshold judge needs bounds the recorded metrics do not have ...
    code, _, err = run(capsys, url, "replay", ids["bad"], "--judge", "threshold")
    assert code == 2 and "needs `min`, `max` or both" in err
    # ... and judges with them; a replayed rollout that ends early leaves rounds unreached.
    code, out, _ = run(
        capsys, url, "replay", ids["bad"], "--judge", "threshold", "--set", "max=0.0001"
    )
    assert code == 1
    assert "replayed: fail at round 1, rollback" in out
    assert "were recorded, but the replayed analysis had already ended at round 1" in out


def test_backtest_side_by_side_with_labels(store, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, ids = store
    strict, loose = tmp_path / "strict.toml", tmp_path / "loose.toml"
    strict.write_text(_config(alpha_fail=0.000001))
    loose.write_text(_config(alpha_fail=0.2))
    labels = tmp_path / "labels.txt"
    labels.write_text(
        f"# ground truth\n{ids['good']} good\n{ids['bad']},bad\n{ids['argo_bad']} bad\n"
        f"{ids['analyze_good']} good\n"
    )
    code, out, _ = run(
        capsys,
        url,
        "replay",
        "--all",
        "--config",
        str(strict),
        "--config",
        str(loose),
        "--labels",
        str(labels),
        "--json",
    )
    assert code == 0
    body = json.loads(out)
    assert body["analyses"] == len(ids)
    names = [c["name"] for c in body["configurations"]]
    assert names == ["recorded", str(strict), str(loose)]
    recorded = body["configurations"][0]
    # The recorded outcomes: both regressions were caught, no good one rolled back.
    assert (recorded["good"], recorded["bad"]) == (2, 2)
    assert (recorded["false_rollbacks"], recorded["missed_regressions"]) == (0, 0)
    for config in body["configurations"][1:]:
        results = body["results"][config["name"]]
        assert len(results) == len(ids)
        label = {
            ids["good"]: "good",
            ids["bad"]: "bad",
            ids["argo_bad"]: "bad",
            ids["analyze_good"]: "good",
        }
        stopped = {
            r["analysisId"]
            for r in results
            if r["replayed"]["decision"] == "rollback" or r["replayed"]["verdict"] == "fail"
        }
        assert config["false_rollbacks"] == sum(
            1 for i, v in label.items() if v == "good" and i in stopped
        )
        assert config["missed_regressions"] == sum(
            1 for i, v in label.items() if v == "bad" and i not in stopped
        )
    strict_summary = body["configurations"][1]
    assert strict_summary["decisions_changed"] >= 1  # stricter evidence: later or no rollback

    code, out, _ = run(capsys, url, "replay", "--all", "--labels", str(labels))
    assert code == 0
    for words in ("false rollbacks", "missed regressions", "median time to decision", "recorded"):
        assert words in out


def _config(alpha_fail: float) -> str:
    return f"""
[defaults]
max_duration = "40m"
steps = [{{weight = 10, duration = "5m"}}, {{weight = 20, duration = "5m"}},
         {{weight = 50, duration = "10m"}}]

[[defaults.metrics]]
name = "errors"
kind = "counts"
min_requests = 500
alpha_fail = {alpha_fail}

[[defaults.metrics]]
name = "latency"
kind = "histogram"
alpha_fail = {alpha_fail}
"""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "checkout-nope"], "no analysis with id 'checkout-nope'"),
        (["replay"], "give one analysis ID, or --all"),
        (["replay", "--all", "--set", "colour=blue"], "--set colour: unknown setting"),
        (["replay", "--all", "--set", "alpha_fail=7"], "alpha_fail"),
        (["replay", "--all", "--judge", "coin"], "unknown judge"),
        (["replay", "--all", "--since", "a while"], "--since 'a while'"),
        (["replay", "--all", "--labels", "/nonexistent/labels"], "cannot read"),
        (["replay", "--all", "--config", "/nonexistent.toml"], "cannot read"),
        (["show", "nope"], "no analysis with id 'nope'"),
        (["export", "nope"], "no analysis with id 'nope'"),
    ],
)
def test_bad_input_exits_2_with_a_message(store, capsys, args, message) -> None:  # type: ignore[no-untyped-def]
    url, _ = store
    code, out, err = run(capsys, url, *args)
    assert code == 2, (out, err)
    assert message in err
    assert "Traceback" not in err


def test_bad_labels_name_the_line(store, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, ids = store
    labels = tmp_path / "labels.txt"
    labels.write_text(f"{ids['good']} good\n{ids['bad']} terrible\n")
    code, _, err = run(capsys, url, "replay", "--all", "--labels", str(labels))
    assert code == 2
    assert "line 2" in err and "good or bad" in err


def test_backtest_in_worker_processes_matches_one_process(store) -> None:  # type: ignore[no-untyped-def]
    from canary.replay import backtest

    url, ids = store
    order = sorted(ids.values())
    configs = [("replayed", None)]
    seen: list[int] = []
    one = backtest(url, order, configs, workers=1, progress=seen.append)
    two = backtest(url, order, configs, workers=2, chunk=2, progress=seen.append)
    assert [r.analysis_id for r in two.results["replayed"]] == order  # order kept
    assert two.results == one.results
    assert all(r.reproduced for r in two.results["replayed"])
    assert sum(seen) == 2 * len(order)


def test_a_shorter_budget_ends_every_source_at_the_budget(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    """`replay --set max_rounds=5` of an analysis recorded by `canary analyze` (or the
    Argo endpoint) that failed at a later round answers what `canary judge` with the
    same budget answers on the same observations: inconclusive at round 5."""
    from replay_helpers import config, judged_analysis, scenario

    from canary.analysis_json import analysis_to_json

    url = f"sqlite:///{tmp_path / 'budget.db'}"
    assert main(["--database-url", url, "db", "upgrade"]) == 0
    script = scenario(7, 14, canary_errors=0.08, regression_from=8)
    ids = {
        source: judged_analysis(url, script, source=source, key=source)
        for source in ("analyze", "argo")
    }
    capsys.readouterr()
    metrics = config().get_canary("checkout").metrics
    judge_input = tmp_path / "rounds.json"
    judge_input.write_text(json.dumps(analysis_to_json("same", metrics, script[1:])))
    code, out, _ = run(
        capsys, url, "judge", "--input", str(judge_input), "--set", "max_rounds=5", "--json"
    )
    judged = json.loads(out)
    assert (code, judged["verdict"], judged["round"]) == (0, "inconclusive", 5)

    for source, analysis_id in ids.items():
        code, out, _ = run(capsys, url, "replay", analysis_id, "--json")
        recorded = json.loads(out)["recorded"]
        assert recorded["verdict"] == "fail" and recorded["round"] > 5, source
        assert code == 1  # a replayed FAIL exits 1, as `analyze` and `judge` do

        code, out, _ = run(capsys, url, "replay", analysis_id, "--set", "max_rounds=5", "--json")
        body = json.loads(out)
        assert code == 0, source
        assert (body["replayed"]["verdict"], body["replayed"]["round"]) == ("inconclusive", 5)
        later = [r for r in body["rounds"] if r["round"] > 5]
        assert later and all(r["replayedVerdict"] is None for r in later), source


def _copy(url: str, path: Path) -> str:
    """A copy of the SQLite store (through SQLite's backup, so a WAL is included)."""
    import sqlite3

    source = sqlite3.connect(url.removeprefix("sqlite:///"))
    target = sqlite3.connect(path)
    source.backup(target)
    source.close()
    target.close()
    return f"sqlite:///{path}"


def _dump(url: str) -> list[str]:
    import sqlite3

    connection = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


def test_backtest_reports_malformed_stored_analyses_and_replays_the_others(  # type: ignore[no-untyped-def]
    store, capsys, tmp_path: Path
) -> None:
    """Stored values that no longer validate — a recorded setting, the engine state,
    one round's observation, a time SQLite holds as text — stop neither `replay --all`
    nor a `--set` backtest: every other analysis is replayed, each bad one is named on
    stderr with the field and round, the exit code is 3, and nothing stored changes."""
    url, ids = store
    url = _copy(url, tmp_path / "malformed.db")
    with sa.create_engine(url).begin() as connection:
        connection.execute(
            sa.text(
                "UPDATE analyses SET settings = json_set(settings, '$.interval', 'fast') "
                "WHERE id = :id"
            ),
            {"id": ids["good"]},
        )
        connection.execute(
            sa.text(
                "UPDATE analyses SET engine_state = "
                "json_set(engine_state, '$.started_at', 'yesterday') WHERE id = :id"
            ),
            {"id": ids["bad"]},
        )
        connection.execute(
            sa.text(
                "UPDATE observations SET delta = json_set(delta, '$.total', 'many') "
                "WHERE kind = 'counts' AND arm = 'canary' AND round_id = "
                '(SELECT id FROM rounds WHERE analysis_id = :id AND "index" = 3)'
            ),
            {"id": ids["argo_bad"]},
        )
        connection.execute(
            sa.text(
                "UPDATE rounds SET window_end = 'garbage' WHERE analysis_id = :id AND \"index\" = 2"
            ),
            {"id": ids["halted"]},
        )
    before = _dump(url)
    expected = {
        ids["good"]: "settings.interval: invalid duration 'fast'",
        ids["bad"]: "engine_state.started_at: expected an ISO 8601 time, got 'yesterday'",
        ids["argo_bad"]: "round 3, observation 'errors' (canary) delta: counts total must be "
        "a non-negative integer, got 'many'",
        ids["halted"]: "rounds.window_end: a value cannot be read",
    }

    for extra in ([], ["--set", "max_rounds=5"]):
        code, out, err = run(capsys, url, "replay", "--all", *extra, "--json")
        assert code == 3, extra
        body = json.loads(out)
        assert [r["analysisId"] for r in body["results"]["replayed"]] == [ids["analyze_good"]]
        lines = err.strip().splitlines()
        assert len(lines) == len(expected), err
        for analysis_id, problem in expected.items():
            assert any(f"analysis {analysis_id}: {problem}" in line for line in lines), err

    code, out, err = run(capsys, url, "replay", "--all")
    assert code == 3
    assert ids["analyze_good"] in out and "not replayed" in out  # the summary counts them
    assert all(f"not replayed: analysis {i}" in err for i in expected), err
    code, _, err = run(capsys, url, "replay", ids["argo_bad"])
    assert code == 3 and expected[ids["argo_bad"]] in err and "internal error" not in err

    # `show` and the report, where one looks next, show the rest and name what is wrong.
    code, out, _ = run(capsys, url, "show", ids["argo_bad"])
    (line,) = [line for line in out.splitlines() if "unreadable" in line]
    assert code == 0 and "canary unreadable: counts total must be a non-negative integer" in line
    page_file = tmp_path / "argo_bad.html"
    code, _, _ = run(capsys, url, "report", ids["argo_bad"], "--out", str(page_file))
    page = chromium.load(page_file.as_uri())
    assert code == 0 and page.console == []
    assert "errors canary unreadable: counts total must be a non-negative integer" in page.dom
    for command in (["show", ids["halted"]], ["report", ids["halted"], "--out", str(page_file)]):
        code, _, err = run(capsys, url, *command)
        assert code == 3 and expected[ids["halted"]] in err and "internal error" not in err
    assert _dump(url) == before
