"""Istio router: a VirtualService route's weights through the Kubernetes API.

- The route is found by its ``name`` (``traffic.route``) or, for unnamed routes, as
  the one HTTP route holding the stable destination (host, and subset when set;
  short and fully-qualified host names match). Host-based (two services) and
  subset-based (DestinationRule subsets) routing both work.
- The write is a JSON patch (RFC 6902) that replaces only the two weights (adding a
  canary destination when the route has none yet) and our annotation, plus
  ``replace /metadata/resourceVersion`` with the version we read: the API server
  answers 409 when the object changed since, and we re-read, re-check drift and
  re-apply, at most `retries` more times. Every other field is left as it is.
- The annotation ``canary.analysis/last-write`` records the analysis, step and
  weights of our last write; if the weights differ from it, we report `Drift` and
  write nothing.
- ``networking.istio.io`` v1, v1beta1 or v1alpha3, whichever the server prefers.
- Dry run logs the exact patch and sends nothing. A Kubernetes Event is posted on
  the VirtualService for each change and rollback, best effort.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from canary.config import CanaryConfig, DestinationConfig
from canary.traffic.base import (
    ANNOTATION,
    ApiError,
    Conflict,
    InvalidWeights,
    NotFound,
    Router,
    TrafficError,
    TrafficState,
    Weights,
    WriteRecord,
    WriteResult,
    decide_write,
)
from canary.traffic.kube import JSON_PATCH, KubeClient

__all__ = ["GROUP", "VERSIONS", "IstioRouter", "RouteRef", "build_patch", "locate_route"]

log = logging.getLogger(__name__)

GROUP = "networking.istio.io"
#: Supported versions, most preferred first.
VERSIONS = ("v1", "v1beta1", "v1alpha3")


def _pointer(token: str) -> str:
    """One JSON-pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


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


@dataclass(frozen=True)
class RouteRef:
    """Where the weights live: the http route's index and its destinations' indexes."""

    index: int
    name: str
    stable: int
    canary: int | None  # None: the route has no canary destination yet (weight 0)

    @property
    def label(self) -> str:
        return self.name or f"#{self.index} (unnamed)"


