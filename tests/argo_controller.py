"""Argo Rollouts' analysis controller, played for one metric of an AnalysisRun.

What it restates from argo-rollouts (read in the upstream repository):

- `analysis/analysis.go`, `generateMetricTasks`: the next measurement is due
  `interval` after the last one finished, but `DefaultErrorRetryInterval` (10 s,
  `utils/defaults/defaults.go`) after a measurement in phase Error, whatever the
  interval; once `count` measurements are taken no more are.
- `analysis/analysis.go`, the measurement bookkeeping: Successful, Failed and
  Inconclusive each add to `count` and reset the consecutive-error counter; an Error
  adds to `error` and `consecutiveError` but not to `count`.
- `analysis/analysis.go`, `assessMetricFailureInconclusiveOrError`: Failed when
  `failed > failureLimit` (default 0, negative = off), Inconclusive when
  `inconclusive > inconclusiveLimit` (default 0), Error when
  `consecutiveError > consecutiveErrorLimit` (default 4,
  `defaults.GetConsecutiveErrorLimitOrDefault`), checked in that order so a later
  rule wins; then Successful once `count` is reached; else the metric runs on.
- `metricproviders/webmetric/webmetric.go`: a transport error, a timeout or a non-2xx
  answer is an Error (`api_harness.ArgoWebMetric` plays the provider).

Time is the API's pinned clock (`api_fixtures.Clock`), moved by the schedule;
`pace` optionally sleeps a fraction of each gap in real time, for faults that play out
in real time (a Prometheus slower than its timeout).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from api_harness import ArgoWebMetric, Measurement

#: utils/defaults/defaults.go: DefaultErrorRetryInterval.
ERROR_RETRY_SECONDS = 10.0
#: utils/defaults/defaults.go: DefaultConsecutiveErrorLimit.
DEFAULT_CONSECUTIVE_ERROR_LIMIT = 4


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration):
        total += float(number) * units[unit]
    return total


@dataclass
class Taken:
    at: float  # seconds since the run started
    measurement: Measurement


@dataclass
class MetricRun:
    """One metric of an AnalysisRun: its counters, measurements and phase."""

    metric: ArgoWebMetric
    measurements: list[Taken] = field(default_factory=list)
    count: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_error: int = 0

    @property
    def spec(self) -> dict[str, Any]:
        return self.metric.metric

    def _limit(self, name: str, default: int) -> int:
        value = self.spec.get(name)
        return default if value is None else int(value)

    def record(self, at: float, measurement: Measurement) -> None:
        self.measurements.append(Taken(at, measurement))
        phase = measurement.phase
        if phase == "Error":
            self.error += 1
            self.consecutive_error += 1
            return
        self.count += 1
        self.consecutive_error = 0
        if phase == "Successful":
            self.successful += 1
        elif phase == "Failed":
            self.failed += 1
        else:
            self.inconclusive += 1

    def phase(self) -> str:
        """Pending | Running | Successful | Failed | Inconclusive | Error."""
        if not self.measurements:
            return "Pending"
        phase = ""
        failure_limit = self._limit("failureLimit", 0)
        if failure_limit >= 0 and self.failed > failure_limit:
            phase = "Failed"
        if self.inconclusive > self._limit("inconclusiveLimit", 0):
            phase = "Inconclusive"
        limit = self._limit("consecutiveErrorLimit", DEFAULT_CONSECUTIVE_ERROR_LIMIT)
        if self.consecutive_error > limit:
            phase = "Error"
        if phase:
            return phase
        count = self.spec.get("count")
        if count is not None and self.count >= int(count):
            return "Successful"
        return "Running"

    def next_gap(self) -> float | None:
        """Seconds until the next measurement is due; None when none will be taken."""
        count = self.spec.get("count")
        if count is not None and self.count >= int(count):
            return None
        if self.measurements[-1].measurement.phase == "Error":
            return ERROR_RETRY_SECONDS
        interval = self.spec.get("interval")
        return _seconds(interval) if interval else ERROR_RETRY_SECONDS


def run_metric(
    metric: ArgoWebMetric,
    clock: Any,
    *,
    until: float,
    before_each: Callable[[float], None] | None = None,
    pace: float = 0.0,
) -> MetricRun:
    """Drive one metric from t = 0 until its phase is final or `until` seconds passed.

    `before_each(t)` runs before each measurement (to inject faults at chosen
    times); `pace` is the real seconds slept per virtual second between measurements.
    """
    run = MetricRun(metric)
    t = 0.0
    while True:
        if before_each is not None:
            before_each(t)
        run.record(t, metric.measure())
        if run.phase() not in ("Running", "Pending"):
            return run
        gap = run.next_gap()
        if gap is None or t + gap > until:
            return run
        clock.advance(gap)
        if pace:
            time.sleep(gap * pace)
        t += gap
