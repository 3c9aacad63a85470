"""The Istio router against a real cluster, when KUBECONFIG points at one.

Needs Istio's CRDs and rights to create, patch and delete VirtualServices in
``$CANARY_TEST_NAMESPACE`` (default ``default``). The test creates a VirtualService
with a unique name, moves its weights, checks every other field survived, and
deletes it. Without KUBECONFIG it is skipped (the only skip in the suite).
"""

from __future__ import annotations

import copy
import json
import os
import uuid

import pytest
from kubeapi import virtual_service

from canary.config import KubernetesConfig, parse_config
from canary.traffic import ANNOTATION, Weights
from canary.traffic.istio import GROUP, VERSIONS, IstioRouter
from canary.traffic.kube import KubeClient

pytestmark = [
    pytest.mark.kubernetes,
    pytest.mark.skipif(
        not os.environ.get("KUBECONFIG"),
        reason="KUBECONFIG is not set: no real Kubernetes cluster to test against"
        " (set KUBECONFIG, and optionally CANARY_TEST_NAMESPACE, to run it)",
    ),
]


async def test_weights_round_trip_on_a_real_cluster() -> None:
    namespace = os.environ.get("CANARY_TEST_NAMESPACE", "default")
    name = f"canary-test-{uuid.uuid4().hex[:8]}"
    client = KubeClient.from_config(KubernetesConfig(mode="kubeconfig"))
    config = parse_config(
        {
            "canary": [
                {
                    "name": "test",
                    "namespace": namespace,
                    "traffic": {
                        "virtual_service": name,
                        "route": "primary",
                        "canary": {"host": name, "subset": "canary"},
                        "stable": {"host": name, "subset": "stable"},
                    },
                    "arms": {
                        "canary": {"match": {"destination_workload": "c"}},
                        "baseline": {"match": {"destination_workload": "b"}},
                    },
                }
            ]
        }
    ).canary[0]
    async with client:
        version = await client.preferred_version(GROUP, VERSIONS)
        base = f"/apis/{GROUP}/{version}/namespaces/{namespace}/virtualservices"
        body = virtual_service(name, namespace, f"{GROUP}/{version}")
        body["spec"]["http"][1]["route"][0]["destination"].pop("port")  # cluster-agnostic
        resource = f"virtualservices/{name} in namespace {namespace}"
        created = await client.request("POST", base, verb="create", resource=resource, body=body)
        try:
            router = IstioRouter(client, config)
            assert (await router.get()).weights == Weights(10, 90)
            await router.set_weights(30, analysis="cluster-test", step=1)
            after = await client.request("GET", f"{base}/{name}", verb="get", resource=resource)
            route = after["spec"]["http"][1]["route"]
            assert [d["weight"] for d in route] == [70, 30]
            assert (
                json.loads(after["metadata"]["annotations"][ANNOTATION])["primary"]["canary"] == 30
            )

            def strip(vs: dict) -> dict:
                out = copy.deepcopy(vs["spec"])
                for dest in out["http"][1]["route"]:
                    dest.pop("weight", None)
                return out

            assert strip(after) == strip(created)
            await router.rollback(analysis="cluster-test", step=1)
            assert (await router.get()).weights == Weights(0, 100)
        finally:
            await client.request("DELETE", f"{base}/{name}", verb="delete", resource=resource)
