"""`canary judge`: JSON and JSON Lines in, verdicts out, clear errors for bad input."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from canary.analysis_json import analysis_to_json, read_analyses
from canary.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def counts(total: int, failed: int) -> dict:
    return {"total": total, "failed": failed}


def analysis(ident: str, canary_failed: int, rounds: int = 3, total: int = 10000) -> dict:
    """Canary `canary_failed` of `total` against baseline 1% of `total`, every round."""
    return {
        "id": ident,
        "metrics": {"errors": {"kind": "counts"}},
        "rounds": [
            {"canary": {"errors": counts(total, canary_failed)},
             "baseline": {"errors": counts(total, total // 100)}}
            for _ in range(rounds)
        ],
    }  # fmt: skip


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["judge", *args])
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------------- happy paths


def test_example_file_fails_with_exit_1_and_explains(capsys):
    code, out, _ = run(capsys, "--input", str(EXAMPLES / "judge-analysis.json"))
    assert code == 1
    assert out.startswith("checkout-v42: FAIL at round")
    # in plain words: the effect with its interval, then the evidence toward the decision
    assert re.search(
        r"errors: fail \(round \d+\): error odds (at least )?\d+\.\d(–\d+(\.\d+)?)?x baseline",
        out,
    )
    assert "FAIL evidence 100% — decided" in out and "e+" not in out
    assert "cpu: " in out and "not judged" in out


def test_json_output_has_the_documented_keys(capsys):
    code, out, _ = run(capsys, "--input", str(EXAMPLES / "judge-analysis.json"), "--json")
    doc = json.loads(out)
    assert code == 1
    assert {"id", "verdict", "round", "metrics", "rounds"} <= set(doc)
    assert doc["id"] == "checkout-v42" and doc["verdict"] == "fail"
    assert doc["metrics"]["errors"]["verdict"] == "fail"
    assert doc["metrics"]["errors"]["round"] == doc["round"]
    # The analysis stops at its verdict: one entry per judged round, the last decides.
    assert len(doc["rounds"]) == doc["round"]
    assert doc["rounds"][-1]["decision"] == "rollback"
    assert all(r["decision"] == "continue" for r in doc["rounds"][:-1])
    assert "log_e_fail" in doc["rounds"][-1]["evidence"]["errors"]
    bounds = doc["metrics"]["latency"]["statistics"]["bounds"]
    assert len(bounds) == 3 and doc["metrics"]["latency"]["statistics"]["warmup_round"] == 1


def test_json_lines_are_answered_line_by_line_in_order(capsys, tmp_path):
    lines = [
        analysis("a-pass", 100, rounds=10),
        analysis("b-fail", 400),
        analysis("c-short", 10, 1, 1000),
    ]
    path = write(tmp_path, "many.txt", "\n".join(json.dumps(a) for a in lines) + "\n")
    code, out, _ = run(capsys, "--input", path)
    answers = [json.loads(line) for line in out.splitlines()]
    assert code == 1
    assert [a["id"] for a in answers] == ["a-pass", "b-fail", "c-short"]
    assert [a["verdict"] for a in answers] == ["pass", "fail", "inconclusive"]
    assert answers[1]["round"] == 2  # the guard waits for a second round with data
    assert answers[2]["round"] == 1  # the last round for inconclusive
    assert answers[2]["rounds"][-1]["decision"] == "rollback"  # on_inconclusive default


def test_backtest_example_is_json_lines(capsys):
    code, out, _ = run(capsys, "--input", str(EXAMPLES / "judge-backtest.jsonl"))
    answers = [json.loads(line) for line in out.splitlines()]
    assert len(answers) == 4
    assert code == (1 if any(a["verdict"] == "fail" for a in answers) else 0)


def test_one_line_jsonl_file_is_still_answered_as_json_lines(capsys, tmp_path):
    path = write(tmp_path, "one.jsonl", json.dumps(analysis("only", 100, rounds=10)) + "\n")
    code, out, _ = run(capsys, "--input", path)
    assert code == 0
    assert len(out.splitlines()) == 1 and json.loads(out)["verdict"] == "pass"


def test_stdin(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(analysis("s", 400))))
    code, out, _ = run(capsys, "--input", "-", "--json")
    assert code == 1 and json.loads(out)["verdict"] == "fail"


# ---------------------------------------------------------------------- --set


def test_set_applies_to_every_metric_and_to_one_metric(capsys, tmp_path):
    path = write(tmp_path, "a.json", json.dumps(analysis("x", 100, rounds=2)))
    _, out, _ = run(capsys, "--input", path, "--json", "--set", "alpha_fail=0.001")
    stats = json.loads(out)["metrics"]["errors"]["statistics"]
    assert stats["fail_threshold"] == pytest.approx(1000.0)
    _, out, _ = run(capsys, "--input", path, "--json", "--set", "errors.margin=2")
    assert json.loads(out)["metrics"]["errors"]["statistics"]["margin"] == 2.0


def test_set_max_rounds_is_the_budget(capsys, tmp_path):
    path = write(tmp_path, "a.json", json.dumps(analysis("x", 10, rounds=10, total=1000)))
    code, out, _ = run(capsys, "--input", path, "--json", "--set", "max_rounds=1")
    doc = json.loads(out)
    assert code == 0
    assert doc["verdict"] == "inconclusive" and doc["round"] == 1 and len(doc["rounds"]) == 1
    # A budget beyond the input leaves the analysis running.
    _, out, _ = run(capsys, "--input", path, "--json", "--set", "max_rounds=50",
                    "--set", "min_requests=100000000")  # fmt: skip
    assert json.loads(out)["verdict"] == "running"


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("nosuch=1", "--set nosuch: unknown setting"),
        ("errors.nosuch=1", "unknown metric setting 'nosuch'"),
        ("alpha_fail=2", "alpha_fail"),
        ("latency.margin=2", "has no metric 'latency'"),
        ("novalue", "expected KEY=VALUE"),
        ("judge=threshold", "use --judge"),
    ],
)
def test_bad_set_exits_2_naming_the_key(capsys, tmp_path, setting, message):
    path = write(tmp_path, "a.json", json.dumps(analysis("x", 100)))
    code, out, err = run(capsys, "--input", path, "--set", setting)
    assert code == 2 and out == ""
    assert message in err


# ---------------------------------------------------------------------- malformed input


def test_malformed_line_names_line_and_field(capsys, tmp_path):
    bad = analysis("b", 100)
    del bad["rounds"][1]["canary"]["errors"]["failed"]
    text = json.dumps(analysis("a", 100)) + "\n" + json.dumps(bad) + "\n"
    code, out, err = run(capsys, "--input", write(tmp_path, "in.jsonl", text))
    assert code == 2 and out == ""
    assert "line 2: rounds[1].canary.errors.failed: required key is missing" in err


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda a: a["rounds"][0]["canary"]["errors"].update(failed=20000),
         "rounds[0].canary.errors.failed: 20000 failed of only 10000 requests"),
        (lambda a: a["rounds"][2]["baseline"]["errors"].update(total=-1),
         "rounds[2].baseline.errors.total: expected a non-negative integer, got -1"),
        (lambda a: a["rounds"][0]["canary"]["errors"].update(total="many"),
         'rounds[0].canary.errors.total: expected a non-negative integer, got "many"'),
        (lambda a: a["metrics"]["errors"].update(kind="gauge"),
         "metrics.errors.kind: expected counts, histogram or value"),
        (lambda a: a["metrics"]["errors"].update(colour="red"),
         "metrics.errors.colour: not a key of a sequential metric"),
        (lambda a: a["rounds"][1]["canary"].update(latency={}),
         "rounds[1].canary.latency: not a metric of this analysis"),
        (lambda a: a.pop("rounds"), "rounds: required"),
        (lambda a: a["rounds"][0].pop("baseline"), "rounds[0].baseline: required key is missing"),
    ],
)  # fmt: skip
def test_malformed_document_names_the_field(capsys, tmp_path, mutate, message):
    doc = analysis("x", 100)
    mutate(doc)
    code, _, err = run(capsys, "--input", write(tmp_path, "in.json", json.dumps(doc, indent=1)))
    assert code == 2
    assert message in err


def test_histogram_errors_name_the_bucket(capsys, tmp_path):
    doc = {
        "metrics": {"latency": {"kind": "histogram", "bounds": [10, 100, "+Inf"]}},
        "rounds": [
            {"canary": {"latency": {"buckets": [5, 3, 9]}},
             "baseline": {"latency": {"buckets": [1, 2, 3]}}}
        ],
    }  # fmt: skip
    code, _, err = run(capsys, "--input", write(tmp_path, "h.json", json.dumps(doc)))
    assert code == 2
    assert "rounds[0].canary.latency.buckets[1]: buckets are cumulative over le" in err
    doc["rounds"][0]["canary"]["latency"]["buckets"] = [1, 2]
    code, _, err = run(capsys, "--input", write(tmp_path, "h.json", json.dumps(doc)))
    assert "rounds[0].canary.latency.buckets: 2 buckets for 3 bounds" in err
    doc["metrics"]["latency"]["bounds"] = [10, 100, 1000]
    code, _, err = run(capsys, "--input", write(tmp_path, "h.json", json.dumps(doc)))
    assert 'metrics.latency.bounds: the last bound must be "+Inf"' in err


def test_invalid_json_names_the_line(capsys, tmp_path):
    text = json.dumps(analysis("a", 100)) + "\n" + json.dumps(analysis("b", 100)) + "\n{oops\n"
    code, _, err = run(capsys, "--input", write(tmp_path, "in.jsonl", text))
    assert code == 2 and "line 3 column 2: invalid JSON" in err
    code, _, err = run(capsys, "--input", write(tmp_path, "doc.json", '{\n  "id": "x",\n  oops\n}'))
    assert code == 2 and "line 3 column 3: invalid JSON" in err


def test_missing_file_and_value_only_analysis(capsys, tmp_path):
    code, _, err = run(capsys, "--input", str(tmp_path / "nope.json"))
    assert code == 2 and "cannot read" in err
    doc = {"id": "v", "metrics": {"cpu": {"kind": "value"}},
           "rounds": [{"canary": {"cpu": 0.5}, "baseline": {"cpu": 0.4}}]}  # fmt: skip
    code, _, err = run(capsys, "--input", write(tmp_path, "v.json", json.dumps(doc)))
    assert code == 2 and "kind value" in err and "threshold" in err


def test_error_rounds_and_missing_arms_are_accepted(capsys, tmp_path):
    doc = analysis("e", 10, rounds=2, total=1000)
    doc["rounds"].insert(1, {"error": "prometheus timed out"})
    code, out, _ = run(capsys, "--input", write(tmp_path, "e.json", json.dumps(doc)), "--json")
    result = json.loads(out)
    assert code == 0
    assert result["rounds"][1]["evidence"]["errors"]["note"].startswith("round error")


def test_analysis_json_round_trip():
    [parsed] = read_analyses((EXAMPLES / "judge-analysis.json").read_text())
    doc = analysis_to_json(parsed.id, parsed.metrics, parsed.rounds)
    [again] = read_analyses(json.dumps(doc))
    assert again.rounds == parsed.rounds
    assert [m.name for m in again.metrics] == ["errors", "latency", "cpu"]


# ---------------------------------------------------------------------- --all-rounds


def _pass_then_regress(pass_rounds: int = 4, bad_rounds: int = 12) -> dict:
    """Equal 1% error rates (a PASS), then the canary at 10% (a FAIL if still judged)."""
    good = {"canary": {"errors": counts(20000, 200)}, "baseline": {"errors": counts(20000, 200)}}
    bad = {"canary": {"errors": counts(20000, 2000)}, "baseline": {"errors": counts(20000, 200)}}
    return {
        "id": "late",
        "metrics": {"errors": {"kind": "counts"}},
        "rounds": [good] * pass_rounds + [bad] * bad_rounds,
    }


def test_all_rounds_reports_the_pass_and_the_later_fail(tmp_path, capsys):
    path = write(tmp_path, "a.json", json.dumps(_pass_then_regress()))
    code, out, _ = run(capsys, "--input", path, "--json")
    first = json.loads(out)
    assert code == 0 and first["verdict"] == "pass"
    assert "pass_round" not in first  # without the flag: stop at the first verdict
    code, out, _ = run(capsys, "--input", path, "--json", "--all-rounds")
    doc = json.loads(out)
    assert code == 1 and doc["verdict"] == "fail"
    assert doc["pass_round"] == first["round"] <= 4
    assert doc["fail_round"] == doc["round"] >= 5
    assert len(doc["rounds"]) == doc["fail_round"]
    code, out, _ = run(capsys, "--input", path, "--all-rounds")
    assert f"passed at round {doc['pass_round']}, failed later at round" in out


def test_all_rounds_without_a_later_fail_keeps_the_pass(tmp_path, capsys):
    path = write(tmp_path, "a.json", json.dumps(_pass_then_regress(bad_rounds=0)))
    code, out, _ = run(capsys, "--input", path, "--json", "--all-rounds")
    doc = json.loads(out)
    assert code == 0 and doc["verdict"] == "pass" and doc["fail_round"] is None
    assert len(doc["rounds"]) == 4


# ---------------------------------------------------------------------- pods


def test_pods_per_arm_are_read_and_written_back(tmp_path, capsys):
    doc = analysis("p", 10, rounds=1)
    doc["rounds"][0]["canary"]["pods"] = {"c-1": {"errors": counts(6000, 6)},
                                          "c-2": {"errors": counts(4000, 4)}}  # fmt: skip
    (parsed,) = read_analyses(json.dumps(doc))
    pods = parsed.rounds[0].pod_observations("canary", "errors")
    assert {p: (o.total, o.failed) for p, o in pods.items()} == {
        "c-1": (6000, 6),
        "c-2": (4000, 4),
    }
    assert parsed.rounds[0].pod_observations("baseline", "errors") == {}
    again = analysis_to_json(parsed.id, parsed.metrics, parsed.rounds)
    assert again["rounds"][0]["canary"]["pods"] == doc["rounds"][0]["canary"]["pods"]
    code, out, _ = run(capsys, "--input", write(tmp_path, "p.json", json.dumps(doc)), "--json")
    assert code in (0, 1) and json.loads(out)["id"] == "p"


@pytest.mark.parametrize(
    ("pods", "message"),
    [
        ({"c-1": {"latency": counts(1, 0)}}, "rounds[0].canary.pods.c-1.latency: not a metric"),
        ({"c-1": {"errors": counts(1, 2)}}, "rounds[0].canary.pods.c-1.errors.failed: 2 failed"),
        ({"c-1": {"errors": counts(1.5, 0)}}, "rounds[0].canary.pods.c-1.errors.total: expected"),
        ([1, 2], "rounds[0].canary.pods: expected"),
    ],
)
def test_bad_pods_are_refused_with_the_field(tmp_path, capsys, pods, message):
    doc = analysis("p", 10, rounds=1)
    doc["rounds"][0]["canary"]["pods"] = pods
    code, _, err = run(capsys, "--input", write(tmp_path, "p.json", json.dumps(doc)))
    assert code == 2
    assert message in err


def test_a_metric_named_pods_is_refused(tmp_path, capsys):
    doc = analysis("p", 10, rounds=1)
    doc["metrics"]["pods"] = {"kind": "counts"}
    code, _, err = run(capsys, "--input", write(tmp_path, "p.json", json.dumps(doc)))
    assert code == 2 and "metrics.pods" in err and "reserved" in err


def test_a_canary_failing_every_one_of_ten_million_requests_fails_at_once(tmp_path, capsys):
    doc = {
        "id": "dead",
        "metrics": {"errors": {"kind": "counts"}},
        "rounds": [
            {"canary": {"errors": counts(10_000_000, 10_000_000)},
             "baseline": {"errors": counts(10_000_000, 100_000)}}
        ] * 2,
    }  # fmt: skip
    code, out, _ = run(capsys, "--input", write(tmp_path, "d.json", json.dumps(doc)), "--json")
    result = json.loads(out)
    assert code == 1 and result["verdict"] == "fail" and result["round"] == 1
    assert result["metrics"]["errors"]["statistics"]["ci_high"] is None  # above the grid


def test_a_key_of_another_judge_is_refused_in_the_input_and_in_set(capsys, tmp_path) -> None:  # type: ignore[no-untyped-def]
    doc = analysis("x", 100)
    doc["metrics"]["errors"]["alpha_fail"] = 0.01
    path = write(tmp_path, "in.json", json.dumps(doc))
    code, _, err = run(capsys, "--input", path, "--judge", "threshold")
    assert code == 2
    assert "metrics.errors.alpha_fail: not a key of a threshold metric" in err
    code, _, err = run(capsys, "--input", path, "--set", "errors.direction=decrease")
    assert code == 2
    assert "errors.direction: not a key of a sequential metric" in err
    assert run(capsys, "--input", path)[0] == 0  # a sequential key on a sequential metric


def test_an_explicit_null_max_duration_judges_untimed_rounds(capsys, tmp_path):
    """max_duration = null sets no time budget, so untimed rounds need none: the input's
    null and `--set max_duration=null` judge as max_rounds alone does."""
    doc = {**analysis("n", 100, rounds=3), "settings": {"max_rounds": 5}}
    code, out, _ = run(capsys, "--input", write(tmp_path, "a.json", json.dumps(doc)), "--json")
    expected = json.loads(out)
    assert code == 0 and expected["verdict"] == "pass"
    doc["settings"]["max_duration"] = None
    given = write(tmp_path, "null.json", json.dumps(doc))
    for extra in ((), ("--set", "max_duration=null")):
        code, out, err = run(capsys, "--input", given, *extra, "--json")
        assert code == 0, err
        assert json.loads(out) == expected
    del doc["settings"]["max_duration"]
    plain = write(tmp_path, "plain.json", json.dumps(doc))
    code, out, err = run(capsys, "--input", plain, "--set", "max_duration=null", "--json")
    assert (code, json.loads(out)) == (0, expected), err


def test_max_duration_ends_timed_rounds_as_the_engine_does(capsys, tmp_path):
    """With the rounds' times, `canary judge --set max_duration=5m` ends the analysis
    where the engine ends it — `canary replay --set max_duration=5m` of the same
    observations recorded by `canary analyze` answers the same; without the times
    a given max_duration is refused, and `--help` says why."""
    from datetime import timedelta

    from replay_helpers import T0, config, judged_analysis, scenario

    from canary.model import RoundData
    from canary.store.database import connect, migrate

    script = scenario(7, 14, canary_errors=0.08, regression_from=8)
    timed = [
        RoundData(
            canary=r.canary,
            baseline=r.baseline,
            start=T0 + timedelta(minutes=index - 1),
            end=T0 + timedelta(minutes=index),
        )
        for index, r in enumerate(script)
        if index >= 1 and r is not None
    ]
    metrics = config().get_canary("checkout").metrics
    path = write(tmp_path, "timed.json", json.dumps(analysis_to_json("timed", metrics, timed)))
    untimed = write(
        tmp_path, "untimed.json", json.dumps(analysis_to_json("u", metrics, script[1:]))
    )

    code, out, _ = run(capsys, "--input", path, "--json")
    whole = json.loads(out)
    assert (code, whole["verdict"]) == (1, "fail") and whole["round"] > 5  # within 1h

    code, out, _ = run(capsys, "--input", path, "--set", "max_duration=5m", "--json")
    judged = json.loads(out)
    assert (code, judged["verdict"], judged["round"]) == (0, "inconclusive", 5)
    assert len(judged["rounds"]) == 5

    url = f"sqlite:///{tmp_path / 'budget.db'}"
    migrate(connect(url))
    analysis_id = judged_analysis(url, script, source="analyze", key="timed")
    code = main(
        ["--database-url", url, "replay", analysis_id, "--set", "max_duration=5m", "--json"]
    )
    replayed = json.loads(capsys.readouterr().out)["replayed"]
    assert (code, replayed["verdict"], replayed["round"]) == (0, "inconclusive", 5)

    code, out, err = run(capsys, "--input", untimed, "--set", "max_duration=5m")
    assert code == 2 and out == ""
    assert "max_duration needs the rounds' times" in err
    with pytest.raises(SystemExit):
        main(["judge", "--help"])
    assert "max_duration=20m needs rounds with times" in " ".join(capsys.readouterr().out.split())
