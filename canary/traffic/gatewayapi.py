"""Gateway API router: an HTTPRoute rule's backendRef weights through the Kubernetes API.

The Gateway API is how Istio's own documentation now configures traffic, in sidecar
and in ambient mode (kubernetes-sigs/gateway-api ``apis/v1/httproute_types.go``):

- The rule is found by its ``name`` (``traffic.rule``; rule names exist since
  Gateway API 1.2) or, without one, as the one rule with a backendRef to the stable
  Service (preferring rules that also reference the canary Service).
- A backendRef matches a destination when it references a core ``Service`` (group
  ``""`` and kind ``Service``, the API's defaults) of that name in that namespace
  (the backendRef's ``namespace``, defaulting to the route's). ``host`` names the
  Service: ``checkout``, ``checkout.shop`` or ``checkout.shop.svc.cluster.local``.
- Weights are proportional (a backend receives weight / sum of the rule's weights),
  an omitted weight is 1 (the CRD default) and weight 0 receives nothing; a rule
  whose weights sum to 0 sends no traffic at all and is refused. canary always writes
  percentages summing to 100 on the two backendRefs only, adding the canary
  backendRef (with the stable one's port) when the rule has none yet.
- ``gateway.networking.k8s.io`` v1, or v1beta1 where only that is served.

The write protocol (resourceVersion precondition and re-apply on 409, a per-rule
last-write record, drift refusal, rollback in one write, Events, dry run) is
`canary.traffic.kuberouter.KubeRouter`'s, shared with the VirtualService router.
"""

from __future__ import annotations

from typing import Any

from canary.config import CanaryConfig, DestinationConfig
from canary.errors import InvalidWeights, ResourceNotFound, TrafficError
from canary.traffic.base import Weights
from canary.traffic.kuberouter import KubeRouter, RouteRef

__all__ = ["GROUP", "VERSIONS", "HTTPRouteRouter", "locate_rule"]

GROUP = "gateway.networking.k8s.io"
#: Supported versions, most preferred first.
VERSIONS = ("v1", "v1beta1")


def service_of(dest: DestinationConfig, namespace: str) -> tuple[str, str]:
    """(Service name, namespace) that a destination's `host` names."""
    parts = dest.host.split(".")
    return parts[0], parts[1] if len(parts) > 1 else namespace


def _matches(ref: Any, service: tuple[str, str], namespace: str) -> bool:
    if not isinstance(ref, dict):
        return False
    return (
        (ref.get("group") or "") == ""
        and (ref.get("kind") or "Service") == "Service"
        and ref.get("name") == service[0]
        and (ref.get("namespace") or namespace) == service[1]
    )


def backend_weight(ref: dict[str, Any]) -> int:
    """A backendRef's declared weight: omitted is 1 (the Gateway API's default)."""
    value = ref.get("weight", 1)
    if value is None:
        value = 1
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidWeights(f"backendRef weight {value!r} is not an integer")
    if value < 0:
        raise InvalidWeights(f"backendRef weight {value} is negative")
    return value


def _describe(service: tuple[str, str]) -> str:
    return f"Service {service[1]}/{service[0]}"


def locate_rule(route: dict[str, Any], canary: CanaryConfig, resource: str) -> RouteRef:
    """The configured rule of an HTTPRoute; ResourceNotFound/TrafficError say what is wrong."""
    traffic, ns = canary.traffic, canary.namespace
    stable_svc = service_of(traffic.stable, ns)
    canary_svc = service_of(traffic.canary, ns)
    rules = (route.get("spec") or {}).get("rules")
    if not isinstance(rules, list) or not rules:
        raise ResourceNotFound(f"rules of {resource}", "get", "the HTTPRoute has no spec.rules")

    def refs(rule: Any) -> list[Any]:
        backends = rule.get("backendRefs") if isinstance(rule, dict) else None
        return backends if isinstance(backends, list) else []

    if traffic.rule:
        candidates = [
            i for i, r in enumerate(rules) if isinstance(r, dict) and r.get("name") == traffic.rule
        ]
        if not candidates:
            names = [r.get("name") for r in rules if isinstance(r, dict) and r.get("name")]
            raise ResourceNotFound(
                f"rule {traffic.rule!r} of {resource}",
                "get",
                f"rules named: {', '.join(names) or 'none'}",
            )
    else:
        candidates = [
            i for i, r in enumerate(rules) if any(_matches(b, stable_svc, ns) for b in refs(r))
        ]
        if not candidates:
            raise ResourceNotFound(
                f"a rule with a backendRef to the stable {_describe(stable_svc)} in {resource}",
                "get",
            )
        both = [i for i in candidates if any(_matches(b, canary_svc, ns) for b in refs(rules[i]))]
        candidates = both or candidates
        if len(candidates) > 1:
            raise TrafficError(
                f"{resource}: rules {candidates} all send traffic to the stable"
                f" {_describe(stable_svc)}; name the rule with traffic.rule"
            )
    index = candidates[0]
    backends = refs(rules[index])
    name = rules[index].get("name") or ""
    label = name or f"#{index} (unnamed)"
    stable = [j for j, b in enumerate(backends) if _matches(b, stable_svc, ns)]
    canary_at = [j for j, b in enumerate(backends) if _matches(b, canary_svc, ns)]
    if not stable:
        raise ResourceNotFound(
            f"backendRef to the stable {_describe(stable_svc)} in rule {label} of {resource}",
            "get",
        )
    if stable_svc == canary_svc:
        raise TrafficError(
            f"{resource}: canary and stable destinations are the same {_describe(stable_svc)}"
        )
    if len(stable) > 1 or len(canary_at) > 1:
        raise TrafficError(f"{resource}: rule {label} lists the same backend twice")
    ref = RouteRef(index, name, stable[0], canary_at[0] if canary_at else None)
    others = [
        b
        for j, b in enumerate(backends)
        if j not in (ref.stable, ref.canary) and backend_weight(b) != 0
    ]
    if others:
        names = ", ".join(str(b.get("name")) for b in others)
        raise InvalidWeights(
            f"{resource}: rule {label} also sends weighted traffic to {names}; canary moves"
            " traffic between exactly two backends"
        )
    return ref


def read_weights(
    route: dict[str, Any], ref: RouteRef, resource: str
) -> tuple[Weights, tuple[int, int]]:
    """The rule's split as the Gateway API defines it, and the weights as written."""
    backends = route["spec"]["rules"][ref.index]["backendRefs"]
    stable = backend_weight(backends[ref.stable])
    canary = 0 if ref.canary is None else backend_weight(backends[ref.canary])
    try:
        return Weights.proportional(canary, stable), (canary, stable)
    except InvalidWeights as exc:
        raise InvalidWeights(f"{resource}: rule {ref.label}: {exc}") from None


class HTTPRouteRouter(KubeRouter):
    """Moves one canary's HTTPRoute backendRef weights (see the module docstring)."""

    GROUP = GROUP
    VERSIONS = VERSIONS
    PLURAL = "httproutes"
    KIND = "HTTPRoute"

    NAME_FIELD = "http_route"
    ROUTES = ("rules", "backendRefs")
    find_route = staticmethod(locate_rule)
    read_route = staticmethod(read_weights)

    def new_canary(self, stable: dict[str, Any], weight: int) -> dict[str, Any]:
        name, namespace = service_of(self.canary.traffic.canary, self.namespace)
        backend: dict[str, Any] = {"name": name}
        if namespace != self.namespace:
            backend["namespace"] = namespace
        if "port" in stable:
            backend["port"] = stable["port"]
        backend["weight"] = weight
        return backend