def locate_route(vs: dict[str, Any], canary: CanaryConfig, resource: str) -> RouteRef:
    """The configured route in a VirtualService; NotFound/TrafficError say what is wrong."""
    traffic, ns = canary.traffic, canary.namespace
    http = (vs.get("spec") or {}).get("http")
    if not isinstance(http, list) or not http:
        raise NotFound(f"http routes of {resource}", "get", "the VirtualService has no spec.http")
    if traffic.route:
        candidates = [i for i, r in enumerate(http) if (r or {}).get("name") == traffic.route]
        if not candidates:
            names = [r.get("name") for r in http if isinstance(r, dict) and r.get("name")]
            raise NotFound(
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
            raise NotFound(
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
        raise NotFound(
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
        d
        for j, d in enumerate(dests)
        if j not in (ref.stable, ref.canary) and _weight(d, len(dests)) != 0
    ]
    if others:
        hosts = ", ".join(str((d.get("destination") or {}).get("host")) for d in others)
        raise InvalidWeights(
            f"{resource}: route {label} also sends weighted traffic to {hosts}; canary moves"
            " traffic between exactly two destinations"
        )
    return ref


def _weight(entry: dict[str, Any], count: int) -> int:
    """A destination's weight; a lone destination without one takes all traffic."""
    if "weight" not in entry or entry["weight"] is None:
        return 100 if count == 1 else 0
    value = entry["weight"]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidWeights(f"destination weight {value!r} is not an integer")
    return value


def read_weights(vs: dict[str, Any], ref: RouteRef, resource: str) -> Weights:
    dests = vs["spec"]["http"][ref.index]["route"]
    stable = _weight(dests[ref.stable], len(dests))
    canary = 0 if ref.canary is None else _weight(dests[ref.canary], len(dests))
    try:
        return Weights(canary, stable)
    except InvalidWeights as exc:
        raise InvalidWeights(f"{resource}: route {ref.label}: {exc}") from None


def read_record(vs: dict[str, Any]) -> WriteRecord | None:
    annotations = (vs.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(ANNOTATION)
    if not value:
        return None
    record = WriteRecord.from_json(value)
    if record is None:
        log.warning("ignoring unreadable %s annotation: %r", ANNOTATION, value)
    return record


def build_patch(
    vs: dict[str, Any],
    ref: RouteRef,
    target: Weights,
    record: WriteRecord,
    canary_destination: DestinationConfig,
) -> list[dict[str, Any]]:
    """The JSON patch: resourceVersion precondition, two weights, our annotation."""
    route = f"/spec/http/{ref.index}/route"
    dests = vs["spec"]["http"][ref.index]["route"]
    ops: list[dict[str, Any]] = [
        {
            "op": "replace",
            "path": "/metadata/resourceVersion",
            "value": vs["metadata"]["resourceVersion"],
        }
    ]

    def set_weight(j: int, value: int) -> None:
        op = "replace" if "weight" in dests[j] else "add"
        ops.append({"op": op, "path": f"{route}/{j}/weight", "value": value})

    set_weight(ref.stable, target.stable)
    if ref.canary is not None:
        set_weight(ref.canary, target.canary)
    elif target.canary > 0:
        destination: dict[str, Any] = {"host": canary_destination.host}
        if canary_destination.subset:
            destination["subset"] = canary_destination.subset
        ops.append(
            {
                "op": "add",
                "path": f"{route}/-",
                "value": {"destination": destination, "weight": target.canary},
            }
        )
    if isinstance((vs.get("metadata") or {}).get("annotations"), dict):
        ops.append(
            {
                "op": "add",
                "path": f"/metadata/annotations/{_pointer(ANNOTATION)}",
                "value": record.to_json(),
            }
        )
    else:
        ops.append(
            {"op": "add", "path": "/metadata/annotations", "value": {ANNOTATION: record.to_json()}}
        )
    return ops


class IstioRouter(Router):
    """Moves one canary's VirtualService weights (see the module docstring)."""

    def __init__(
        self,
        client: KubeClient,
        canary: CanaryConfig,
        *,
        dry_run: bool = False,
        retries: int | None = None,
        owns_client: bool = False,
    ) -> None:
        self.client = client
        self.canary = canary
        self.dry_run = dry_run
        self.retries = client.retries if retries is None else retries
        self._owns_client = owns_client
        self.name = canary.traffic.virtual_service
        self.namespace = canary.namespace
        self.resource = f"virtualservices.{GROUP}/{self.name} in namespace {self.namespace}"

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    async def _path(self) -> tuple[str, str]:
        version = await self.client.preferred_version(GROUP, VERSIONS)
        path = f"/apis/{GROUP}/{version}/namespaces/{self.namespace}/virtualservices/{self.name}"
        return version, path

    async def _read(self) -> tuple[str, str, dict[str, Any]]:
        version, path = await self._path()
        vs = await self.client.request("GET", path, verb="get", resource=self.resource)
        return version, path, vs

    async def get(self) -> TrafficState:
        version, _, vs = await self._read()
        ref = locate_route(vs, self.canary, self.resource)
        return TrafficState(
            weights=read_weights(vs, ref, self.resource),
            resource=self.resource,
            route=ref.label,
            last_write=read_record(vs),
            api_version=f"{GROUP}/{version}",
            resource_version=vs.get("metadata", {}).get("resourceVersion"),
        )

    async def set_weights(
        self,
        canary: int,
        *,
        analysis: str | None = None,
        step: int | None = None,
        by: str = "canary",
        force: bool = False,
    ) -> WriteResult:
        return await self._write(
            Weights.of_canary(canary), analysis=analysis, step=step, by=by, force=force
        )

    async def rollback(
        self,
        *,
        analysis: str | None = None,
        step: int | None = None,
        by: str = "canary",
        force: bool = False,
    ) -> WriteResult:
        return await self._write(
            Weights(0, 100), analysis=analysis, step=step, by=by, force=force, rollback=True
        )

    async def _write(
        self,
        target: Weights,
        *,
        analysis: str | None,
        step: int | None,
        by: str,
        force: bool,
        rollback: bool = False,
    ) -> WriteResult:
        attempts = self.retries + 1
        conflict: Conflict | None = None
        for attempt in range(1, attempts + 1):
            version, path, vs = await self._read()
            ref = locate_route(vs, self.canary, self.resource)
            before = read_weights(vs, ref, self.resource)
            previous = read_record(vs)
            if not decide_write(
                self.resource,
                before,
                previous,
                target,
                analysis=analysis,
                step=step,
                force=force,
            ):
                return WriteResult(before, before, changed=False, attempts=attempt, record=previous)
            record = WriteRecord(weights=target, analysis=analysis, step=step, by=by)
            patch = build_patch(vs, ref, target, record, self.canary.traffic.canary)
            if self.dry_run:
                log.info(
                    "dry run: would PATCH %s (%s) with %s",
                    path,
                    JSON_PATCH,
                    json.dumps(patch),
                    extra={"canary": self.canary.name, "dry_run": True},
                )
                return WriteResult(
                    before, target, before != target, dry_run=True, patch=patch, record=record
                )
            try:
                updated = await self.client.request(
                    "PATCH",
                    path,
                    verb="patch",
                    resource=self.resource,
                    body=patch,
                    content_type=JSON_PATCH,
                )
            except Conflict as exc:
                conflict = exc
                log.info(
                    "%s changed since we read it (attempt %d/%d); re-reading",
                    self.resource,
                    attempt,
                    attempts,
                )
                continue
            except ApiError as exc:
                if exc.status == 422:
                    raise InvalidWeights(
                        f"the API server rejected weights canary={target.canary}"
                        f" stable={target.stable} for {self.resource}: {exc.detail}"
                    ) from exc
                raise
            log.info(
                "%s route %s: canary weight %d -> %d",
                self.resource,
                ref.label,
                before.canary,
                target.canary,
                extra={"canary": self.canary.name, "analysis": analysis, "step": step},
            )
            rolled_back = rollback or (target.canary == 0 and before.canary > 0)
            await self._event(version, updated, before, target, record, rolled_back)
            return WriteResult(
                before, target, before != target, patch=patch, attempts=attempt, record=record
            )
        raise Conflict(
            self.resource, "patch", attempts, conflict.detail if conflict else ""
        ) from conflict

    async def _event(
        self,
        version: str,
        vs: dict[str, Any],
        before: Weights,
        after: Weights,
        record: WriteRecord,
        rollback: bool,
    ) -> None:
        """A core/v1 Event on the VirtualService; failures are logged, never raised.

        Reason ``CanaryWeightsChanged`` (Normal), or ``CanaryRolledBack`` (Warning) for
        a rollback or any write that takes the canary from some traffic to none.
        """
        meta = vs.get("metadata") or {}
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        who = f"analysis {record.analysis} step {record.step}" if record.analysis else record.by
        message = (
            f"canary {self.canary.name}: canary weight {before.canary} -> {after.canary}"
            f" (stable {after.stable}) by {who}"
        )
        event = {
            "metadata": {"name": f"{self.name}.{time.time_ns():x}", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": f"{GROUP}/{version}",
                "kind": "VirtualService",
                "name": self.name,
                "namespace": self.namespace,
                "uid": meta.get("uid"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": "CanaryRolledBack" if rollback else "CanaryWeightsChanged",
            "message": message,
            "type": "Warning" if rollback else "Normal",
            "source": {"component": "canary"},
            "reportingComponent": "canary",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.client.create_event(self.namespace, event)
        except TrafficError as exc:
            log.warning("could not post the Kubernetes Event (ignored): %s", exc)
        except Exception as exc:  # best effort: an event never blocks a weight change
            log.warning("could not post the Kubernetes Event (ignored): %r", exc)
