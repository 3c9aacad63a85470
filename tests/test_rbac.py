"""Least privilege: the ClusterRole in deploy/ grants exactly the verbs the code calls.

Both routers (VirtualService and HTTPRoute) read, write, roll back and post Events
against the local API server; every request except discovery is mapped to its RBAC
(group, resource, verb) and compared with the rules of deploy/kubernetes/base/rbac.yaml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from kubeapi import TEST_TOKEN, KubeApiServer, http_route, virtual_service

from canary.config import parse_config
from canary.errors import ConfigError
from canary.traffic.gatewayapi import HTTPRouteRouter
from canary.traffic.istio import IstioRouter
from canary.traffic.kube import Connection, KubeClient

RBAC = Path(__file__).resolve().parents[1] / "deploy" / "kubernetes" / "base" / "rbac.yaml"

ARMS = {
    "canary": {"match": {"destination_workload": "checkout-canary"}},
    "baseline": {"match": {"destination_workload": "checkout-stable"}},
}


def _granted() -> tuple[set[tuple[str, str, str]], list[dict[str, Any]]]:
    docs = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    grants = set()
    for doc in docs:
        for rule in doc.get("rules") or []:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        grants.add((group, resource, verb))
    return grants, docs


def _rbac_of(method: str, path: str) -> tuple[str, str, str] | None:
    parts = [p for p in path.split("/") if p]
    if "namespaces" not in parts:
        return None  # discovery: allowed to every authenticated user (system:discovery)
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[parts.index("namespaces") + 2 :]
    named = len(rest) == 2
    verb = {
        ("GET", True): "get",
        ("GET", False): "list",
        ("POST", False): "create",
        ("PATCH", True): "patch",
        ("PUT", True): "update",
        ("DELETE", True): "delete",
    }[(method, named)]
    return group, rest[0], verb


async def test_the_cluster_role_grants_exactly_what_the_routers_call() -> None:
    vs_canary = parse_config(
        {
            "canary": [
                {
                    "name": "checkout",
                    "namespace": "shop",
                    "traffic": {
                        "virtual_service": "checkout",
                        "route": "primary",
                        "canary": {"host": "checkout", "subset": "canary"},
                        "stable": {"host": "checkout", "subset": "stable"},
                    },
                    "arms": ARMS,
                },
                {
                    "name": "checkout-gw",
                    "namespace": "shop",
                    "traffic": {
                        "kind": "HTTPRoute",
                        "http_route": "checkout",
                        "rule": "primary",
                        "canary": {"host": "checkout-canary"},
                        "stable": {"host": "checkout-stable"},
                    },
                    "arms": ARMS,
                },
            ]
        }
    ).canary
    with KubeApiServer(tokens={TEST_TOKEN}) as api:
        api.create(virtual_service())
        api.create(http_route())
        async with KubeClient(Connection(server=api.url, token=TEST_TOKEN)) as kube:
            for router in (IstioRouter(kube, vs_canary[0]), HTTPRouteRouter(kube, vs_canary[1])):
                await router.get()
                await router.set_weights(20, analysis="a", step=0)
                await router.rollback(analysis="a", step=0)
        called = {c for r in api.requests if (c := _rbac_of(r.method, r.path))}
    granted, docs = _granted()
    assert (
        called
        == granted
        == {
            ("networking.istio.io", "virtualservices", "get"),
            ("networking.istio.io", "virtualservices", "patch"),
            ("gateway.networking.k8s.io", "httproutes", "get"),
            ("gateway.networking.k8s.io", "httproutes", "patch"),
            ("", "events", "create"),
        }
    )
    # one ClusterRole bound per target namespace; no Role (Leases live in the database)
    assert [d["kind"] for d in docs] == ["ClusterRole"]


def test_the_removed_lease_namespace_key_is_an_unknown_key() -> None:
    try:
        parse_config({"kubernetes": {"lease_namespace": "canary-system"}})
    except ConfigError as exc:
        assert exc.problems == [("kubernetes.lease_namespace", "unknown key")]
    else:
        raise AssertionError("lease_namespace was accepted")
