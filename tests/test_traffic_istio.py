"""Istio router against the local API server: weights move, nothing else does."""

from __future__ import annotations

import copy
import json
import logging
from typing import Any

import pytest
from kubeapi import ISTIO, TEST_TOKEN, KubeApiServer, client_for, shop_canary, virtual_service

from canary.config import CanaryConfig, KubernetesConfig
from canary.errors import (
    Conflict,
    DriftError,
    Forbidden,
    InvalidWeights,
    KubeApiError,
    ResourceNotFound,
    TrafficError,
)
from canary.traffic import ANNOTATION, Weights, make_router
from canary.traffic.istio import IstioRouter
from canary.traffic.kube import KubeClient


def canary_config(
    *,
    route: str | None = "primary",
    canary: dict[str, Any] | None = None,
    stable: dict[str, Any] | None = None,
    vs: str = "checkout",
) -> CanaryConfig:
    traffic: dict[str, Any] = {
        "virtual_service": vs,
        "canary": canary or {"host": "checkout", "subset": "canary"},
        "stable": stable or {"host": "checkout", "subset": "stable"},
    }
    if route:
        traffic["route"] = route
    return shop_canary(traffic, stable_workload="checkout-primary")


def weights_of(vs: dict[str, Any], route: int = 1) -> list[int | None]:
    return [d.get("weight") for d in vs["spec"]["http"][route]["route"]]


def without_weights_and_bookkeeping(vs: dict[str, Any]) -> dict[str, Any]:
    """The VirtualService minus the two weights, our annotation and server stamps."""
    out = copy.deepcopy(vs)
    for dest in out["spec"]["http"][1]["route"]:
        dest.pop("weight", None)
    out["metadata"]["annotations"].pop(ANNOTATION, None)
    for key in ("resourceVersion", "generation"):
        out["metadata"].pop(key, None)
    out.pop("apiVersion", None)
    return out


