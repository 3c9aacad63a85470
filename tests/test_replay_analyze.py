"""`canary analyze` against a backfilled Prometheus, then `canary replay` of what it stored.

Uses the session's backfilled Prometheus of the scenarios in tests/metrics_scenarios.py
(`backfilled_scenarios` in conftest.py: real Prometheus 2.42, OpenMetrics loaded with
promtool).
"""

from __future__ import annotations

import json

import pytest
from metrics_scenarios import BOUNDARIES, iso, write_config

from canary.cli import main


@pytest.mark.parametrize("judge", ["sequential", "mann_whitney"])
def test_replay_reproduces_canary_analyze(
    backfilled_scenarios, migrated_url, tmp_path, capsys, judge
) -> None:  # type: ignore[no-untyped-def]
    server, _ = backfilled_scenarios
    made = []
    for namespace in ("worse", "resets", "restart", "gaps"):
        config = write_config(tmp_path / f"{namespace}.toml", server.url, namespace, judge)
        for interval in ("2m", "60s"):
            code = main(
                [
                    "--config", config, "--database-url", migrated_url,
                    "analyze", "--canary", "shop", "--interval", interval, "--json",
                    "--from", iso(BOUNDARIES[0]), "--to", iso(BOUNDARIES[-1]),
                ]
            )  # fmt: skip
            out = json.loads(capsys.readouterr().out)
            assert code in (0, 1)
            made.append((out["analysis_id"], out["verdict"], out["round"]))
    assert "fail" in {verdict for _, verdict, _ in made}

    for analysis_id, verdict, _ in made:
        code = main(["--database-url", migrated_url, "replay", analysis_id, "--json"])
        body = json.loads(capsys.readouterr().out)
        assert code == (1 if verdict == "fail" else 0)  # as `canary analyze` exits
        assert body["source"] == "analyze" and body["judge"] == judge
        assert body["differences"] == [], (analysis_id, body["differences"])
        assert body["replayed"]["verdict"] == verdict
        assert body["replayed"] == body["recorded"]

    code = main(["--database-url", migrated_url, "replay", "--all", "--json"])
    summary = json.loads(capsys.readouterr().out)["configurations"]
    assert summary[1]["analyses"] == len(made) and summary[1]["decisions_changed"] == 0

    # history, show, export and import work on what `canary analyze` stored
    assert main(["--database-url", migrated_url, "history", "--json"]) == 0
    listed = {row["id"] for row in json.loads(capsys.readouterr().out)}
    assert listed == {analysis_id for analysis_id, _, _ in made}
    analysis_id = made[0][0]
    assert main(["--database-url", migrated_url, "show", analysis_id, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["source"] == "analyze" and shown["rounds"][1]["observations"]["errors"]
    export = tmp_path / "export.json"
    ids = [analysis_id for analysis_id, _, _ in made]
    assert main(["--database-url", migrated_url, "export", *ids, "--out", str(export)]) == 0
    laptop = f"sqlite:///{tmp_path / 'laptop.db'}"
    assert main(["--database-url", laptop, "db", "upgrade"]) == 0
    assert main(["--database-url", laptop, "import", str(export)]) == 0
    capsys.readouterr()
    assert main(["--database-url", laptop, "replay", "--all", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)["configurations"]
    assert summary[1]["analyses"] == len(made) and summary[1]["decisions_changed"] == 0
