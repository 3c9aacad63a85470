"""The Argo endpoint's arms in ambient mode: pod-template hashes match destination pods.

Waypoint metrics carry the waypoint's pod in `pod`; the hashes of Argo's ReplicaSets
must be matched on the destination pod label instead, and without one the endpoint
says which setting is missing.
"""

from __future__ import annotations

from typing import Any

import pytest

from canary.api.argo_key import pod_regex, resolve_target
from canary.api.errors import ApiError
from canary.config import parse_config

ARGS = {"canary": "checkout", "canaryHash": "6d4f8b7c9", "stableHash": "58c7d9f6b"}


def config(**extra: Any):  # type: ignore[no-untyped-def]
    return parse_config(
        {
            "canary": [
                {
                    "name": "checkout",
                    "namespace": "shop",
                    "traffic": {
                        "kind": "HTTPRoute",
                        "http_route": "checkout",
                        "canary": {"host": "checkout-canary"},
                        "stable": {"host": "checkout-stable"},
                    },
                    "arms": {
                        "canary": {"match": {"destination_workload": "checkout"}},
                        "baseline": {"match": {"destination_workload": "checkout"}},
                    },
                    **extra,
                }
            ]
        }
    )


def test_ambient_hashes_match_the_destination_pod_label() -> None:
    target = resolve_target(
        config(reporter="waypoint", destination_pod_label="destination_pod"), dict(ARGS)
    )
    canary = target.canary.arms["canary"]
    assert canary.match_regex == {"destination_pod": pod_regex("6d4f8b7c9")}
    assert "pod" not in canary.match_regex  # the waypoint's pod is never an arm matcher
    assert target.canary.arms["baseline"].match_regex == {"destination_pod": pod_regex("58c7d9f6b")}


def test_sidecar_hashes_stay_on_the_pod_label() -> None:
    target = resolve_target(config(), dict(ARGS))
    assert target.canary.arms["canary"].match_regex == {"pod": pod_regex("6d4f8b7c9")}


def test_ambient_without_a_destination_pod_label_is_a_400_naming_the_setting() -> None:
    with pytest.raises(ApiError) as info:
        resolve_target(config(reporter="waypoint"), dict(ARGS))
    assert info.value.status == 400
    assert "set destination_pod_label" in str(info.value)
