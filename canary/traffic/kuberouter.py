"""The write protocol shared by the routers that move weights in a Kubernetes resource.

One mechanism for every mesh API (Istio VirtualService, Gateway API HTTPRoute): a
subclass names the ``[canary.traffic]`` key that names its resource (`NAME_FIELD`),
how to find the canary's route in the object and read its weights (`find_route`,
`read_route`), and which JSON-patch operations set two weights; this class does the
rest, identically for all:

- read the object (the API version the server prefers among the supported ones);
- compare the route's weights with the route's own last-write record (`RecordBook`)
  and refuse with `DriftError` when someone else moved them (`decide_write`);
- one JSON patch (RFC 6902): ``replace /metadata/resourceVersion`` with the version
  read (the API server answers 409 when the object changed since: re-read, re-check
  drift, re-apply, at most `retries` more times), the weight operations and the
  route's record; every other field is left as it is;
- a 422 from the server becomes `InvalidWeights`; dry run logs the exact patch and
  sends nothing; a core/v1 Event is posted on the object for each change, best effort.
"""

from __future__ import annotations

import abc
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from canary.config import CanaryConfig
from canary.errors import Conflict, InvalidWeights, KubeApiError, TrafficError
from canary.traffic.base import (
    RecordBook,
    Router,
    TrafficState,
    Weights,
    WriteRecord,
    WriteResult,
    decide_write,
)
from canary.traffic.kube import JSON_PATCH, KubeClient

