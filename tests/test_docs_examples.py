"""The complete examples of docs/traffic.md and docs/metrics.md are valid and work.

Each example is a pair of fenced blocks, ```yaml example=NAME (the manifests) and
```toml example=NAME (canary's configuration). For each:

- core objects validate against the Kubernetes OpenAPI schemas (kubernetes-validate,
  strict: unknown fields are errors);
- custom resources validate against the upstream CRDs' structural schemas
  (tests/schemas/crds.json, from kubernetes-sigs/gateway-api and istio/istio, strict)
  and the admission rules tests/kubeapi.py implements (Istio's weight validation, the
  HTTPRoute CRD's CEL rules);
- the configuration passes `canary config check`, names Deployments and Services
  the manifests define, and matches the data plane the namespace runs;
- `canary traffic show` and `canary traffic set` move the example's weights on the
  local API server holding its routing objects.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubeapi import KubeApiServer, httproute_defaults, httproute_problems, istio_weight_problems

from canary.cli import main
from canary.config import parse_config

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "docs" / "traffic.md", ROOT / "docs" / "metrics.md"]
CRDS = json.loads((Path(__file__).with_name("schemas") / "crds.json").read_text())["schemas"]
CORE = {"Namespace", "Service", "Deployment"}
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
BLOCK = re.compile(r"^```(yaml|toml) example=([a-z-]+)\n(.*?)^```", re.M | re.S)


def examples() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for path in DOCS:
        for language, name, body in BLOCK.findall(path.read_text()):
            entry = found.setdefault(name, {"doc": path.name})
            assert language not in entry, f"{path.name}: two {language} blocks for {name}"
            entry[language] = (
                [d for d in yaml.safe_load_all(body) if d] if language == "yaml" else body
            )
    return found


EXAMPLES = examples()


def _strict(schema: Any) -> Any:
    """A Kubernetes structural schema as JSON Schema, unknown fields refused."""
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {name: _strict(sub) for name, sub in value.items()}
        elif not key.startswith("x-kubernetes") and key != "nullable":
            out[key] = _strict(value)
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def crd_problems(obj: dict[str, Any]) -> list[str]:
    key = f"{obj['apiVersion']}/{obj['kind']}"
    assert key in CRDS, f"no schema for {key}"
    schema = _strict(CRDS[key])
    # every object's root has these, whether or not the CRD's schema lists them
    schema["properties"] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        **schema["properties"],
    }
    validator = jsonschema.Draft7Validator(schema)
    problems = [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)
    ]
    stored = copy.deepcopy(obj)
    if obj["kind"] == "HTTPRoute":
        httproute_defaults(stored)
        problems += httproute_problems(stored)
    if obj["kind"] == "VirtualService":
        problems += istio_weight_problems(stored)
    return problems


def test_the_docs_have_each_complete_example() -> None:
    assert set(EXAMPLES) == {"virtualservice", "httproute", "ambient"}
    for name, example in EXAMPLES.items():
        assert {"yaml", "toml"} <= set(example), name


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_manifests_match_the_kubernetes_and_the_crd_schemas(name: str) -> None:
    for obj in EXAMPLES[name]["yaml"]:
        what = f"{name}: {obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in CORE:
            for version in KUBERNETES_VERSIONS:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as exc:
                    pytest.fail(f"{what} ({version}): {exc}")
        else:
            assert crd_problems(obj) == [], what


def test_the_crd_validation_catches_mistakes() -> None:
    route = copy.deepcopy(
        next(o for o in EXAMPLES["httproute"]["yaml"] if o["kind"] == "HTTPRoute")
    )
    route["spec"]["rules"][0]["backendRefs"][0]["weight"] = -1
    route["spec"]["rules"][0]["backendRef"] = []  # a typo
    del route["spec"]["rules"][0]["backendRefs"][1]["port"]
    problems = "\n".join(crd_problems(route))
    assert "-1 is less than the minimum of 0" in problems
    assert "'backendRef' was unexpected" in problems
    assert "Must have port for Service reference" in problems
    vs = copy.deepcopy(
        next(o for o in EXAMPLES["virtualservice"]["yaml"] if o["kind"] == "VirtualService")
    )
    vs["spec"]["http"][0]["route"][0]["weight"] = "100"
    vs["spec"]["http"][0]["timeout"] = 5
    problems = "\n".join(crd_problems(vs))
    assert "'100' is not of type 'integer'" in problems and "5 is not of type 'string'" in problems


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_config_names_what_the_manifests_define(name: str) -> None:
    objects = EXAMPLES[name]["yaml"]
    config = parse_config(tomllib.loads(EXAMPLES[name]["toml"]))
    (canary,) = config.canary
    of = {(o["kind"], o["metadata"]["name"]) for o in objects}
    namespace = next(o for o in objects if o["kind"] == "Namespace")
    assert namespace["metadata"]["name"] == canary.namespace
    assert all(
        o["metadata"].get("namespace", canary.namespace) == canary.namespace for o in objects
    )
    for arm in canary.arms.values():  # Istio's destination_workload is the Deployment's name
        assert ("Deployment", arm.match["destination_workload"]) in of
    traffic = canary.traffic
    if traffic.kind == "HTTPRoute":
        assert ("HTTPRoute", traffic.http_route) in of
        for dest in (traffic.canary, traffic.stable):
            assert ("Service", dest.host) in of
    else:
        assert ("VirtualService", traffic.virtual_service) in of
        rule = next(o for o in objects if o["kind"] == "DestinationRule")
        assert {traffic.canary.subset, traffic.stable.subset} <= {
            s["name"] for s in rule["spec"]["subsets"]
        }
    labels = namespace["metadata"].get("labels", {})
    if canary.reporter == "waypoint":
        assert labels.get("istio.io/dataplane-mode") == "ambient"
        waypoint = next(o for o in objects if o["kind"] == "Gateway")
        assert waypoint["spec"]["gatewayClassName"] == "istio-waypoint"
        assert labels.get("istio.io/use-waypoint") == waypoint["metadata"]["name"]
    else:
        assert labels.get("istio-injection") == "enabled"


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_canary_checks_the_config_and_moves_the_example_weights(
    name: str,
    kube_api: KubeApiServer,
    kubeconfig_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for obj in EXAMPLES[name]["yaml"]:
        if obj["kind"] in ("VirtualService", "DestinationRule", "HTTPRoute"):
            kube_api.create(copy.deepcopy(obj))
    text = EXAMPLES[name]["toml"].replace(
        'mode = "in-cluster"', f'mode = "kubeconfig"\nkubeconfig = "{kubeconfig_file}"'
    )
    path = tmp_path / "canary.toml"
    path.write_text(text)
    assert main(["config", "check", str(path)]) == 0
    capsys.readouterr()
    assert main(["--config", str(path), "traffic", "show", "checkout", "--json"]) == 0
    before = json.loads(capsys.readouterr().out)
    assert before["weights"] == {"canary": 0, "stable": 100} and before["drift"] is False
    assert main(["--config", str(path), "traffic", "set", "checkout", "--weight", "10"]) == 0
    capsys.readouterr()
    assert main(["--config", str(path), "traffic", "show", "checkout", "--json"]) == 0
    after = json.loads(capsys.readouterr().out)
    assert after["weights"] == {"canary": 10, "stable": 90}
    assert after["lastWrite"]["canary"] == 10 and after["drift"] is False
