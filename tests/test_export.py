"""`canary export` / `canary import`: between databases, idempotent, all or nothing."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from replay_helpers import history_database

from canary.cli import main
from canary.store.database import connect, migrate

TABLES = ("analyses", "rounds", "observations", "metric_results", "actions")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    return history_database(tmp_path_factory.mktemp("export"))


def run(capsys: pytest.CaptureFixture[str], url: str, *args: str) -> tuple[int, str, str]:
    code = main(["--database-url", url, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def counts(url: str) -> dict[str, int]:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        result = {t: connection.scalar(sa.text(f"SELECT count(*) FROM {t}")) for t in TABLES}
    engine.dispose()
    return result


def _without_row_ids(detail: dict) -> dict:
    for action in [*detail["otherActions"], *(a for r in detail["rounds"] for a in r["actions"])]:
        action.pop("id")
    return detail


def test_export_import_between_databases(store, capsys, tmp_path, migrated_url) -> None:  # type: ignore[no-untyped-def]
    url, ids = store
    out_file = tmp_path / "analyses.json"
    code, out, _ = run(capsys, url, "export", *ids.values(), "--out", str(out_file))
    assert code == 0 and f"exported {len(ids)} analyses" in out
    document = json.loads(out_file.read_text())
    assert document["format"] == "canary-analyses" and document["version"] == 1

    code, out, _ = run(capsys, migrated_url, "import", str(out_file), "--json")
    assert code == 0
    assert sorted(json.loads(out)["imported"]) == sorted(ids.values())
    assert counts(migrated_url) == counts(url)

    # Importing again adds nothing.
    code, out, _ = run(capsys, migrated_url, "import", str(out_file), "--json")
    assert code == 0 and sorted(json.loads(out)["skipped"]) == sorted(ids.values())
    assert counts(migrated_url) == counts(url)

    # Same analyses, round by round, and replay still reproduces them.
    for analysis_id in ids.values():
        _, there, _ = run(capsys, url, "show", analysis_id, "--json")
        _, here, _ = run(capsys, migrated_url, "show", analysis_id, "--json")
        assert _without_row_ids(json.loads(here)) == _without_row_ids(json.loads(there))
        code, out, _ = run(capsys, migrated_url, "replay", analysis_id, "--json")
        body = json.loads(out)
        assert body["reproduced"] is True
        assert code == (1 if body["replayed"]["verdict"] == "fail" else 0)


def test_export_to_stdout_and_import_from_stdin(store, capsys, tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url, ids = store
    code, out, _ = run(capsys, url, "export", ids["good"])
    assert code == 0
    target = f"sqlite:///{tmp_path / 'laptop.db'}"
    migrate(connect(target))
    monkeypatch.setattr("sys.stdin", io.StringIO(out))
    code, out, _ = run(capsys, target, "import", "-")
    assert code == 0 and "imported 1" in out
    assert counts(target)["analyses"] == 1


def test_a_longer_export_replaces_a_shorter_one(store, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url, ids = store
    code, out, _ = run(capsys, url, "export", ids["bad"])
    full = json.loads(out)
    partial = json.loads(out)
    analysis = partial["analyses"][0]
    analysis["rounds"] = analysis["rounds"][:3]
    analysis["rounds_done"] = 2
    target = f"sqlite:///{tmp_path / 'partial.db'}"
    migrate(connect(target))
    (tmp_path / "partial.json").write_text(json.dumps(partial))
    (tmp_path / "full.json").write_text(json.dumps(full))
    assert run(capsys, target, "import", str(tmp_path / "partial.json"))[0] == 0
    assert counts(target)["rounds"] == 3
    code, out, _ = run(capsys, target, "import", str(tmp_path / "full.json"), "--json")
    assert code == 0 and json.loads(out)["replaced"] == [ids["bad"]]
    assert counts(target)["rounds"] == len(full["analyses"][0]["rounds"])
    assert counts(target)["analyses"] == 1


def _broken(document: dict, how: str) -> dict:
    document = json.loads(json.dumps(document))
    if how == "version":
        document["version"] = 2
        document["canaryVersion"] = "9.0.0"
    elif how == "format":
        document["format"] = "something-else"
    elif how == "second-analysis":
        del document["analyses"][1]["rounds"][1]["window_end"]
    elif how == "time":
        document["analyses"][1]["started_at"] = "yesterday"
    elif how == "type":
        document["analyses"][0]["weight"] = "ten"
    elif how == "duplicate":
        document["analyses"].append(document["analyses"][0])
    return document


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("version", "export format version 2 (written by canary 9.0.0) is not supported"),
        ("format", "not a canary export"),
        ("second-analysis", "analyses[1].rounds[1].window_end: required time is missing"),
        ("time", "analyses[1].started_at: expected an ISO 8601 time, got 'yesterday'"),
        ("type", "analyses[0].weight: expected an integer"),
        ("duplicate", "appears twice"),
    ],
)
def test_bad_imports_write_nothing(store, capsys, tmp_path, how, message) -> None:  # type: ignore[no-untyped-def]
    url, ids = store
    _, out, _ = run(capsys, url, "export", ids["good"], ids["bad"])
    target = f"sqlite:///{tmp_path / 'target.db'}"
    migrate(connect(target))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_broken(json.loads(out), how)))
    code, _, err = run(capsys, target, "import", str(bad))
    assert code == 2, err
    assert message in err
    assert counts(target) == dict.fromkeys(TABLES, 0)


MALFORMED = [
    # (what the file says, where, the message) - the values of issue reports from users
    (("rounds", 1, "observations", 0, "delta", "total"), "many", "counts total must be"),
    (("rounds", 1, "observations", 2, "delta", "buckets"), [1, 2], "differ in length"),
    (("rounds", 1, "observations", 0, "arm"), "sideways", "'sideways' is not one of"),
    (("rounds", 1, "observations", 0, "kind"), "banana", "'banana' is not one of"),
    (("rounds", 1, "observations", 0, "delta", "failed"), 10**9, "invalid counts: failed="),
    (("rounds", 1, "observations", 0, "delta", "total"), -5, "non-negative integer"),
    (("rounds", 1, "verdict"), "maybe", "'maybe' is not one of"),
    (("verdict",), "maybe", "'maybe' is not one of"),
    (("settings", "interval"), "fast", "settings.interval"),
    (("id",), "", "id: must not be empty"),
    (("rounds", 1, "weight"), 400, "expected a weight from 0 to 100"),
    (("rounds", 1, "decision"), "yolo", "'yolo' is not one of"),
]


def _set(document: dict, path: tuple, value: object) -> str:
    """Set `value` at `path` in the first analysis; the round's recorded index."""
    target = document["analyses"][0]
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return str(document["analyses"][0]["rounds"][path[1]]["index"]) if path[0] == "rounds" else ""


