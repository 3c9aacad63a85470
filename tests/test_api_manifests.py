"""deploy/argo: the templates the README tells users to apply are the ones tested, and
the example Rollout uses them with every argument they declare."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.api_harness import TEMPLATE_FILE, shipped_templates

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
    assert {canary["canaryService"], canary["stableService"]} == services
