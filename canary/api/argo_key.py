"""What an Argo Rollouts measurement names, turned into a configured canary and a key.

Argo can pass: the namespace, the canary (or service) name, the canary and stable
pod-template hashes (`valueFrom.podTemplateHashValue: Latest` / `Stable`) and an
optional profile. Every value may arrive as a string.

The arms: the configured canary's label matchers are kept, and each arm gets one
more matcher on the pod label (`pod_label`, default `pod`, which the standard Istio
scrape configuration adds to sidecar metrics): Argo Rollouts pods are named
``<rollout>-<pod-template-hash>-<5 random characters>``, so the canary arm matches
``pod=~".+-<canary hash>-[a-z0-9]{5}"`` and the baseline arm the same with the
stable hash. Istio's own labels (`destination_workload`,
`destination_canonical_revision`) are the same for both ReplicaSets of a Rollout
and cannot tell them apart. In ambient mode (``reporter = "waypoint"``) the `pod`
label is the waypoint's, so the matcher goes on `destination_pod_label` instead; a
canary in ambient mode without one is a 400 naming the setting. Hashes are validated
(lowercase letters and digits) and regex-escaped; the metrics layer escapes every
value again as a PromQL string.

The key ``argo/<namespace>/<canary>/<canary hash>/<stable hash>/<profile>`` makes
repeated calls, the background analysis and the promotion gate of one rollout
revision share one stored analysis, across calls and restarts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from canary.api.errors import ApiError
from canary.config import ArmConfig, CanaryConfig, Config

__all__ = ["ARGO_ARGS", "ArgoTarget", "pod_regex", "resolve_target"]

#: Every argument the endpoint takes (GET query parameters or POST JSON fields).
ARGO_ARGS = ("namespace", "canary", "service", "canaryHash", "stableHash", "profile")

_HASH = re.compile(r"^[a-z0-9]{1,63}$")
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_HOST = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class ArgoTarget:
    """The resolved measurement target."""

    canary: CanaryConfig  # the configured canary with the hash matchers added
    key: str
    canary_hash: str
    stable_hash: str
    profile: str


def pod_regex(pod_template_hash: str) -> str:
    """The pod-name regex (RE2, fully anchored by Prometheus) of one ReplicaSet's pods."""
    return f".+-{re.escape(pod_template_hash)}-[a-z0-9]{{5}}"


def _clean(args: dict[str, str | None], name: str) -> str | None:
    value = args.get(name)
    if value is None:
        return None
    value = str(value).strip()
    return value or None


def _find_canary(config: Config, name: str | None, service: str | None) -> CanaryConfig:
    if name is not None:
        if not _LABEL.match(name):
            raise ApiError(400, f"canary: {name!r} is not a valid canary name", field="canary")
        for canary in config.canary:
            if canary.name == name:
                return canary
        known = ", ".join(c.name for c in config.canary) or "none configured"
        raise ApiError(400, f"canary: no canary named {name!r} (known: {known})", field="canary")
    assert service is not None
    if not _HOST.match(service):
        raise ApiError(400, f"service: {service!r} is not a valid service name", field="service")
    matches = [
        c
        for c in config.canary
        if service == c.name
        or service in (c.traffic.canary.host, c.traffic.stable.host)
        or service in (c.traffic.canary.host.split(".")[0], c.traffic.stable.host.split(".")[0])
    ]
    if len(matches) != 1:
        why = "no configured canary routes" if not matches else "several configured canaries route"
        raise ApiError(400, f"service: {why} service {service!r}; pass canary", field="service")
    return matches[0]


def _with_hash(arm: ArmConfig, pod_label: str, pod_template_hash: str) -> ArmConfig:
    match = {k: v for k, v in arm.match.items() if k != pod_label}
    regex = {k: v for k, v in arm.match_regex.items() if k != pod_label}
    regex[pod_label] = pod_regex(pod_template_hash)
    return ArmConfig(match=match, match_regex=regex)


def resolve_target(config: Config, args: dict[str, str | None]) -> ArgoTarget:
    """The configured canary and analysis key for one measurement; 400 naming the field."""
    name, service = _clean(args, "canary"), _clean(args, "service")
    if name is None and service is None:
        raise ApiError(400, "canary: pass the canary name (or service)", field="canary")
    canary = _find_canary(config, name, service)

    namespace = _clean(args, "namespace")
    if namespace is not None and namespace != canary.namespace:
        raise ApiError(
            400,
            f"namespace: canary {canary.name!r} is configured in namespace "
            f"{canary.namespace!r}, not {namespace!r}",
            field="namespace",
        )
    hashes = {}
    for field in ("canaryHash", "stableHash"):
        value = _clean(args, field)
        if value is None:
            raise ApiError(400, f"{field}: required (a pod-template hash)", field=field)
        if not _HASH.match(value):
            raise ApiError(
                400,
                f"{field}: {value[:80]!r} is not a pod-template hash "
                "(lowercase letters and digits)",
                field=field,
            )
        hashes[field] = value
    if hashes["canaryHash"] == hashes["stableHash"]:
        raise ApiError(
            400,
            "canaryHash: equals stableHash; there is no canary to compare with the stable pods",
            field="canaryHash",
        )
    profile = _clean(args, "profile") or "default"
    if not _LABEL.match(profile):
        raise ApiError(
            400,
            f"profile: {profile[:80]!r} must be a DNS label (lowercase letters, digits, '-')",
            field="profile",
        )
    pod_label = canary.pod_label
    if canary.reporter == "waypoint":
        if canary.destination_pod_label is None:
            raise ApiError(
                400,
                f"canary: {canary.name!r} reads waypoint metrics (reporter = 'waypoint'), whose"
                " pod label is the waypoint's; Argo's pod-template hashes need a destination pod"
                " label: set destination_pod_label",
                field="canary",
            )
        pod_label = canary.destination_pod_label
    judged = _judged(canary, pod_label, hashes["canaryHash"], hashes["stableHash"])
    key = "/".join(
        ("argo", canary.namespace, canary.name, hashes["canaryHash"], hashes["stableHash"], profile)
    )
    return ArgoTarget(judged, key, hashes["canaryHash"], hashes["stableHash"], profile)


#: The judged canary per configured canary, pod label and hashes: every call of one
#: rollout gets the same object, so what collection derives from a canary once (its
#: rendered queries, `canary.metrics.collect`) serves all its rounds.
_JUDGED: dict[tuple[int, str, str, str], tuple[CanaryConfig, CanaryConfig]] = {}


def _judged(
    canary: CanaryConfig, pod_label: str, canary_hash: str, stable_hash: str
) -> CanaryConfig:
    """`canary` with each arm narrowed to its pod-template hash (see the module doc)."""
    key = (id(canary), pod_label, canary_hash, stable_hash)
    hit = _JUDGED.get(key)
    if hit is not None and hit[0] is canary:
        return hit[1]
    arms = {
        "canary": _with_hash(canary.arms["canary"], pod_label, canary_hash),
        "baseline": _with_hash(canary.arms["baseline"], pod_label, stable_hash),
    }
    judged = canary.model_copy(update={"arms": arms})
    if len(_JUDGED) >= 4096:
        _JUDGED.clear()
    _JUDGED[key] = (canary, judged)
    return judged
