"""Regenerate tests/schemas/crds.json: the structural OpenAPI schemas of the custom
resources the docs' examples use, from the upstream CRD manifests.

    python tests/schemas/extract.py GATEWAY_API_CHECKOUT ISTIO_CHECKOUT

Sources (a git checkout of each): kubernetes-sigs/gateway-api
``config/crd/standard/gateway.networking.k8s.io_{httproutes,gateways}.yaml`` and
istio/istio ``manifests/charts/base/files/crd-all.gen.yaml``. Only the structure is
kept (types, properties, required, enums, bounds, patterns, list sizes, defaults);
descriptions and CEL rules are dropped (tests/kubeapi.py checks the CEL rules canary
relies on).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

KEEP = {
    "type", "properties", "items", "required", "enum", "minimum", "maximum",
    "minLength", "maxLength", "pattern", "maxItems", "minItems", "additionalProperties",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-int-or-string", "oneOf",
    "anyOf", "allOf", "not", "default", "format", "nullable", "maxProperties",
}  # fmt: skip

WANTED = {
    ("gateway.networking.k8s.io", "HTTPRoute", "v1"),
    ("gateway.networking.k8s.io", "Gateway", "v1"),
    ("networking.istio.io", "VirtualService", "v1"),
    ("networking.istio.io", "DestinationRule", "v1"),
}


def _props(schema: Any) -> Any:
    """Like `structural`, but `properties` maps names to schemas (names are kept)."""
    if isinstance(schema, dict):
        out = {}
        for key, value in schema.items():
            if key == "properties":
                out[key] = {name: _props(sub) for name, sub in value.items()}
            elif key in KEEP:
                out[key] = _props(value)
        return out
    if isinstance(schema, list):
        return [_props(v) for v in schema]
    return schema


def crds(checkout: Path, path: str) -> tuple[list[dict[str, Any]], str]:
    commit = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    text = subprocess.run(
        ["git", "-C", str(checkout), "show", f"HEAD:{path}"], capture_output=True, text=True
    ).stdout
    return [
        d for d in yaml.safe_load_all(text) if d and d.get("kind") == "CustomResourceDefinition"
    ], commit


def main(gateway_api: str, istio: str) -> None:
    sources = [
        (
            Path(gateway_api),
            "kubernetes-sigs/gateway-api",
            f"config/crd/standard/gateway.networking.k8s.io_{name}.yaml",
        )
        for name in ("httproutes", "gateways")
    ] + [(Path(istio), "istio/istio", "manifests/charts/base/files/crd-all.gen.yaml")]
    out: dict[str, Any] = {"sources": [], "schemas": {}}
    for checkout, repo, path in sources:
        documents, commit = crds(checkout, path)
        out["sources"].append(f"{repo}@{commit}:{path}")
        for crd in documents:
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                if (group, kind, version["name"]) in WANTED:
                    schema = version["schema"]["openAPIV3Schema"]
                    out["schemas"][f"{group}/{version['name']}/{kind}"] = _props(schema)
    target = Path(__file__).with_name("crds.json")
    target.write_text(json.dumps(out, separators=(",", ":"), sort_keys=True) + "\n")
    print(f"{target}: {sorted(out['schemas'])}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
