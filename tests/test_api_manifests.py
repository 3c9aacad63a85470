"""deploy/argo: the templates the README tells users to apply are the ones tested, and
the example Rollout uses them with every argument they declare."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from api_harness import TEMPLATE_FILE, shipped_templates

ROOT = Path(__file__).resolve().parent.parent


def test_readme_applies_the_tested_template_file() -> None:
    readme = (ROOT / "README.md").read_text()
    applied = re.findall(r"kubectl apply -n \S+ -f (\S+)", readme)
    assert applied == ["deploy/argo/analysis-template.yaml"]
    assert ROOT / applied[0] == TEMPLATE_FILE
    assert set(shipped_templates()) == {"canary-background", "canary-gate"}


def test_templates_declare_every_argument_they_use() -> None:
    for name, template in shipped_templates().items():
        declared = {a["name"] for a in template["spec"]["args"]}
        text = yaml.safe_dump(template["spec"]["metrics"])
        used = set(re.findall(r"\{\{\s*args\.([A-Za-z0-9_-]+)\s*\}\}", text))
        assert used <= declared, name
        token = next(a for a in template["spec"]["args"] if a["name"] == "api-token")
        assert token["valueFrom"]["secretKeyRef"] == {"name": "canary-api-token", "key": "token"}


def test_rollout_uses_both_templates_with_pod_template_hashes() -> None:
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "argo" / "rollout.yaml").read_text()))
    rollout = next(d for d in docs if d["kind"] == "Rollout")
    canary = rollout["spec"]["strategy"]["canary"]
    assert canary["trafficRouting"]["istio"]["virtualService"]["name"] == "checkout"
    background = canary["analysis"]
    gate = next(s["analysis"] for s in canary["steps"] if "analysis" in s)
    templates = shipped_templates()
    for use, name in ((background, "canary-background"), (gate, "canary-gate")):
        assert [t["templateName"] for t in use["templates"]] == [name]
        args = {a["name"]: a for a in use["args"]}
        assert args["canary-hash"]["valueFrom"] == {"podTemplateHashValue": "Latest"}
        assert args["stable-hash"]["valueFrom"] == {"podTemplateHashValue": "Stable"}
        required = {a["name"] for a in templates[name]["spec"]["args"] if "value" not in a}
        required -= {"api-token"}  # from the Secret
        assert required <= set(args)
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    assert {canary["canaryService"], canary["stableService"]} <= services


def test_every_host_of_the_example_is_a_service_of_its_pods() -> None:
    """The VirtualService's host and destinations resolve to Services in the file,
    each selecting the Rollout's pods on a port they expose, and the pods get Istio's
    sidecar (without it neither the weights nor canary's metrics apply)."""
    docs = list(yaml.safe_load_all((ROOT / "deploy" / "argo" / "rollout.yaml").read_text()))
    rollout = next(d for d in docs if d["kind"] == "Rollout")
    namespace = rollout["metadata"]["namespace"]
    pod = rollout["spec"]["template"]
    ports = {p["containerPort"] for c in pod["spec"]["containers"] for p in c["ports"]}
    services = {
        (d["metadata"]["name"], d["metadata"]["namespace"]): d
        for d in docs
        if d["kind"] == "Service"
    }
    vs = next(d for d in docs if d["kind"] == "VirtualService")
    hosts = list(vs["spec"]["hosts"])
    hosts += [r["destination"]["host"] for h in vs["spec"]["http"] for r in h["route"]]
    for host in hosts:
        parts = host.split(".")
        name, ns = parts[0], parts[1] if len(parts) > 1 else vs["metadata"]["namespace"]
        assert len(parts) in (1, 5) and parts[2:] in ([], ["svc", "cluster", "local"]), host
        assert (name, ns) in services, f"no Service for host {host}"
        spec = services[(name, ns)]["spec"]
        assert spec["selector"].items() <= pod["metadata"]["labels"].items(), host
        assert {p["targetPort"] for p in spec["ports"]} <= ports, host
    assert ns == namespace
    assert pod["metadata"]["labels"].get("sidecar.istio.io/inject") == "true"
