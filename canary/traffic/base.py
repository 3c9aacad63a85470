"""The router interface: read a canary's weights, set them safely, roll back in one write.

A router moves traffic for one configured canary between its *stable* and *canary*
destinations. Every implementation keeps the same safety rules (docs/architecture.md):

- the weights canary writes are integers in 0..100 that sum to 100 (`InvalidWeights`
  otherwise); weights read from the cluster are proportional, as the meshes define
  them (`Weights.proportional`: a destination receives weight / sum of weights);
- each write records who wrote which weights (`WriteRecord`), one record per route
  of the resource (`RecordBook`), so canaries on different routes of one resource
  never see each other's writes as drift; before writing, the current weights are
  compared with the route's last record, and if someone else changed them the write
  is refused with `DriftError` — reported, never overwritten (`force=True` is the
  operator's explicit override; a new analysis is not bound by the record of a
  previous one, see `decide_write`);
- a write that meets a concurrent writer re-reads, re-checks drift and re-applies,
  a bounded number of times (`Conflict` when exhausted);
- rollback is one write that sets the canary weight to 0.

The errors named here live in `canary.errors`.
"""

from __future__ import annotations

import abc
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from canary.errors import DriftError, InvalidWeights

__all__ = [
    "ANNOTATION",
    "RecordBook",
    "Router",
    "TrafficState",
    "Weights",
    "WriteRecord",
    "WriteResult",
]

log = logging.getLogger(__name__)