__all__ = ["KubeRouter", "Located", "RouteRef"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouteRef:
    """Where the weights live: the route's (rule's) index in the object, its name, and
    the indexes of the stable and canary destinations (backendRefs) in it."""

    index: int
    name: str
    stable: int
    canary: int | None  # None: the route has no canary destination yet (weight 0)

    @property
    def label(self) -> str:
        return self.name or f"#{self.index} (unnamed)"


@dataclass(frozen=True)
class Located:
    """The canary's route inside the object and the weights it declares now."""

    weights: Weights  # the percentages the declared weights give
    declared: tuple[int, int]  # (canary, stable) as written in the object
    ref: RouteRef

    @property
    def key(self) -> str:
        """The route's record key: its name, or "#<index>" when unnamed."""
        return self.ref.name or f"#{self.ref.index}"

    @property
    def label(self) -> str:
        """The route for messages."""
        return self.ref.label


class KubeRouter(Router):
    """Moves one canary's weights in one namespaced custom resource (see module doc)."""

    GROUP: ClassVar[str]
    VERSIONS: ClassVar[tuple[str, ...]]  # supported, most preferred first
    PLURAL: ClassVar[str]
    KIND: ClassVar[str]
    #: The `TrafficConfig` field naming the resource (``virtual_service``, ``http_route``).
    NAME_FIELD: ClassVar[str]
    #: Where a route's destinations are: ``spec.<ROUTES[0]>[index].<ROUTES[1]>``.
    ROUTES: ClassVar[tuple[str, str]]

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
        self.name = getattr(canary.traffic, self.NAME_FIELD) or ""
        self.namespace = canary.namespace
        self.dry_run = dry_run
        self.retries = client.retries if retries is None else retries
        self._owns_client = owns_client
        self.resource = f"{self.PLURAL}.{self.GROUP}/{self.name} in namespace {self.namespace}"

    # -- what a mesh API defines

    @staticmethod
    @abc.abstractmethod
    def find_route(obj: dict[str, Any], canary: CanaryConfig, resource: str) -> RouteRef:
        """The canary's route in `obj`; ResourceNotFound/TrafficError/InvalidWeights say why not."""

    @staticmethod
    @abc.abstractmethod
    def read_route(
        obj: dict[str, Any], ref: RouteRef, resource: str
    ) -> tuple[Weights, tuple[int, int]]:
        """The route's split as the API applies it, and its (canary, stable) as written."""

    @abc.abstractmethod
    def new_canary(self, stable: dict[str, Any], weight: int) -> dict[str, Any]:
        """The canary destination to add to a route that has none, next to `stable`."""

    # -- the shared protocol

    def weight_ops(
        self, obj: dict[str, Any], located: Located, target: Weights
    ) -> list[dict[str, Any]]:
        """JSON-patch operations giving the canary and stable `target` (sum 100): the
        two weights replaced (or added where omitted), or the canary destination added."""
        ref = located.ref
        routes, destinations = self.ROUTES
        path = f"/spec/{routes}/{ref.index}/{destinations}"
        entries = obj["spec"][routes][ref.index][destinations]

        def set_weight(j: int, value: int) -> dict[str, Any]:
            op = "replace" if "weight" in entries[j] else "add"
            return {"op": op, "path": f"{path}/{j}/weight", "value": value}

        ops = [set_weight(ref.stable, target.stable)]
        if ref.canary is not None:
            ops.append(set_weight(ref.canary, target.canary))
        elif target.canary > 0:
            value = self.new_canary(entries[ref.stable], target.canary)
            ops.append({"op": "add", "path": f"{path}/-", "value": value})
        return ops

    def locate(self, obj: dict[str, Any]) -> Located:
        """The canary's route in `obj` and its weights; errors as `find_route`'s."""
        ref = self.find_route(obj, self.canary, self.resource)
        weights, declared = self.read_route(obj, ref, self.resource)
        return Located(weights=weights, declared=declared, ref=ref)

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    async def _read(self) -> tuple[str, str, dict[str, Any]]:
        version = await self.client.preferred_version(self.GROUP, self.VERSIONS)
        path = f"/apis/{self.GROUP}/{version}/namespaces/{self.namespace}/{self.PLURAL}/{self.name}"
        obj = await self.client.request("GET", path, verb="get", resource=self.resource)
        return version, path, obj

    async def get(self) -> TrafficState:
        version, _, obj = await self._read()
        located = self.locate(obj)
        declared = dict(zip(("canary", "stable"), located.declared, strict=True))
        return TrafficState(
            weights=located.weights,
            resource=self.resource,
            route=located.label,
            last_write=RecordBook(obj).get(located.key),
            api_version=f"{self.GROUP}/{version}",
            resource_version=(obj.get("metadata") or {}).get("resourceVersion"),
            declared=None if declared == located.weights.as_dict() else declared,
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
            version, path, obj = await self._read()
            located = self.locate(obj)
            before = located.weights
            book = RecordBook(obj)
            previous = book.get(located.key)
            if not decide_write(
                f"{self.resource} route {located.label}",
                before,
                previous,
                target,
                analysis=analysis,
                step=step,
                force=force,
            ):
                return WriteResult(before, before, changed=False, attempts=attempt, record=previous)
            record = WriteRecord(weights=target, analysis=analysis, step=step, by=by)
            patch = [
                {
                    "op": "replace",
                    "path": "/metadata/resourceVersion",
                    "value": obj["metadata"]["resourceVersion"],
                },
                *self.weight_ops(obj, located, target),
                *book.patch_ops(located.key, record),
            ]
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
            except KubeApiError as exc:
                if exc.status == 422:
                    raise InvalidWeights(
                        f"the API server rejected weights canary={target.canary}"
                        f" stable={target.stable} for {self.resource}: {exc.detail}"
                    ) from exc
                raise
            log.info(
                "%s route %s: canary weight %d -> %d",
                self.resource,
                located.label,
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
        obj: dict[str, Any],
        before: Weights,
        after: Weights,
        record: WriteRecord,
        rollback: bool,
    ) -> None:
        """A core/v1 Event on the object; failures are logged, never raised.

        Reason ``CanaryWeightsChanged`` (Normal), or ``CanaryRolledBack`` (Warning) for
        a rollback or any write that takes the canary from some traffic to none.
        """
        meta = obj.get("metadata") or {}
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        who = f"analysis {record.analysis} step {record.step}" if record.analysis else record.by
        message = (
            f"canary {self.canary.name}: canary weight {before.canary} -> {after.canary}"
            f" (stable {after.stable}) by {who}"
        )
        event = {
            "metadata": {"name": f"{self.name}.{time.time_ns():x}", "namespace": self.namespace},
            "involvedObject": {
                "apiVersion": f"{self.GROUP}/{version}",
                "kind": self.KIND,
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
