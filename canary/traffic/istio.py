"""Istio router: a VirtualService route's weights through the Kubernetes API.

- The route is found by its ``name`` (``traffic.route``) or, for unnamed routes, as
  the one HTTP route holding the stable destination (host, and subset when set;
  short and fully-qualified host names match). Host-based (two services) and
  subset-based (DestinationRule subsets) routing both work.
- Weights are read as Istio applies them: proportional to the sum of the route's
  weights, a lone destination taking everything (see `read_weights`); canary always
  writes percentages summing to 100.
- The write replaces only the two weights (adding a canary destination when the
  route has none yet) and the route's last-write record; the protocol (precondition,
  409 re-apply, drift, events, dry run) is `canary.traffic.kuberouter.KubeRouter`'s.
- ``networking.istio.io`` v1, v1beta1 or v1alpha3, whichever the server prefers.
"""

from __future__ import annotations

import logging
from typing import Any

from canary.config import CanaryConfig, DestinationConfig
from canary.errors import InvalidWeights, ResourceNotFound, TrafficError
from canary.traffic.base import Weights
from canary.traffic.kuberouter import KubeRouter, RouteRef

__all__ = ["GROUP", "VERSIONS", "IstioRouter", "locate_route"]

log = logging.getLogger(__name__)

GROUP = "networking.istio.io"
#: Supported versions, most preferred first.
VERSIONS = ("v1", "v1beta1", "v1alpha3")


def _fqdn(host: str, namespace: str) -> str:
    """Istio's short-name rule: ``svc`` -> ``svc.<namespace>.svc.cluster.local``."""
    parts = host.split(".")
    if len(parts) == 1:
        return f"{host}.{namespace}.svc.cluster.local"
    if len(parts) == 2:
        return f"{host}.svc.cluster.local"
    if len(parts) == 3 and parts[2] == "svc":
        return f"{host}.cluster.local"
    return host


def _matches(entry: Any, dest: DestinationConfig, namespace: str) -> bool:
    if not isinstance(entry, dict):
        return False
    target = entry.get("destination") or {}
    host = target.get("host")
    return (
        isinstance(host, str)
        and _fqdn(host, namespace) == _fqdn(dest.host, namespace)
        and target.get("subset") == dest.subset
    )


def _describe(dest: DestinationConfig) -> str:
    return f"host {dest.host!r}" + (f" subset {dest.subset!r}" if dest.subset else "")


def locate_route(vs: dict[str, Any], canary: CanaryConfig, resource: str) -> RouteRef:
    """The configured route in a VirtualService; ResourceNotFound/TrafficError say what is wrong."""
    traffic, ns = canary.traffic, canary.namespace
    http = (vs.get("spec") or {}).get("http")
    if not isinstance(http, list) or not http:
        raise ResourceNotFound(
            f"http routes of {resource}", "get", "the VirtualService has no spec.http"
        )
    if traffic.route:
        candidates = [i for i, r in enumerate(http) if (r or {}).get("name") == traffic.route]
        if not candidates:
            names = [r.get("name") for r in http if isinstance(r, dict) and r.get("name")]
            raise ResourceNotFound(
                f"route {traffic.route!r} of {resource}",
                "get",
                f"routes named: {', '.join(names) or 'none'}",
            )
    else:
        candidates = [
            i
            for i, r in enumerate(http)
            if any(_matches(d, traffic.stable, ns) for d in (r or {}).get("route") or [])
        ]
        if not candidates:
            raise ResourceNotFound(
                f"a route to the stable destination ({_describe(traffic.stable)}) in {resource}",
                "get",
            )
        both = [
            i
            for i in candidates
            if any(_matches(d, traffic.canary, ns) for d in http[i].get("route") or [])
        ]
        candidates = both or candidates
        if len(candidates) > 1:
            raise TrafficError(
                f"{resource}: http routes {candidates} all send traffic to"
                f" {_describe(traffic.stable)}; name the route with traffic.route"
            )
    index = candidates[0]
    route = http[index]
    dests = route.get("route") or []
    stable = [j for j, d in enumerate(dests) if _matches(d, traffic.stable, ns)]
    canary_at = [j for j, d in enumerate(dests) if _matches(d, traffic.canary, ns)]
    name = route.get("name") or ""
    label = name or f"#{index} (unnamed)"
    if not stable:
        raise ResourceNotFound(
            f"stable destination ({_describe(traffic.stable)}) in route {label} of {resource}",
            "get",
        )
    if len(stable) > 1 or len(canary_at) > 1:
        raise TrafficError(f"{resource}: route {label} lists the same destination twice")
    if canary_at and canary_at[0] == stable[0]:
        raise TrafficError(
            f"{resource}: canary and stable destinations are the same ({_describe(traffic.stable)})"
        )
    ref = RouteRef(index, name, stable[0], canary_at[0] if canary_at else None)
    others = [
        d for j, d in enumerate(dests) if j not in (ref.stable, ref.canary) and _weight(d) != 0
    ]
    if others:
        hosts = ", ".join(str((d.get("destination") or {}).get("host")) for d in others)
        raise InvalidWeights(
            f"{resource}: route {label} also sends weighted traffic to {hosts}; canary moves"
            " traffic between exactly two destinations"
        )
    return ref


def _weight(entry: dict[str, Any]) -> int:
    """A destination's declared weight; omitted means 0 (the proto default)."""
    value = entry.get("weight")
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidWeights(f"destination weight {value!r} is not an integer")
    if value < 0:
        raise InvalidWeights(f"destination weight {value} is negative")
    return value


def read_weights(
    vs: dict[str, Any], ref: RouteRef, resource: str
) -> tuple[Weights, tuple[int, int]]:
    """The route's split as Istio applies it, and the weights as written.

    A destination receives weight / (sum of the route's weights); a lone destination
    receives everything whatever its weight (istio/istio pkg/config/validation:
    ``validateHTTPRouteDestinations`` rejects only negative weights and, with more
    than one destination, a zero total).
    """
    dests = vs["spec"]["http"][ref.index]["route"]
    if len(dests) == 1:
        return Weights(0, 100), (0, _weight(dests[ref.stable]))
    stable = _weight(dests[ref.stable])
    canary = 0 if ref.canary is None else _weight(dests[ref.canary])
    try:
        return Weights.proportional(canary, stable), (canary, stable)
    except InvalidWeights as exc:
        raise InvalidWeights(f"{resource}: route {ref.label}: {exc}") from None


class IstioRouter(KubeRouter):
    """Moves one canary's VirtualService weights (see the module docstring)."""

    GROUP = GROUP
    VERSIONS = VERSIONS
    PLURAL = "virtualservices"
    KIND = "VirtualService"

    NAME_FIELD = "virtual_service"
    ROUTES = ("http", "route")
    find_route = staticmethod(locate_route)
    read_route = staticmethod(read_weights)

    def new_canary(self, stable: dict[str, Any], weight: int) -> dict[str, Any]:
        canary = self.canary.traffic.canary
        destination: dict[str, Any] = {"host": canary.host}
        if canary.subset:
            destination["subset"] = canary.subset
        return {"destination": destination, "weight": weight}
