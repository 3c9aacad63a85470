"""The local Kubernetes API server keeps the real API's semantics that other tests rely
on: merge patch, PUT preconditions, media types, validation, discovery."""

from __future__ import annotations

import pytest
from kubeapi import ISTIO, TEST_TOKEN, KubeApiServer, merge_patch, virtual_service

from canary.errors import Conflict, KubeApiError, ResourceNotFound
from canary.traffic.jsonpatch import PatchError
from canary.traffic.jsonpatch import apply_json_patch as json_patch
from canary.traffic.kube import MERGE_PATCH, Connection, KubeClient

PATH = f"/apis/{ISTIO}/v1beta1/namespaces/shop/virtualservices/checkout"


def test_patch_algorithms_follow_the_rfcs() -> None:
    # RFC 7386 section 3 example
    target = {"a": "b", "c": {"d": "e", "f": "g"}}
    assert merge_patch(target, {"a": "z", "c": {"f": None}}) == {"a": "z", "c": {"d": "e"}}
    # RFC 6902 appendix A.1, A.2, A.9 (a failed test), A.16 (append), "~1" escaping
    assert json_patch({"foo": "bar"}, [{"op": "add", "path": "/baz", "value": "qux"}]) == {
        "foo": "bar",
        "baz": "qux",
    }
    assert json_patch(
        {"foo": ["bar", "baz"]}, [{"op": "add", "path": "/foo/1", "value": "qux"}]
    ) == {"foo": ["bar", "qux", "baz"]}
    with pytest.raises(PatchError, match="the value differs"):
        json_patch({"baz": "qux"}, [{"op": "test", "path": "/baz", "value": "bar"}])
    assert json_patch({"foo": ["bar"]}, [{"op": "add", "path": "/foo/-", "value": ["abc"]}]) == {
        "foo": ["bar", ["abc"]]
    }
    assert json_patch({"a/b": 1}, [{"op": "replace", "path": "/a~1b", "value": 2}]) == {"a/b": 2}
    # A.4 (remove from an array), A.6 (move), copy; a bad index or pointer is refused
    assert json_patch({"foo": ["bar", "qux", "baz"]}, [{"op": "remove", "path": "/foo/1"}]) == {
        "foo": ["bar", "baz"]
    }
    moved = json_patch({"foo": {"bar": "baz", "waldo": "fred"}, "qux": {"corge": "grault"}},
                       [{"op": "move", "from": "/foo/waldo", "path": "/qux/thud"}])  # fmt: skip
    assert moved == {"foo": {"bar": "baz"}, "qux": {"corge": "grault", "thud": "fred"}}
    assert json_patch({"a": [1]}, [{"op": "copy", "from": "/a/0", "path": "/b"}]) == {
        "a": [1],
        "b": 1,
    }
    for bad in (
        {"op": "add", "path": "/a/01", "value": 0},
        {"op": "copy", "from": 3, "path": "/b"},
    ):
        with pytest.raises(PatchError):
            json_patch({"a": [1, 2]}, [bad])


async def test_merge_patch_put_and_their_preconditions(kube_api: KubeApiServer) -> None:
    kube_api.create(virtual_service())
    async with KubeClient(Connection(server=kube_api.url, token=TEST_TOKEN), retries=0) as kube:
        vs = await kube.request("GET", PATH, verb="get", resource="vs")
        assert vs["apiVersion"] == f"{ISTIO}/v1beta1"  # served in the version asked for
        rv = vs["metadata"]["resourceVersion"]

        patched = await kube.request(
            "PATCH",
            PATH,
            verb="patch",
            resource="vs",
            body={"metadata": {"labels": {"tier": "web"}}},
            content_type=MERGE_PATCH,
        )
        assert patched["metadata"]["labels"] == {"app": "checkout", "tier": "web"}
        assert int(patched["metadata"]["resourceVersion"]) > int(rv)
        assert patched["metadata"]["generation"] == 1  # metadata only: same generation

        stale = {"metadata": {"resourceVersion": rv, "labels": {"tier": "db"}}}
        with pytest.raises(Conflict, match="the object has been modified"):
            await kube.request(
                "PATCH", PATH, verb="patch", resource="vs", body=stale, content_type=MERGE_PATCH
            )

        vs["spec"]["http"][2]["timeout"] = "20s"
        with pytest.raises(Conflict):  # PUT with the stale version
            await kube.request("PUT", PATH, verb="update", resource="vs", body=vs)
        vs["metadata"]["resourceVersion"] = patched["metadata"]["resourceVersion"]
        updated = await kube.request("PUT", PATH, verb="update", resource="vs", body=vs)
        assert updated["metadata"]["generation"] == 2  # spec changed
        del vs["metadata"]["resourceVersion"]
        with pytest.raises(KubeApiError, match="must be specified for an update") as info:
            await kube.request("PUT", PATH, verb="update", resource="vs", body=vs)
        assert info.value.status == 422

        with pytest.raises(KubeApiError) as info:
            await kube.request(
                "PATCH",
                PATH,
                verb="patch",
                resource="vs",
                body={"spec": {}},
                content_type="application/strategic-merge-patch+json",
            )
        assert info.value.status == 415

        # Istio's rule: weights are proportions; only a negative weight or a zero total
        # (with more than one destination) is invalid
        two = [{"destination": {"host": h}, "weight": 60} for h in ("a", "b")]
        ok = {"spec": {"http": [{"route": two}]}}
        await kube.request(
            "PATCH", PATH, verb="patch", resource="vs", body=ok, content_type=MERGE_PATCH
        )
        for weights, message in (((0, 0), "total destination weight = 0"), ((-1, 3), "< 0")):
            dests = [
                {"destination": {"host": h}, "weight": w}
                for h, w in zip("ab", weights, strict=True)
            ]
            bad = {"spec": {"http": [{"route": dests}]}}
            with pytest.raises(KubeApiError, match=message) as info:
                await kube.request(
                    "PATCH", PATH, verb="patch", resource="vs", body=bad, content_type=MERGE_PATCH
                )
            assert info.value.status == 422

        listed = await kube.request(
            "GET", f"/apis/{ISTIO}/v1/namespaces/shop/virtualservices", verb="list", resource="vs"
        )
        assert [item["metadata"]["name"] for item in listed["items"]] == ["checkout"]


async def test_discovery_documents() -> None:
    with KubeApiServer(istio_versions=("v1beta1", "v1alpha3")) as api:
        async with KubeClient(Connection(server=api.url)) as kube:
            groups = await kube.request("GET", "/apis", verb="list", resource="groups")
            istio = next(g for g in groups["groups"] if g["name"] == ISTIO)
            assert [v["version"] for v in istio["versions"]] == ["v1beta1", "v1alpha3"]
            assert istio["preferredVersion"]["version"] == "v1beta1"
            resources = await kube.request(
                "GET", f"/apis/{ISTIO}/v1alpha3", verb="get", resource="resources"
            )
            assert {"virtualservices", "destinationrules"} <= {
                r["name"] for r in resources["resources"]
            }
            with pytest.raises(ResourceNotFound):  # a version the server does not serve
                await kube.request(
                    "GET", f"/apis/{ISTIO}/v1/namespaces/shop/virtualservices/x", verb="get",
                    resource="vs",
                )  # fmt: skip