# --------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("version", ["v1", "v1beta1", "v1alpha3"])
async def test_round_trip_changes_only_the_two_weights(version: str) -> None:
    with KubeApiServer(tokens={TEST_TOKEN}, istio_versions=(version,)) as api:
        api.create(virtual_service(api_version=f"{ISTIO}/{version}"))
        before = api.virtual_service("shop", "checkout")
        async with client_for(api) as kube:
            router = IstioRouter(kube, canary_config())
            state = await router.get()
            assert state.weights == Weights(10, 90)
            assert state.api_version == f"{ISTIO}/{version}"
            assert state.route == "primary"
            assert state.last_write is None

            result = await router.set_weights(20, analysis="a-1", step=1)
        after = api.virtual_service("shop", "checkout")

    assert (result.before, result.after, result.changed) == (Weights(10, 90), Weights(20, 80), True)
    assert weights_of(after) == [80, 20]
    assert without_weights_and_bookkeeping(after) == without_weights_and_bookkeeping(before)
    # every other route, field and annotation intact, spelled out for the case
    primary = after["spec"]["http"][1]
    assert primary["retries"] == {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx"}
    assert primary["fault"]["delay"]["fixedDelay"] == "5s"
    assert after["spec"]["http"][2] == before["spec"]["http"][2]  # timeout: 10s route
    assert after["spec"]["http"][2]["timeout"] == "10s"
    assert after["metadata"]["annotations"]["owner"] == "team-shop"
    record = json.loads(after["metadata"]["annotations"][ANNOTATION])["primary"]
    assert (record["analysis"], record["step"], record["canary"], record["stable"]) == (
        "a-1",
        1,
        20,
        80,
    )
    # one PATCH, a JSON patch, with the resourceVersion we read as its precondition
    patches = [r for r in api.writes() if r.method == "PATCH"]
    assert len(patches) == 1
    assert patches[0].content_type == "application/json-patch+json"
    assert patches[0].body[0] == {
        "op": "replace",
        "path": "/metadata/resourceVersion",
        "value": before["metadata"]["resourceVersion"],
    }


async def test_discovery_prefers_the_servers_preferred_supported_version() -> None:
    with KubeApiServer(istio_versions=("v1alpha3", "v1beta1"), preferred="v1beta1") as api:
        api.create(virtual_service(api_version=f"{ISTIO}/v1beta1"))
        async with client_for(api) as kube:
            state = await IstioRouter(kube, canary_config()).get()
        assert state.api_version == f"{ISTIO}/v1beta1"
        assert any("/v1beta1/" in r.path for r in api.requests)


async def test_istio_not_installed_is_a_clear_error() -> None:
    with KubeApiServer(istio_versions=()) as api:
        async with client_for(api) as kube:
            with pytest.raises(ResourceNotFound, match=r"discover networking\.istio\.io"):
                await IstioRouter(kube, canary_config()).get()


async def test_unnamed_route_found_by_destinations_and_host_based_routing(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    vs = {
        "apiVersion": f"{ISTIO}/v1",
        "kind": "VirtualService",
        "metadata": {"name": "search", "namespace": "shop"},
        "spec": {
            "hosts": ["search"],
            "http": [
                {
                    "match": [{"uri": {"prefix": "/admin"}}],
                    "route": [{"destination": {"host": "admin"}}],
                },
                {
                    "route": [
                        {
                            "destination": {"host": "search-stable.shop.svc.cluster.local"},
                            "weight": 100,
                        },
                        {"destination": {"host": "search-canary"}, "weight": 0},
                    ]
                },
            ],
        },
    }
    kube_api.create(vs)
    config = canary_config(
        route=None, vs="search", canary={"host": "search-canary"}, stable={"host": "search-stable"}
    )
    router = IstioRouter(kube_client, config)
    state = await router.get()
    assert state.weights == Weights(0, 100)
    assert state.route == "#1 (unnamed)"
    await router.set_weights(25)
    stored = kube_api.virtual_service("shop", "search")
    assert weights_of(stored) == [75, 25]
    assert stored["spec"]["http"][0] == vs["spec"]["http"][0]
    assert "annotations" in stored["metadata"]  # created for our record


async def test_a_route_without_a_canary_destination_gets_one(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    vs = virtual_service()
    vs["spec"]["http"][1]["route"] = [{"destination": {"host": "checkout", "subset": "stable"}}]
    kube_api.create(vs)
    router = IstioRouter(kube_client, canary_config())
    assert (await router.get()).weights == Weights(0, 100)  # a lone destination takes all
    await router.set_weights(5, analysis="a", step=0)
    route = kube_api.virtual_service("shop", "checkout")["spec"]["http"][1]["route"]
    assert route == [
        {"destination": {"host": "checkout", "subset": "stable"}, "weight": 95},
        {"destination": {"host": "checkout", "subset": "canary"}, "weight": 5},
    ]


# --------------------------------------------------------------------------- concurrency


async def test_concurrent_writer_is_kept_and_we_retry(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(virtual_service())

    def someone_else(api: KubeApiServer) -> None:
        def change(vs: dict[str, Any]) -> None:
            vs["spec"]["http"][2]["timeout"] = "30s"
            vs["metadata"]["labels"]["team"] = "payments"

        api.modify(ISTIO, "virtualservices", "shop", "checkout", change)

    kube_api.before_write.append(someone_else)  # between our read and our write
    result = await IstioRouter(kube_client, canary_config()).set_weights(30, analysis="a", step=2)

    stored = kube_api.virtual_service("shop", "checkout")
    assert result.attempts == 2
    assert weights_of(stored) == [70, 30]
    assert stored["spec"]["http"][2]["timeout"] == "30s"  # their change survives
    assert stored["metadata"]["labels"]["team"] == "payments"
    patches = [r for r in kube_api.writes() if r.method == "PATCH"]
    assert len(patches) == 2  # the first got 409, the second applied


async def test_conflicts_without_end_give_up_with_conflict(kube_api: KubeApiServer) -> None:
    kube_api.create(virtual_service())

    def bump(api: KubeApiServer) -> None:
        api.modify(ISTIO, "virtualservices", "shop", "checkout", lambda vs: None)
        api.before_write.append(bump)  # again next time

    kube_api.before_write.append(bump)
    async with client_for(kube_api, retries=2) as kube:
        with pytest.raises(Conflict, match=r"patch virtualservices.*checkout.*3 attempts"):
            await IstioRouter(kube, canary_config()).set_weights(30)
    kube_api.before_write.clear()
    assert weights_of(kube_api.virtual_service("shop", "checkout")) == [90, 10]


async def test_weights_moved_by_someone_else_mid_write_are_drift(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(virtual_service())
    router = IstioRouter(kube_client, canary_config())
    await router.set_weights(20, analysis="a", step=1)

    def human(api: KubeApiServer) -> None:
        def change(vs: dict[str, Any]) -> None:
            vs["spec"]["http"][1]["route"][0]["weight"] = 50
            vs["spec"]["http"][1]["route"][1]["weight"] = 50

        api.modify(ISTIO, "virtualservices", "shop", "checkout", change)

    kube_api.before_write.append(human)
    with pytest.raises(DriftError):  # 409, re-read, re-check: the weights moved -> stop
        await router.set_weights(50, analysis="a", step=2)
    assert weights_of(kube_api.virtual_service("shop", "checkout")) == [50, 50]


# --------------------------------------------------------------------------- drift


async def test_drift_is_reported_and_nothing_is_overwritten(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(virtual_service())
    router = IstioRouter(kube_client, canary_config())
    await router.set_weights(20, analysis="a-7", step=1)

    def manual(vs: dict[str, Any]) -> None:  # kubectl edit by a human
        vs["spec"]["http"][1]["route"][0]["weight"] = 100
        vs["spec"]["http"][1]["route"][1]["weight"] = 0

    kube_api.modify(ISTIO, "virtualservices", "shop", "checkout", manual)
    state = await router.get()
    assert state.drift and state.weights == Weights(0, 100)
    assert state.last_write is not None and state.last_write.weights == Weights(20, 80)

    writes = len(kube_api.writes())
    for attempt in (router.set_weights(50, analysis="a-7", step=2), router.rollback()):
        with pytest.raises(DriftError) as info:
            await attempt
        assert "canary=0 stable=100" in str(info.value)
        assert "we last wrote canary=20 stable=80" in str(info.value)
        assert "analysis a-7 step 1" in str(info.value)
    assert len(kube_api.writes()) == writes  # nothing sent
    assert weights_of(kube_api.virtual_service("shop", "checkout")) == [100, 0]

    await router.set_weights(10, by="operator", force=True)  # the operator's explicit override
    assert weights_of(kube_api.virtual_service("shop", "checkout")) == [90, 10]
    assert not (await router.get()).drift


async def test_the_same_step_is_never_applied_twice(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(virtual_service())
    router = IstioRouter(kube_client, canary_config())
    first = await router.set_weights(20, analysis="a", step=1)
    writes = len(kube_api.writes())
    again = await router.set_weights(20, analysis="a", step=1)  # e.g. after a restart
    assert first.changed and not again.changed
    assert len(kube_api.writes()) == writes


async def test_rollback_is_one_write_and_emits_an_event(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(virtual_service())
    router = IstioRouter(kube_client, canary_config())
    await router.set_weights(50, analysis="a", step=3)
    patches_before = len([r for r in kube_api.writes() if r.method == "PATCH"])
    result = await router.rollback(analysis="a", step=3)
    patches = [r for r in kube_api.writes() if r.method == "PATCH"]
    assert len(patches) == patches_before + 1
    assert result.after == Weights(0, 100)
    assert weights_of(kube_api.virtual_service("shop", "checkout")) == [100, 0]

    events = kube_api.events("shop")
    assert [e["reason"] for e in events] == ["CanaryWeightsChanged", "CanaryRolledBack"]
    rolled = events[1]
    assert rolled["type"] == "Warning"
    assert rolled["involvedObject"]["kind"] == "VirtualService"
    assert rolled["involvedObject"]["name"] == "checkout"
    assert (
        rolled["involvedObject"]["uid"]
        == kube_api.virtual_service("shop", "checkout")["metadata"]["uid"]
    )
    assert "canary weight 50 -> 0" in rolled["message"]

    # setting the canary to 0 by hand (as the daemon's forced rollback does) is a rollback too
    await router.set_weights(5, analysis="a", step=4)
    await router.set_weights(0, analysis="a", step=5)
    assert [e["reason"] for e in kube_api.events("shop")][2:] == [
        "CanaryWeightsChanged",
        "CanaryRolledBack",
    ]


async def test_event_failure_never_blocks_a_weight_change(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(virtual_service())
    kube_api.deny("create", "events")
    result = await IstioRouter(kube_client, canary_config()).set_weights(40)
    assert result.changed
    assert weights_of(kube_api.virtual_service("shop", "checkout")) == [60, 40]


async def test_dry_run_logs_the_exact_patch_and_sends_nothing(
    kube_api: KubeApiServer, kube_client: KubeClient, caplog: pytest.LogCaptureFixture
) -> None:
    kube_api.create(virtual_service())
    router = IstioRouter(kube_client, canary_config(), dry_run=True)
    with caplog.at_level(logging.INFO, logger="canary.traffic"):
        result = await router.set_weights(20, analysis="a", step=1)
    assert result.dry_run and result.after == Weights(20, 80)
    assert kube_api.writes() == []
    assert weights_of(kube_api.virtual_service("shop", "checkout")) == [90, 10]
    logged = [r.getMessage() for r in caplog.records if "dry run" in r.getMessage()]
    assert len(logged) == 1
    assert json.dumps(result.patch) in logged[0]
    assert {"op": "replace", "path": "/spec/http/1/route/1/weight", "value": 20} in result.patch


# --------------------------------------------------------------------------- errors


async def test_missing_virtual_service_names_resource_and_verb(kube_client: KubeClient) -> None:
    with pytest.raises(ResourceNotFound) as info:
        await IstioRouter(kube_client, canary_config()).get()
    message = str(info.value)
    assert "cannot get virtualservices.networking.istio.io/checkout in namespace shop" in message


async def test_missing_route_names_the_route_and_the_known_ones(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(virtual_service())
    with pytest.raises(ResourceNotFound) as info:
        await IstioRouter(kube_client, canary_config(route="main")).set_weights(10)
    message = str(info.value)
    assert "route 'main' of virtualservices.networking.istio.io/checkout" in message
    assert "beta-testers, primary, legacy" in message


async def test_missing_stable_destination_is_named(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(virtual_service())
    config = canary_config(stable={"host": "checkout", "subset": "v1"})
    with pytest.raises(
        ResourceNotFound, match=r"stable destination \(host 'checkout' subset 'v1'\)"
    ):
        await IstioRouter(kube_client, config).get()


async def test_forbidden_names_resource_and_verb(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(virtual_service())
    kube_api.deny("patch", "virtualservices")
    router = IstioRouter(kube_client, canary_config())
    with pytest.raises(Forbidden) as info:
        await router.set_weights(20)
    message = str(info.value)
    assert message.startswith(
        "forbidden to patch virtualservices.networking.istio.io/checkout in namespace shop"
    )
    assert 'cannot patch resource "virtualservices"' in message  # the server's own words
    kube_api.deny("get", "virtualservices")
    with pytest.raises(Forbidden, match="forbidden to get virtualservices"):
        await router.get()


async def test_server_errors_are_retried_then_typed(kube_api: KubeApiServer) -> None:
    kube_api.create(virtual_service())
    async with client_for(kube_api, retries=2) as kube:
        router = IstioRouter(kube, canary_config())
        kube_api.fail(503, count=2, method="PATCH")  # two failures, then success
        result = await router.set_weights(20)
        assert result.changed
        assert weights_of(kube_api.virtual_service("shop", "checkout")) == [80, 20]

        kube_api.fail(500, count=3, method="PATCH")  # more than the retries
        with pytest.raises(KubeApiError) as info:
            await router.set_weights(30)
    assert info.value.status == 500 and info.value.attempts == 3
    assert "cannot patch virtualservices.networking.istio.io/checkout" in str(info.value)
    assert "HTTP 500 after 3 attempts" in str(info.value)
    assert weights_of(kube_api.virtual_service("shop", "checkout")) == [80, 20]


async def test_slow_answers_time_out_and_are_retried(kube_api: KubeApiServer) -> None:
    kube_api.create(virtual_service())
    async with client_for(kube_api, retries=1, timeout=0.3) as kube:
        router = IstioRouter(kube, canary_config())
        kube_api.slow(1.0, count=1, method="GET", path="/virtualservices/")
        assert (await router.get()).weights == Weights(10, 90)  # second try answered
        kube_api.slow(1.0, count=2, method="GET", path="/virtualservices/")
        with pytest.raises(KubeApiError, match=r"cannot get .*no answer after 2 attempts.*Timeout"):
            await router.get()


async def test_other_weighted_destinations_are_refused_zero_weight_ones_kept(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(virtual_service())
    vs_change = lambda vs: vs["spec"]["http"][1]["route"].append(  # noqa: E731
        {"destination": {"host": "checkout", "subset": "old"}, "weight": 0}
    )
    kube_api.modify(ISTIO, "virtualservices", "shop", "checkout", vs_change)
    router = IstioRouter(kube_client, canary_config())
    await router.set_weights(20)  # a zero-weight extra destination is kept as it is
    assert weights_of(kube_api.virtual_service("shop", "checkout")) == [80, 20, 0]

    kube_api.before_write.append(
        lambda api: api.modify(
            ISTIO,
            "virtualservices",
            "shop",
            "checkout",
            lambda vs: (
                vs["spec"]["http"][1]["route"][2].update(weight=10)
                or vs["spec"]["http"][1]["route"][0].update(weight=70)
            ),
        )
    )
    # the 409 re-read now sees 70/20/10: refused before sending
    with pytest.raises(InvalidWeights, match="also sends weighted traffic"):
        await router.set_weights(30, force=True)


async def test_api_422_becomes_invalid_weights(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(virtual_service())
    kube_api.fail(422, method="PATCH")
    with pytest.raises(InvalidWeights, match="rejected weights canary=20 stable=80"):
        await IstioRouter(kube_client, canary_config()).set_weights(20)


@pytest.mark.parametrize("bad", [-1, 101, 12.5, True])
async def test_weights_out_of_range_are_refused_before_any_request(
    kube_api: KubeApiServer, kube_client: KubeClient, bad: Any
) -> None:
    kube_api.create(virtual_service())
    with pytest.raises(InvalidWeights):
        await IstioRouter(kube_client, canary_config()).set_weights(bad)
    assert kube_api.requests == []


async def test_ambiguous_unnamed_routes_ask_for_a_route_name(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    vs = virtual_service()
    legacy = vs["spec"]["http"][2]["route"]
    legacy.append({"destination": {"host": "checkout", "subset": "stable"}, "weight": 50})
    legacy.append({"destination": {"host": "checkout", "subset": "canary"}, "weight": 0})
    legacy[0]["weight"] = 50
    kube_api.create(vs)
    with pytest.raises(TrafficError, match=r"routes \[1, 2\] all send traffic to host 'checkout'"):
        await IstioRouter(kube_client, canary_config(route=None)).get()


# --------------------------------------------------------------------------- factory


async def test_make_router_memory_and_kubeconfig(
    kube_api: KubeApiServer, kubeconfig_file: Any
) -> None:
    memory = make_router(KubernetesConfig(mode="memory"), canary_config())
    assert (await memory.get()).weights == Weights(0, 100)

    kube_api.create(virtual_service())
    config = KubernetesConfig(mode="kubeconfig", kubeconfig=str(kubeconfig_file), retries=1)
    async with make_router(config, canary_config()) as router:
        assert isinstance(router, IstioRouter)
        assert (await router.get()).weights == Weights(10, 90)


# --------------------------------------------------------------------------- Istio's weight rules


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        ((3, 1), Weights(25, 75)),  # stable 3 : canary 1, sum 4
        ((180, 20), Weights(10, 90)),  # sum 200
        ((2, 1), Weights(33, 67)),  # a third, rounded
        ((0, 7), Weights(100, 0)),
    ],
)
async def test_weights_are_read_as_istio_applies_them(
    kube_api: KubeApiServer, kube_client: KubeClient, declared: tuple[int, int], expected: Weights
) -> None:
    vs = virtual_service()
    route = vs["spec"]["http"][1]["route"]
    route[0]["weight"], route[1]["weight"] = declared
    kube_api.create(vs)
    router = IstioRouter(kube_client, canary_config())
    state = await router.get()
    assert state.weights == expected
    assert state.declared == {"canary": declared[1], "stable": declared[0]}
    # and a write always leaves a sum of 100
    await router.set_weights(40)
    assert weights_of(kube_api.virtual_service("shop", "checkout")) == [60, 40]


async def test_a_lone_destination_takes_all_traffic_whatever_its_weight(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    vs = virtual_service()
    vs["spec"]["http"][1]["route"] = [vs["spec"]["http"][1]["route"][0]]
    vs["spec"]["http"][1]["route"][0]["weight"] = 0  # Istio sends it everything anyway
    kube_api.create(vs)
    router = IstioRouter(kube_client, canary_config())
    assert (await router.get()).weights == Weights(0, 100)
    await router.set_weights(10)
    assert weights_of(kube_api.virtual_service("shop", "checkout")) == [90, 10]


async def test_a_zero_total_is_invalid_and_nothing_is_written(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    vs = virtual_service()
    route = vs["spec"]["http"][1]["route"]
    route[0]["weight"], route[1]["weight"] = 0, 0
    # Istio's webhook refuses this; a VirtualService stored before it was installed can
    # still hold it
    key = kube_api.create(virtual_service())["metadata"]["name"]
    kube_api.modify(
        ISTIO,
        "virtualservices",
        "shop",
        key,
        lambda o: o["spec"].__setitem__("http", vs["spec"]["http"]),
    )
    router = IstioRouter(kube_client, canary_config())
    with pytest.raises(InvalidWeights, match="route primary: the weights sum to 0"):
        await router.set_weights(10)
    assert kube_api.writes() == []


# --------------------------------------------------------------------------- records per route


def _two_route_vs() -> dict[str, Any]:
    """checkout's VirtualService with a second weighted route for another canary."""
    vs = virtual_service()
    vs["spec"]["http"][0] = {
        "name": "search",
        "match": [{"uri": {"prefix": "/search"}}],
        "route": [
            {"destination": {"host": "search", "subset": "stable"}, "weight": 100},
            {"destination": {"host": "search", "subset": "canary"}, "weight": 0},
        ],
    }
    return vs


async def test_canaries_on_two_routes_of_one_virtual_service_never_see_drift(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    kube_api.create(_two_route_vs())
    checkout = IstioRouter(kube_client, canary_config())
    search = IstioRouter(
        kube_client,
        canary_config(
            route="search",
            canary={"host": "search", "subset": "canary"},
            stable={"host": "search", "subset": "stable"},
        ),
    )
    await checkout.set_weights(20, analysis="a-checkout", step=0)
    await search.set_weights(10, analysis="a-search", step=0)
    await checkout.set_weights(50, analysis="a-checkout", step=1)
    await search.set_weights(30)  # an operator on the other route: checked against its record
    for router, weights in ((checkout, Weights(50, 50)), (search, Weights(30, 70))):
        state = await router.get()
        assert state.weights == weights and state.last_write is not None
        assert state.last_write.weights == weights and not state.drift
    stored = kube_api.virtual_service("shop", "checkout")
    book = json.loads(stored["metadata"]["annotations"][ANNOTATION])
    assert set(book) == {"primary", "search"}
    assert book["primary"]["analysis"] == "a-checkout" and book["search"]["canary"] == 30

    # someone else moves the search route: only the search canary sees drift
    def move(vs: dict[str, Any]) -> None:
        vs["spec"]["http"][0]["route"][0]["weight"] = 50
        vs["spec"]["http"][0]["route"][1]["weight"] = 50

    kube_api.modify(ISTIO, "virtualservices", "shop", "checkout", move)
    assert (await search.get()).drift and not (await checkout.get()).drift
    with pytest.raises(DriftError):
        await search.set_weights(40)
    await checkout.set_weights(100, analysis="a-checkout", step=2)


async def test_a_record_in_the_old_single_form_is_ignored_then_replaced(
    kube_api: KubeApiServer, kube_client: KubeClient
) -> None:
    vs = virtual_service()
    vs["metadata"]["annotations"][ANNOTATION] = json.dumps({"canary": 50, "stable": 50})
    kube_api.create(vs)
    router = IstioRouter(kube_client, canary_config())
    state = await router.get()
    assert state.last_write is None and not state.drift
    await router.set_weights(20)
    book = json.loads(
        kube_api.virtual_service("shop", "checkout")["metadata"]["annotations"][ANNOTATION]
    )
    assert list(book) == ["primary"] and book["primary"]["canary"] == 20
