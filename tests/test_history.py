"""`canary history` and `canary show` on a store filled by the three paths."""

from __future__ import annotations

import json

import pytest
from replay_helpers import history_database

from canary.cli import main


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    return history_database(tmp_path_factory.mktemp("history"))


def run(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_history_lists_and_filters(store, capsys) -> None:  # type: ignore[no-untyped-def]
    url, ids = store
    code, out, _ = run(capsys, url, "history", "--json")
    assert code == 0
    rows = json.loads(out)
    assert {r["id"] for r in rows} == set(ids.values())
    started = [r["started"] for r in rows]
    assert started == sorted(started, reverse=True)  # newest first
    bad = next(r for r in rows if r["id"] == ids["bad"])
    assert bad["verdict"] == "fail" and bad["status"] == "rolled_back"
    assert bad["rounds"] > 0 and bad["revision"] == "v2" and "errors" in bad["reason"]

    code, out, _ = run(capsys, url, "history", "--verdict", "fail", "--json")
    assert {r["id"] for r in json.loads(out)} == {ids["bad"], ids["argo_bad"]}
    code, out, _ = run(capsys, url, "history", "--canary", "other", "--json")
    assert json.loads(out) == []
    # Everything was started in November 2026 (scripted); --since counts back from now.
    code, out, _ = run(capsys, url, "history", "--since", "1s", "--json")
    assert code == 0

    code, out, _ = run(capsys, url, "history")
    assert code == 0
    for analysis_id in ids.values():
        assert analysis_id in out  # the table is not truncated in a pipe
    assert "rolled_back" in out and "argo" in out and "analyze" in out


def test_history_bad_filters(store, capsys) -> None:  # type: ignore[no-untyped-def]
    url, _ = store
    code, _, err = run(capsys, url, "history", "--since", "soon")
    assert code == 2 and "--since 'soon'" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["--database-url", url, "history", "--verdict", "maybe"])
    assert exit_info.value.code == 2


def test_show_json_round_by_round(store, capsys) -> None:  # type: ignore[no-untyped-def]
    url, ids = store
    code, out, _ = run(capsys, url, "show", ids["bad"], "--json")
    assert code == 0
    detail = json.loads(out)
    assert detail["id"] == ids["bad"] and detail["source"] == "daemon"
    rounds = detail["rounds"]
    assert rounds[0]["warmup"] and rounds[0]["decision"] is None
    first = rounds[1]
    assert set(first["observations"]) == {"errors", "latency"}
    assert set(first["observations"]["errors"]) == {"canary", "baseline"}
    assert first["observations"]["errors"]["canary"]["total"] > 0
    assert first["metrics"]["errors"]["verdict"] == "running"
    assert first["metrics"]["errors"]["evidence"]  # this round's evidence entry
    last = rounds[-1]
    assert last["decision"] == "rollback" and last["metrics"]["errors"]["verdict"] == "fail"
    assert [a["kind"] for a in last["actions"]] == ["rollback"]
    assert last["actions"][0]["toWeight"] == 0
    advances = [r for r in rounds if r["decision"] == "advance"]
    assert advances and all(r["actions"][0]["kind"] == "advance" for r in advances)
    weights = [r["weight"] for r in rounds]
    assert weights[0] == 10 and 20 in weights and weights[-1] == 0
    assert [a["kind"] for a in detail["otherActions"]] == ["start"]


def test_show_text_is_readable(store, capsys) -> None:  # type: ignore[no-untyped-def]
    url, ids = store
    code, out, _ = run(capsys, url, "show", ids["bad"])
    assert code == 0
    assert f"analysis  {ids['bad']}" in out
    assert "round 1 " in out and "weight 10%" in out
    assert "errors   canary" in out and "failed (" in out and "baseline" in out
    assert "p50≤" in out  # latency histogram summarised
    assert ("→ rollback" in out and "action rollback 50→0%" in out) or "→0%" in out
    assert max(len(line) for line in out.splitlines()) < 200

    code, out, _ = run(capsys, url, "show", ids["halted"])
    assert "queries failed: HTTP 503 (no evidence)" in out
    assert "→ hold" in out

    code, out, _ = run(capsys, url, "show", ids["argo_bad"])
    assert code == 0 and "source    argo" in out and "key" in out
