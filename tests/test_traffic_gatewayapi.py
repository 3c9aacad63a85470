"""HTTPRoute router against the local API server: the Gateway API's weight rules, the
same write protocol as the VirtualService router, nothing else in the route moves."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest
from kubeapi import GATEWAY, TEST_TOKEN, KubeApiServer, client_for, http_route, shop_canary

from canary.config import CanaryConfig, KubernetesConfig, parse_config
from canary.errors import (
    ConfigError,
    Conflict,
    DriftError,
    Forbidden,
    InvalidWeights,
    KubeApiError,
    ResourceNotFound,
    TrafficError,
)
from canary.traffic import ANNOTATION, Weights, make_router
from canary.traffic.gatewayapi import HTTPRouteRouter
from canary.traffic.kube import KubeClient


def canary_config(
    *,
    rule: str | None = "primary",
    canary: str = "checkout-canary",
    stable: str = "checkout-stable",
) -> CanaryConfig:
    traffic: dict[str, Any] = {
        "kind": "HTTPRoute",
        "http_route": "checkout",
        "canary": {"host": canary},
        "stable": {"host": stable},
    }
    if rule:
        traffic["rule"] = rule
    return shop_canary(traffic, stable_workload="checkout-stable")


def weights_of(route: dict[str, Any], rule: int = 1) -> list[int | None]:
    return [b.get("weight") for b in route["spec"]["rules"][rule]["backendRefs"]]


def stored(api: KubeApiServer) -> dict[str, Any]:
    return api.http_route("shop", "checkout")


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
async def test_round_trip_changes_only_the_two_weights_and_the_rule_record(version: str) -> None:
    versions = ("v1", "v1beta1") if version == "v1" else ("v1beta1",)
    with KubeApiServer(tokens={TEST_TOKEN}, gateway_versions=versions) as api:
        api.create(http_route(api_version=f"{GATEWAY}/{version}"))
        before = stored(api)
        async with client_for(api) as kube:
            router = HTTPRouteRouter(kube, canary_config())
            state = await router.get()
            assert state.weights == Weights(10, 90) and state.route == "primary"
            assert state.api_version == f"{GATEWAY}/{version}"
            result = await router.set_weights(20, analysis="a-1", step=1)
        after = stored(api)
    assert (result.before, result.after, result.changed) == (Weights(10, 90), Weights(20, 80), True)
    assert weights_of(after) == [80, 20]
    record = json.loads(after["metadata"]["annotations"].pop(ANNOTATION))
    assert record == {"primary": {**record["primary"], "analysis": "a-1", "step": 1, "canary": 20}}
    for obj in (before, after):
        for backend in obj["spec"]["rules"][1]["backendRefs"]:
            backend.pop("weight")
        for key in ("resourceVersion", "generation"):
            obj["metadata"].pop(key)
        obj.pop("apiVersion", None)
    assert after == before  # filters, timeouts, parentRefs, other rules, annotations intact
    patch = api.writes()[0]
    assert patch.method == "PATCH" and patch.content_type == "application/json-patch+json"
    assert patch.path == f"/apis/{GATEWAY}/{version}/namespaces/shop/httproutes/checkout"


async def test_the_api_server_defaults_an_omitted_weight_to_one(kube_api: KubeApiServer) -> None:
    created = kube_api.create(http_route())
    legacy = created["spec"]["rules"][2]["backendRefs"][0]
    assert (legacy["weight"], legacy["group"], legacy["kind"]) == (1, "", "Service")


# --------------------------------------------------------------------------- weights


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ((1, 1), Weights(50, 50)),
        ((3, 1), Weights(25, 75)),  # proportional, not a percentage
        ((900, 100), Weights(10, 90)),
        ((0, 5), Weights(100, 0)),  # weight 0 receives nothing
        ((5, 0), Weights(0, 100)),
    ],
)
async def test_weights_are_proportional(
    kube_api: KubeApiServer, kube_client: KubeClient, declared: tuple[int, int], expected: Weights
) -> None:
    route = http_route()
    refs = route["spec"]["rules"][1]["backendRefs"]
    refs[0]["weight"], refs[1]["weight"] = declared
    kube_api.create(route)
    router = HTTPRouteRouter(kube_client, canary_config())
    assert (await router.get()).weights == expected
    await router.set_weights(30)
    assert weights_of(stored(kube_api)) == [70, 30]  # written as percentages summing to 100


async def test_omitted_weights_are_one_each(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(http_route())

    def omit(route: dict[str, Any]) -> None:  # as read from a server without defaulting
        for backend in route["spec"]["rules"][1]["backendRefs"]:
            del backend["weight"]

    obj = stored(kube_api)
    omit(obj)
    from canary.traffic.gatewayapi import locate_rule, read_weights

    ref = locate_rule(obj, canary_config(), "r")
    assert read_weights(obj, ref, "r") == (Weights(50, 50), (1, 1))


async def test_a_rule_whose_weights_sum_to_zero_is_refused(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    route = http_route()
    refs = route["spec"]["rules"][1]["backendRefs"]
    refs[0]["weight"], refs[1]["weight"] = 0, 0
    kube_api.create(route)
    router = HTTPRouteRouter(kube_client, canary_config())
    with pytest.raises(InvalidWeights, match="rule primary: the weights sum to 0"):
        await router.set_weights(10)
    assert kube_api.writes() == []


async def test_the_rule_is_found_by_its_backend_refs_and_a_canary_backend_is_added(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    route = http_route()
    rule = route["spec"]["rules"][1]
    del rule["name"]
    rule["backendRefs"] = [{"name": "checkout-stable", "namespace": "shop", "port": 8080}]
    kube_api.create(route)
    router = HTTPRouteRouter(kube_client, canary_config(rule=None))
    state = await router.get()
    assert state.weights == Weights(0, 100) and state.route == "#1 (unnamed)"
    await router.set_weights(10, analysis="a", step=0)
    refs = stored(kube_api)["spec"]["rules"][1]["backendRefs"]
    assert refs[1] == {
        "name": "checkout-canary",
        "port": 8080,
        "weight": 10,
        "group": "",
        "kind": "Service",
    }
    assert refs[0]["weight"] == 90
    book = json.loads(stored(kube_api)["metadata"]["annotations"][ANNOTATION])
    assert list(book) == ["#1"]


async def test_other_weighted_backends_are_refused(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    route = http_route()
    route["spec"]["rules"][1]["backendRefs"].append({"name": "checkout-shadow", "port": 80})
    kube_api.create(route)  # its weight defaults to 1: it receives traffic
    with pytest.raises(InvalidWeights, match="also sends weighted traffic to checkout-shadow"):
        await HTTPRouteRouter(kube_client, canary_config()).set_weights(20)
    assert kube_api.writes() == []


# --------------------------------------------------------------------------- safety


async def test_a_concurrent_writer_is_kept_and_we_reapply(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(http_route())

    def other_writer(api: KubeApiServer) -> None:
        api.modify(
            GATEWAY,
            "httproutes",
            "shop",
            "checkout",
            lambda r: r["spec"].__setitem__("hostnames", ["new.example.com"]),
        )

    kube_api.before_write.append(other_writer)
    result = await HTTPRouteRouter(kube_client, canary_config()).set_weights(
        20, analysis="a", step=0
    )
    assert result.attempts == 2
    after = stored(kube_api)
    assert after["spec"]["hostnames"] == ["new.example.com"] and weights_of(after) == [80, 20]


async def test_endless_conflicts_give_up(kube_api: KubeApiServer, kube_client: KubeClient) -> None:
    kube_api.create(http_route())
    kube_api.fail(409, count=10, method="PATCH")
    with pytest.raises(Conflict, match=r"httproutes.gateway.networking.k8s.io/checkout"):
        await HTTPRouteRouter(kube_client, canary_config()).set_weights(20)


async def test_drift_is_refused_per_rule_and_rollback_is_one_write_with_an_event(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(http_route())
    router = HTTPRouteRouter(kube_client, canary_config())
    await router.set_weights(20, analysis="a", step=0)

    def move(route: dict[str, Any]) -> None:
        refs = route["spec"]["rules"][1]["backendRefs"]
        refs[0]["weight"], refs[1]["weight"] = 1, 1

    kube_api.modify(GATEWAY, "httproutes", "shop", "checkout", move)
    assert (await router.get()).drift
    with pytest.raises(DriftError, match="route primary"):
        await router.set_weights(50, analysis="a", step=1)
    assert weights_of(stored(kube_api)) == [1, 1]
    writes = len(kube_api.writes())
    await router.rollback(analysis="a", step=1, force=True)
    assert weights_of(stored(kube_api)) == [100, 0]
    patches = [w for w in kube_api.writes()[writes:] if w.method == "PATCH"]
    assert len(patches) == 1
    events = kube_api.events("shop")
    assert events[-1]["reason"] == "CanaryRolledBack"
    assert events[-1]["involvedObject"]["kind"] == "HTTPRoute"
    assert events[-1]["involvedObject"]["apiVersion"] == f"{GATEWAY}/v1"


async def test_the_same_step_is_never_applied_twice(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(http_route())
    router = HTTPRouteRouter(kube_client, canary_config())
    await router.set_weights(20, analysis="a", step=0)
    again = await router.set_weights(20, analysis="a", step=0)
    assert not again.changed
    assert len([w for w in kube_api.writes() if w.method == "PATCH"]) == 1


async def test_dry_run_logs_the_patch_and_sends_nothing(
    kube_api: KubeApiServer, kube_client: KubeClient, caplog: pytest.LogCaptureFixture
) -> None:
    kube_api.create(http_route())
    router = HTTPRouteRouter(kube_client, canary_config(), dry_run=True)
    with caplog.at_level(logging.INFO, logger="canary.traffic"):
        result = await router.set_weights(20)
    assert kube_api.writes() == []
    assert {"op": "replace", "path": "/spec/rules/1/backendRefs/1/weight", "value": 20} in (
        result.patch
    )
    assert any(json.dumps(result.patch) in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- errors


async def test_gateway_api_not_installed_is_a_clear_error() -> None:
    with KubeApiServer(tokens={TEST_TOKEN}, gateway_versions=()) as api:
        async with client_for(api) as kube:
            with pytest.raises(ResourceNotFound, match=r"gateway.networking.k8s.io: not found"):
                await HTTPRouteRouter(kube, canary_config()).get()


async def test_missing_rule_names_the_known_ones(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(http_route())
    with pytest.raises(
        ResourceNotFound, match=r"rule 'checkout' of .*rules named: beta-testers, primary"
    ):
        await HTTPRouteRouter(kube_client, canary_config(rule="checkout")).get()


async def test_ambiguous_unnamed_rules_ask_for_a_rule_name(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    route = http_route()
    route["spec"]["rules"][0]["backendRefs"] = copy.deepcopy(
        route["spec"]["rules"][1]["backendRefs"]
    )
    kube_api.create(route)
    with pytest.raises(TrafficError, match=r"name the rule with traffic.rule"):
        await HTTPRouteRouter(kube_client, canary_config(rule=None)).get()


async def test_forbidden_patch_names_httproutes(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(http_route())
    kube_api.deny("patch", "httproutes")
    with pytest.raises(Forbidden, match=r"forbidden to patch httproutes.gateway.networking.k8s.io"):
        await HTTPRouteRouter(kube_client, canary_config()).set_weights(20)


async def test_server_errors_are_retried_then_typed(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(http_route())
    kube_api.fail(503, count=10, method="GET", path="/httproutes/")
    with pytest.raises(KubeApiError, match="HTTP 503 after 4 attempts"):
        await HTTPRouteRouter(kube_client, canary_config()).get()


async def test_the_api_server_keeps_the_crd_rules(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    """The stand-in refuses what the real HTTPRoute CRD refuses (422)."""
    kube_api.create(http_route())
    path = f"/apis/{GATEWAY}/v1/namespaces/shop/httproutes/checkout"
    rv = stored(kube_api)["metadata"]["resourceVersion"]
    for op, message in (
        (
            {"op": "replace", "path": "/spec/rules/1/backendRefs/0/weight", "value": -1},
            "0..1000000",
        ),
        ({"op": "remove", "path": "/spec/rules/1/backendRefs/0/port"}, "Must have port"),
        ({"op": "add", "path": "/spec/rules/2/name", "value": "primary"}, "must be unique"),
    ):
        with pytest.raises(KubeApiError, match=message) as info:
            await kube_client.request(
                "PATCH",
                path,
                verb="patch",
                resource="r",
                body=[{"op": "replace", "path": "/metadata/resourceVersion", "value": rv}, op],
                content_type="application/json-patch+json",
            )
        assert info.value.status == 422
    groups = await kube_client.request("GET", "/apis", verb="discover", resource="apis")
    gateway = next(g for g in groups["groups"] if g["name"] == GATEWAY)
    assert [v["version"] for v in gateway["versions"]] == ["v1", "v1beta1"]


# --------------------------------------------------------------------------- config


def test_make_router_picks_the_kind(kube_api: KubeApiServer, kubeconfig_file: Any) -> None:
    kubernetes = KubernetesConfig(mode="kubeconfig", kubeconfig=str(kubeconfig_file))
    assert isinstance(make_router(kubernetes, canary_config()), HTTPRouteRouter)


@pytest.mark.parametrize(
    ("traffic", "message"),
    [
        ({"kind": "HTTPRoute"}, "http_route: required with kind = 'HTTPRoute'"),
        (
            {"kind": "HTTPRoute", "http_route": "r", "virtual_service": "v"},
            "virtual_service: only for kind = 'VirtualService'",
        ),
        ({"kind": "HTTPRoute", "http_route": "r", "route": "x"}, "route: only for kind"),
        ({"virtual_service": "v", "rule": "x"}, "rule: only for kind = 'HTTPRoute'"),
        ({}, "virtual_service: required with kind = 'VirtualService'"),
        ({"kind": "Ingress", "virtual_service": "v"}, "Input should be 'VirtualService'"),
    ],
)
def test_traffic_config_mistakes_are_named(traffic: dict[str, Any], message: str) -> None:
    raw = {
        "canary": [
            {
                "name": "c",
                "namespace": "n",
                "traffic": {"canary": {"host": "a"}, "stable": {"host": "b"}, **traffic},
                "arms": {
                    "canary": {"match": {"destination_workload": "a"}},
                    "baseline": {"match": {"destination_workload": "b"}},
                },
            }
        ]
    }
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert info.value.problems[0][0].startswith("canary[0].traffic")
    assert message in info.value.problems[0][1]


def test_an_http_route_destination_has_no_subset() -> None:
    raw = {
        "canary": [
            {
                "name": "c",
                "namespace": "n",
                "traffic": {
                    "kind": "HTTPRoute",
                    "http_route": "r",
                    "canary": {"host": "a", "subset": "v2"},
                    "stable": {"host": "b"},
                },
                "arms": {
                    "canary": {"match": {"destination_workload": "a"}},
                    "baseline": {"match": {"destination_workload": "b"}},
                },
            }
        ]
    }
    with pytest.raises(ConfigError, match=r"canary.subset: an HTTPRoute routes to Services"):
        parse_config(raw)
