"""Configuration: the example loads, and every kind of mistake names its key path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from canary.config import load_config, parse_config, parse_duration
from canary.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

CANARY = {
    "name": "checkout",
    "namespace": "shop",
    "traffic": {
        "virtual_service": "checkout",
        "canary": {"host": "checkout", "subset": "canary"},
        "stable": {"host": "checkout", "subset": "stable"},
    },
    "arms": {
        "canary": {"match": {"destination_workload": "checkout-canary"}},
        "baseline": {"match": {"destination_workload": "checkout-primary"}},
    },
}


def problems(raw: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return dict(info.value.problems)


def test_example_file_loads_with_every_section() -> None:
    config = load_config(ROOT / "config.example.toml")
    assert [c.name for c in config.canary] == ["checkout", "search"]
    checkout = config.get_canary("checkout")
    assert checkout.interval == 30.0  # its own value
    assert checkout.max_duration == 3600.0  # inherited from [defaults]
    assert [s.weight for s in checkout.steps] == [5, 25, 50]
    assert [m.name for m in checkout.metrics] == ["errors", "latency"]
    assert config.get_canary("search").judge == "threshold"
    assert config.prometheus.headers == {"X-Scope-OrgID": "team-a"}


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("2m", 120), ("1h30m", 5400), ("500ms", 0.5), (45, 45), ("1d", 86400)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "2 minutes", "-1s", "m", True])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_unknown_keys_are_errors_with_paths() -> None:
    found = problems({"prometheus": {"urll": "http://x"}, "canary": [{**CANARY, "stpes": []}]})
    assert found["prometheus.urll"] == "unknown key"
    assert found["canary[0].stpes"] == "unknown key"


def test_step_weight_out_of_range_names_the_step() -> None:
    steps = [{"weight": 10, "duration": "1m"}, {"weight": 20, "duration": "1m"}]
    steps.append({"weight": 150, "duration": "1m"})
    found = problems({"canary": [CANARY, {**CANARY, "name": "other", "steps": steps}]})
    assert "less than or equal to 100" in found["canary[1].steps[2].weight"]


def test_missing_required_keys_and_wrong_types() -> None:
    broken = {k: v for k, v in CANARY.items() if k != "traffic"}
    found = problems({"canary": [{**broken, "interval": [1]}], "server": {"listen": "nope"}})
    assert found["canary[0].traffic"] == "required key is missing"
    assert "duration" in found["canary[0].interval"]
    assert "HOST:PORT" in found["server.listen"]


def test_defaults_are_validated_under_their_own_path() -> None:
    found = problems({"defaults": {"promotion": "yolo"}, "canary": [CANARY]})
    assert list(found) == ["defaults.promotion"]


def test_invalid_label_names_and_regexes_are_rejected() -> None:
    arms = {"canary": {"match": {"bad-label": "x"}}, "baseline": {"match": {"a": "b"}}}
    metrics = [{"name": "errors", "failure_codes": "5(("}]
    found = problems({"canary": [{**CANARY, "arms": arms, "metrics": metrics}]})
    assert "invalid Prometheus label name" in found["canary[0].arms.canary"]
    assert "regular expression" in found["canary[0].metrics[0].failure_codes"]


def test_duplicate_names_and_decreasing_steps() -> None:
    steps = [{"weight": 50, "duration": "1m"}, {"weight": 20, "duration": "1m"}]
    found = problems({"canary": [CANARY, {**CANARY, "steps": steps}]})
    assert "increase" in found["canary[1].steps"]
    found = problems({"canary": [CANARY, CANARY]})
    assert "duplicate canary names: checkout" in found["canary"]


def test_malformed_toml_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[prometheus]\nurl = "http://x"\ntimeout = \n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "line 3" in str(info.value) and "column" in str(info.value)


def test_secrets_come_from_files_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "tokens"
    token_file.write_text("one\ntwo\n")
    config = parse_config({"server": {"api_token_file": str(token_file)}})
    assert config.server.api_tokens() == ["one", "two"]
    monkeypatch.setenv("CANARY_DATABASE_URL", "postgresql+psycopg://u@db/canary")
    assert parse_config({}).database.resolved_url() == "postgresql+psycopg://u@db/canary"
    monkeypatch.delenv("CANARY_DATABASE_URL")
    monkeypatch.setenv("CANARY_DATA_DIR", str(tmp_path))
    assert parse_config({}).database.resolved_url() == f"sqlite:///{tmp_path / 'canary.db'}"


def test_example_file_documents_every_key() -> None:
    """Every configuration key appears in config.example.toml (set or commented out)."""
    from pydantic import BaseModel

    from canary.config import CanaryConfig, Config

    text = (ROOT / "config.example.toml").read_text()
    written = set(re.findall(r"^#?\s*([a-z_]+)\s*=", text, re.M))
    written |= set(re.findall(r"[{,]\s*([a-z_]+)\s*=", text))
    written |= set(re.findall(r"^\[+([a-z_.]+)\]+", text, re.M))
    written = {part for key in written for part in key.split(".")}

    missing = []

    def models(annotation: object) -> list[type[BaseModel]]:
        """The models in an annotation (inside lists, unions, Annotated ...)."""
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            return [annotation]
        inner = (*getattr(annotation, "__args__", ()), getattr(annotation, "__origin__", None))
        return [model for arg in inner if arg is not annotation for model in models(arg)]

    def walk(model: type[BaseModel], path: str) -> None:
        for name, field in model.model_fields.items():
            if name not in written:
                missing.append(f"{path}{name}")
            for inner in models(field.annotation):
                walk(inner, f"{path}{name}.")

    walk(Config, "")
    walk(CanaryConfig, "canary.")
    assert sorted(set(missing)) == []


def test_robustness_keys_are_per_metric_and_validated() -> None:
    metrics = [
        {"name": "errors", "robust": "sometimes"},
        {"name": "latency", "kind": "histogram", "robust_cv": -0.5},
    ]
    found = problems({"canary": [{**CANARY, "metrics": metrics}]})
    assert "canary[0].metrics[0].robust" in found
    assert "greater than or equal to 0" in found["canary[0].metrics[1].robust_cv"]
    ok = [{"name": "errors", "robust": False, "robust_cv": 0.3}]
    metric = parse_config({"canary": [{**CANARY, "metrics": ok}]}).canary[0].metrics[0]
    assert (metric.robust, metric.robust_cv) == (False, 0.3)


def test_a_metric_takes_the_keys_of_its_analysis_judge_only() -> None:
    sequential = [{"name": "errors", "alpha_fail": 0.01, "direction": "increase"}]
    found = problems({"canary": [{**CANARY, "metrics": sequential}]})
    assert found == {
        "canary[0].metrics[0].direction": (
            "not a key of a sequential metric (a key of mann_whitney metrics)"
        )
    }
    threshold = [{"name": "errors", "max": 0.02, "min_requests": 10}, {"name": "cpu", "bogus": 1}]
    found = problems({"canary": [{**CANARY, "judge": "threshold", "metrics": threshold}]})
    assert found == {
        "canary[0].metrics[0].min_requests": (
            "not a key of a threshold metric (a key of sequential metrics)"
        ),
        "canary[0].metrics[1].bogus": "not a key of a threshold metric",
    }
    # The judge is the analysis's: a metric cannot name another.
    chosen = [{"name": "errors", "judge": "threshold", "max": 0.02}]
    found = problems({"canary": [{**CANARY, "metrics": chosen}]})
    assert "judge is chosen for the whole analysis" in found["canary[0]"]


def test_a_canary_with_another_judge_does_not_inherit_metrics_of_the_default_judge() -> None:
    raw = {
        "defaults": {"metrics": [{"name": "errors", "alpha_fail": 0.01}]},
        "canary": [{**CANARY, "judge": "mann_whitney"}],
    }
    # Named where it is written, with the canary that inherits it.
    assert problems(raw) == {
        "defaults.metrics[0].alpha_fail": (
            "not a key of a mann_whitney metric (a key of sequential metrics); "
            "canary[0] inherits it (judge = 'mann_whitney')"
        )
    }
    raw["canary"][0]["metrics"] = [{"name": "errors", "direction": "increase"}]
    [canary] = parse_config(raw).canary
    assert canary.metrics[0].direction == "increase"


def test_defaults_metrics_are_checked_against_the_judge_of_each_canary_inheriting_them() -> None:
    # No canary judges with [defaults]' own judge (sequential): the threshold keys are
    # the inheriting canaries', and [defaults] alone keeps its own judge's keys.
    metrics = [{"name": "errors", "max": 0.01}]
    second = {**CANARY, "name": "search", "judge": "threshold"}
    raw = {"defaults": {"metrics": metrics}, "canary": [{**CANARY, "judge": "threshold"}, second]}
    config = parse_config(raw)
    assert [c.metrics[0].max for c in config.canary] == [0.01, 0.01]
    assert config.defaults.judge == "sequential"
    assert "max" not in config.defaults.metrics[0].model_dump()
    # Their values are checked there too, and a key no judge has is refused.
    raw["defaults"]["metrics"] = [{"name": "errors", "max": "low"}]
    found = problems(raw)
    assert list(found) == ["defaults.metrics[0].max"]
    assert "valid number" in found["defaults.metrics[0].max"]
    raw["defaults"]["metrics"] = [{"name": "errors", "maxx": 0.01}]
    assert list(problems(raw)) == ["defaults.metrics[0].maxx"]
    # A canary of another judge inheriting them is refused, naming it.
    raw["defaults"]["metrics"] = metrics
    raw["canary"][1]["judge"] = "mann_whitney"
    assert problems(raw) == {
        "defaults.metrics[0].max": (
            "not a key of a mann_whitney metric (a key of threshold metrics); "
            "canary[1] inherits it (judge = 'mann_whitney')"
        )
    }
    # With no canary inheriting them, they are [defaults]' own judge's.
    assert problems({"defaults": {"metrics": metrics}, "canary": []}) == {
        "defaults.metrics[0].max": "not a key of a sequential metric (a key of threshold metrics)"
    }


def test_the_default_metrics_are_the_judges_and_a_dump_holds_only_its_keys() -> None:
    [canary] = parse_config({"canary": [{**CANARY, "judge": "threshold"}]}).canary
    assert [(m.judge, m.name) for m in canary.metrics] == [
        ("threshold", "errors"),
        ("threshold", "latency"),
    ]
    dumped = parse_config({"canary": [CANARY]}).canary[0].model_dump(mode="json")["metrics"][0]
    assert "judge" not in dumped and "direction" not in dumped and "min" not in dumped
    assert dumped["alpha_fail"] is None and dumped["name"] == "errors"