@pytest.mark.parametrize(("path", "value", "message"), MALFORMED)
def test_malformed_values_are_refused_naming_analysis_round_and_field(
    store, capsys, tmp_path, path, value, message
) -> None:  # type: ignore[no-untyped-def]
    """Validated with the store's and the judges' models: exit 2 naming the analysis,
    the round and the field; nothing written; `show` and `replay --all` keep working."""
    url, ids = store
    _, out, _ = run(capsys, url, "export", ids["bad"], ids["good"])
    document = json.loads(out)
    analysis_id = document["analyses"][0]["id"]
    # round 1's observations: 0 and 1 counts (errors), 2 and 3 histograms (latency)
    document["analyses"][0]["rounds"][1]["observations"].sort(key=lambda o: o["kind"])
    round_index = _set(document, path, value)
    target = f"sqlite:///{tmp_path / 'target.db'}"
    migrate(connect(target))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document))

    code, _, err = run(capsys, target, "import", str(bad))

    assert code == 2, err
    assert message in err
    field = ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")
    assert f"analyses[0].{field}" in err or f"analyses[0].{field.rsplit('.', 1)[0]}" in err
    if path != ("id",):
        assert f"analysis {analysis_id}" in err
    if round_index:
        assert f"round {round_index}" in err
    assert len(err.strip().splitlines()) == 1
    assert counts(target) == dict.fromkeys(TABLES, 0)
    assert run(capsys, target, "replay", "--all", "--json")[0] == 0


def test_import_refuses_a_key_taken_by_another_analysis(store, capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url, ids = store
    _, out, _ = run(capsys, url, "export", ids["argo_bad"], ids["good"])
    document = json.loads(out)
    target = f"sqlite:///{tmp_path / 'target.db'}"
    migrate(connect(target))
    first = tmp_path / "first.json"
    first.write_text(json.dumps(document))
    assert run(capsys, target, "import", str(first))[0] == 0
    before = counts(target)
    document["analyses"][0]["id"] = "checkout-someoneelse"
    second = tmp_path / "second.json"
    second.write_text(json.dumps(document))
    code, _, err = run(capsys, target, "import", str(second))
    assert code == 2 and "already uses in this database" in err
    assert counts(target) == before


def test_unreadable_or_garbage_files(store, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url, _ = store
    code, _, err = run(capsys, url, "import", str(tmp_path / "missing.json"))
    assert code == 2 and "cannot read" in err
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    code, _, err = run(capsys, url, "import", str(garbage))
    assert code == 2 and "not JSON" in err
    code, _, err = run(capsys, url, "export", "nope", "--out", str(tmp_path / "x.json"))
    assert code == 2 and not (tmp_path / "x.json").exists()
