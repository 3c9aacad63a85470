"""The demo's in-process Kubernetes API stand-in: the routers' real protocol works on it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubeapi import http_route, shop_canary

from canary.errors import Conflict, KubeApiError
from canary.traffic import ANNOTATION, Weights
from canary.traffic.gatewayapi import GROUP, HTTPRouteRouter
from canary.traffic.kube import JSON_PATCH, Connection, KubeClient
from canary.traffic.standin import KubeStandIn

PATH = f"/apis/{GROUP}/v1/namespaces/shop/httproutes/checkout"


@pytest.fixture
def api() -> KubeStandIn:
    api = KubeStandIn({GROUP: "v1"})
    api.create("httproutes", http_route())
    return api


@pytest.fixture
async def kube(api: KubeStandIn) -> AsyncIterator[KubeClient]:
    async with KubeClient(Connection(server="http://standin"), transport=api.transport()) as kube:
        yield kube


def router(kube: KubeClient) -> HTTPRouteRouter:
    traffic: dict[str, Any] = {
        "kind": "HTTPRoute",
        "http_route": "checkout",
        "rule": "primary",
        "canary": {"host": "checkout-canary"},
        "stable": {"host": "checkout-stable"},
    }
    return HTTPRouteRouter(kube, shop_canary(traffic, stable_workload="checkout-stable"))


def stored(api: KubeStandIn) -> dict[str, Any]:
    return api.get(GROUP, "httproutes", "shop", "checkout")


async def test_the_router_moves_weights_and_records_the_write(
    api: KubeStandIn, kube: KubeClient
) -> None:
    before = stored(api)
    result = await router(kube).set_weights(20, analysis="a-1", step=1)
    after = stored(api)
    assert (result.before, result.after, result.changed) == (Weights(10, 90), Weights(20, 80), True)
    assert [b["weight"] for b in after["spec"]["rules"][1]["backendRefs"]] == [80, 20]
    record = json.loads(after["metadata"]["annotations"][ANNOTATION])
    assert record["primary"]["canary"] == 20 and record["primary"]["analysis"] == "a-1"
    assert int(after["metadata"]["resourceVersion"]) > int(before["metadata"]["resourceVersion"])
    assert after["spec"]["rules"][0] == before["spec"]["rules"][0]  # other rules untouched
    assert [e["reason"] for e in api.events] == ["CanaryWeightsChanged"]
    assert (await router(kube).rollback()).after == Weights(0, 100)


async def test_a_stale_resource_version_is_a_conflict_and_nothing_changes(
    api: KubeStandIn, kube: KubeClient
) -> None:
    version = stored(api)["metadata"]["resourceVersion"]
    await router(kube).set_weights(30)
    stale = [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": version},
        {"op": "replace", "path": "/spec/rules/1/backendRefs/1/weight", "value": 99},
    ]
    with pytest.raises(Conflict):
        await kube.request(
            "PATCH", PATH, verb="patch", resource="r", body=stale, content_type=JSON_PATCH
        )
    assert stored(api)["spec"]["rules"][1]["backendRefs"][1]["weight"] == 30


async def test_an_operation_that_cannot_apply_is_a_422_and_nothing_changes(
    api: KubeStandIn, kube: KubeClient
) -> None:
    before = stored(api)
    version = before["metadata"]["resourceVersion"]
    patch = [
        {"op": "replace", "path": "/metadata/resourceVersion", "value": version},
        {"op": "replace", "path": "/spec/rules/1/backendRefs/0/weight", "value": 1},
        {"op": "replace", "path": "/spec/rules/7/backendRefs/0/weight", "value": 1},
    ]
    with pytest.raises(KubeApiError) as info:
        await kube.request(
            "PATCH", PATH, verb="patch", resource="r", body=patch, content_type=JSON_PATCH
        )
    assert info.value.status == 422 and "no element '7'" in str(info.value)
    assert stored(api) == before