#: The annotation on the routed resource recording our last write per route: a JSON
#: object ``{route key: record}`` (see `RecordBook` and `WriteRecord`).
ANNOTATION = "canary.analysis/last-write"


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Weights:
    """Canary and stable weights: integers in 0..100 that sum to 100."""

    canary: int
    stable: int

    def __post_init__(self) -> None:
        for name in ("canary", "stable"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidWeights(f"{name} weight must be an integer, got {value!r}")
            if not 0 <= value <= 100:
                raise InvalidWeights(f"{name} weight must be within 0..100, got {value}")
        if self.canary + self.stable != 100:
            raise InvalidWeights(
                f"weights must sum to 100, got canary={self.canary} + stable={self.stable}"
                f" = {self.canary + self.stable}"
            )

    @classmethod
    def of_canary(cls, canary: int) -> Weights:
        """The split giving `canary` percent to the canary and the rest to stable."""
        if isinstance(canary, bool) or not isinstance(canary, int):
            raise InvalidWeights(f"canary weight must be an integer, got {canary!r}")
        if not 0 <= canary <= 100:
            raise InvalidWeights(f"canary weight must be within 0..100, got {canary}")
        return cls(canary, 100 - canary)

    @classmethod
    def proportional(cls, canary: int, stable: int) -> Weights:
        """The percentages that weights `canary` and `stable` declare, rounded half up.

        Istio and the Gateway API both read weights as proportions: a destination
        receives weight / (sum of weights), and the sum need not be 100 (Istio's
        ``validateHTTPRouteDestinations`` in istio/istio pkg/config/validation only
        rejects negative weights and a zero total; the Gateway API's
        ``BackendRef.Weight`` in kubernetes-sigs/gateway-api apis/v1/shared_types.go).
        A zero total sends no traffic anywhere and is refused here.
        """
        for name, value in (("canary", canary), ("stable", stable)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidWeights(f"{name} weight must be an integer, got {value!r}")
            if value < 0:
                raise InvalidWeights(f"{name} weight must not be negative, got {value}")
        total = canary + stable
        if total == 0:
            raise InvalidWeights("the weights sum to 0: no destination receives traffic")
        share = (200 * canary + total) // (2 * total)
        return cls(share, 100 - share)

    def as_dict(self) -> dict[str, int]:
        return {"canary": self.canary, "stable": self.stable}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class WriteRecord:
    """Who last wrote the weights and what they were: the drift reference."""

    weights: Weights
    analysis: str | None = None
    step: int | None = None
    by: str = "canary"
    at: str = field(default_factory=_now)

    def to_json(self) -> str:
        return json.dumps(
            {
                "analysis": self.analysis,
                "step": self.step,
                "canary": self.weights.canary,
                "stable": self.weights.stable,
                "by": self.by,
                "at": self.at,
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> WriteRecord | None:
        """The record from the annotation's value; None when it is unreadable."""
        try:
            data = json.loads(text)
            return cls(
                weights=Weights(int(data["canary"]), int(data["stable"])),
                analysis=None if data.get("analysis") is None else str(data["analysis"]),
                step=None if data.get("step") is None else int(data["step"]),
                by=str(data.get("by") or "canary"),
                at=str(data.get("at") or ""),
            )
        except (ValueError, TypeError, KeyError, InvalidWeights):
            return None

    def as_dict(self) -> dict[str, Any]:
        return json.loads(self.to_json())


class RecordBook:
    """The last-write records of every route of one resource, in one annotation.

    The annotation holds ``{route key: record}``; a write replaces its own route's
    entry and keeps the others (the resourceVersion precondition of the write makes
    this read-modify-write safe). A route key is the route's (or rule's) name, or
    ``#<index>`` for an unnamed one. An annotation in the old single-record form
    names no route and is ignored (with a warning) until the next write replaces it.
    """

    def __init__(self, obj: Mapping[str, Any]) -> None:
        annotations = (obj.get("metadata") or {}).get("annotations")
        self._has_annotations = isinstance(annotations, dict)
        self.records: dict[str, WriteRecord] = {}
        self._raw: dict[str, Any] = {}
        value = annotations.get(ANNOTATION) if isinstance(annotations, dict) else None
        if not value:
            return
        try:
            data = json.loads(value)
        except ValueError:
            data = None
        if not isinstance(data, dict) or "canary" in data:
            log.warning("ignoring %s annotation without per-route records: %r", ANNOTATION, value)
            return
        for key, entry in data.items():
            record = WriteRecord.from_json(json.dumps(entry))
            if record is None:
                log.warning("ignoring unreadable %s record of route %r", ANNOTATION, key)
                continue
            self.records[str(key)] = record
            self._raw[str(key)] = entry

    def get(self, key: str) -> WriteRecord | None:
        return self.records.get(key)

    def patch_ops(self, key: str, record: WriteRecord) -> list[dict[str, Any]]:
        """JSON-patch operations writing `record` for route `key`, keeping the others."""
        book = {**self._raw, key: record.as_dict()}
        value = json.dumps(book, separators=(",", ":"), sort_keys=True)
        if self._has_annotations:
            path = "/metadata/annotations/" + ANNOTATION.replace("~", "~0").replace("/", "~1")
            return [{"op": "add", "path": path, "value": value}]
        return [{"op": "add", "path": "/metadata/annotations", "value": {ANNOTATION: value}}]


@dataclass(frozen=True)
class TrafficState:
    """The weights as read now, where they live and the last write we recorded."""

    weights: Weights
    resource: str
    route: str
    last_write: WriteRecord | None = None
    api_version: str | None = None
    resource_version: str | None = None
    #: The weights as written in the resource (proportional), when they differ in form
    #: from the percentages, e.g. ``{"canary": 1, "stable": 3}`` for 25/75.
    declared: dict[str, int] | None = None

    @property
    def drift(self) -> bool:
        """True when the weights differ from the ones we last wrote."""
        return self.last_write is not None and self.last_write.weights != self.weights

    def as_dict(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "route": self.route,
            "apiVersion": self.api_version,
            "resourceVersion": self.resource_version,
            "weights": self.weights.as_dict(),
            "declaredWeights": self.declared,
            "lastWrite": self.last_write.as_dict() if self.last_write else None,
            "drift": self.drift,
        }


@dataclass(frozen=True)
class WriteResult:
    """What a set or rollback did: before/after, whether it wrote, the exact patch."""

    before: Weights
    after: Weights
    changed: bool
    dry_run: bool = False
    patch: Any = None
    attempts: int = 1
    record: WriteRecord | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "before": self.before.as_dict(),
            "after": self.after.as_dict(),
            "changed": self.changed,
            "dryRun": self.dry_run,
            "patch": self.patch,
            "attempts": self.attempts,
            "record": self.record.as_dict() if self.record else None,
        }


# --------------------------------------------------------------------------- interface


class Router(abc.ABC):
    """Moves one canary's traffic. Async; close with `aclose()` (or `async with`)."""

    @abc.abstractmethod
    async def get(self) -> TrafficState:
        """The current weights and our last recorded write."""

    @abc.abstractmethod
    async def set_weights(
        self,
        canary: int,
        *,
        analysis: str | None = None,
        step: int | None = None,
        by: str = "canary",
        force: bool = False,
    ) -> WriteResult:
        """Give `canary` percent to the canary, the rest to stable.

        Raises DriftError when the current weights differ from our last recorded write
        (unless `force`), and another `TrafficError` otherwise: InvalidWeights,
        ResourceNotFound, Forbidden, Conflict, KubeApiError. Writing the weights already in
        place for the same analysis and step is a no-op, so re-applying an action is
        safe. The rounds use this through `canary.ports.Router`.
        """

    async def rollback(
        self,
        *,
        analysis: str | None = None,
        step: int | None = None,
        by: str = "canary",
        force: bool = False,
    ) -> WriteResult:
        """Send all traffic to stable (canary weight 0) in one write."""
        return await self.set_weights(0, analysis=analysis, step=step, by=by, force=force)

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections (nothing by default)."""

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def decide_write(
    resource: str,
    current: Weights,
    record: WriteRecord | None,
    target: Weights,
    *,
    analysis: str | None,
    step: int | None,
    force: bool,
) -> bool:
    """Whether a write is needed; raise DriftError when the weights moved under us.

    Shared by every router so the rule is the same everywhere: with a record, the
    current weights must equal the recorded ones (else DriftError, unless `force`); a
    write is skipped when the target is in place and the record names the same
    analysis and step (a replayed step is never applied twice).

    A record left by a *different* analysis does not bind a new one: a new analysis
    takes over from whatever weights are in place (e.g. reset to stable after the
    previous analysis promoted). Writes without an analysis (an operator's
    `canary traffic set`) are always checked against the record.
    """
    binding = record is not None and not (
        analysis is not None and record.analysis is not None and record.analysis != analysis
    )
    if binding and record is not None and record.weights != current and not force:
        raise DriftError(resource, current, record)
    return not (
        current == target
        and record is not None
        and record.weights == target
        and (record.analysis, record.step) == (analysis, step)
    )
