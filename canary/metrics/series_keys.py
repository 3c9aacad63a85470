"""Which labels identify one counter series: sidecar mode and ambient (waypoint) mode.

canary computes exact deltas per series (see `canary.metrics.collect`), and the
counters of one Envoy restart together. What names a series and its Envoy depends on
the data plane:

- **Sidecar mode** (``reporter = "destination"`` or ``"source"``): each workload pod's
  sidecar reports its own requests; the scraped ``pod`` label (`pod_label`) is the
  workload's pod, so a series is (pod, response code or ``le``) and the pod is both
  the Envoy whose counters reset together and the pod the per-pod evidence names.
- **Ambient mode** (``reporter = "waypoint"``): no sidecars; L7 metrics come from
  waypoint proxies, and the scraped ``pod`` label is the *waypoint's* pod. One waypoint
  reports requests to many destinations, so a series is (waypoint pod, destination
  workload, destination revision, response code or ``le``), the waypoint is the Envoy
  whose counters reset together (a restart resets every destination's series; a
  scale-out adds a waypoint whose series are new), and the arms are told apart by
  destination labels only. Standard Istio metrics carry no destination pod; when a
  Telemetry resource adds one (`destination_pod_label`), it joins the key and the
  per-pod evidence names destination pods, otherwise there is no per-pod evidence.

The first element of a series key (`Key[0]` in `collect`) is the plain pod name in
sidecar mode and a JSON array ``[waypoint, workload, revision(, pod)]`` in ambient
mode, so stored snapshots keep their shape.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass

from canary.config import AnalysisSettings

__all__ = ["SeriesKeys"]


@functools.lru_cache(maxsize=65536)
def _parts(series: str) -> tuple[str, ...]:
    return tuple(json.loads(series))


@dataclass(frozen=True)
class SeriesKeys:
    """How a canary's counter series are keyed (see the module docstring)."""

    pod_label: str = "pod"
    #: Ambient mode: the destination labels that join the waypoint pod in the key.
    destination_labels: tuple[str, ...] = ()
    destination_pod_label: str | None = None

    @classmethod
    def of(cls, settings: AnalysisSettings) -> SeriesKeys:
        if settings.reporter != "waypoint":
            return cls(settings.pod_label)
        labels = ["destination_workload", settings.revision_label]
        if settings.destination_pod_label:
            labels.append(settings.destination_pod_label)
        return cls(settings.pod_label, tuple(dict.fromkeys(labels)), settings.destination_pod_label)

    @property
    def ambient(self) -> bool:
        return bool(self.destination_labels)

    @property
    def grouping(self) -> str:
        """The labels a counter template groups by besides the code or ``le``."""
        return ", ".join((self.pod_label, *self.destination_labels))

    def labels(self) -> tuple[str, ...]:
        return (self.pod_label, *self.destination_labels)

    def series(self, labels: Mapping[str, str]) -> str | None:
        """The series' identity from its labels; None when one is missing."""
        if self.pod_label not in labels:
            return None
        if not self.ambient:
            return labels[self.pod_label]
        values = [labels[self.pod_label]]
        for label in self.destination_labels:
            if label not in labels:
                return None
            values.append(labels[label])
        return json.dumps(values, ensure_ascii=False, separators=(",", ":"))

    def owner(self, series: str) -> str:
        """The Envoy whose counters reset together: the pod, or the waypoint pod."""
        return _parts(series)[0] if self.ambient else series

    def evidence_pod(self, series: str) -> str | None:
        """The workload pod a series' requests went to, when the metrics carry it."""
        if not self.ambient:
            return series
        if self.destination_pod_label is None:
            return None
        return _parts(series)[-1]

    def describe(self, series: str) -> str:
        """A readable name for notes: ``waypoint-0 -> checkout-canary v2``."""
        if not self.ambient:
            return series
        waypoint, *destination = _parts(series)
        return f"{waypoint} -> {' '.join(destination)}"
