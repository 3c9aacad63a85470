"""The Prometheus metric source: `canary.ports.MetricSource` on `canary.metrics.collect`."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from canary.config import CanaryConfig, PrometheusConfig
from canary.model import RoundData
from canary.ports import Collected

__all__ = ["PrometheusSource"]

log = logging.getLogger(__name__)


class PrometheusSource:
    """A MetricSource on the real Prometheus, adapting `canary.metrics.collect`.

    One shared async client (connection pool, concurrency limit) for every canary.
    A stored snapshot of a different format or other data problems become an error
    round, never an exception; template problems (configuration errors) do raise.
    """

    def __init__(self, config: PrometheusConfig, *, client: Any | None = None) -> None:
        from canary.metrics.prometheus import PrometheusClient

        self.config = config
        self.client = client if client is not None else PrometheusClient(config)
        self._templates: Any | None = None

    def _template_set(self) -> Any:
        if self._templates is None:
            from canary.metrics.queries import load_templates

            self._templates = load_templates(self.config.templates_dir)
        return self._templates

    async def collect(
        self,
        canary: CanaryConfig,
        at: datetime,
        previous_snapshot: Mapping[str, Any],
        *,
        bounds: Mapping[str, Sequence[float]] | None = None,
    ) -> Collected:
        from canary.errors import MetricsError, TemplateError
        from canary.metrics.collect import collect_round, raw_snapshots

        previous = dict(previous_snapshot) if previous_snapshot else None
        try:
            data, snapshot = await collect_round(
                self.client, canary, at, previous, templates=self._template_set(), bounds=bounds
            )
        except TemplateError:
            raise
        except MetricsError as exc:
            data = RoundData(canary={}, baseline={}, end=at, error=str(exc))
            return Collected(data, dict(previous or {}))
        return Collected(data, dict(snapshot or {}), raw_snapshots(snapshot))

    async def aclose(self) -> None:
        """Release the HTTP client."""
        await self.client.aclose()

    async def current_revision(self, canary: CanaryConfig, at: datetime) -> str | None:
        """The canary arm's `revision_label` value with the most requests at `at`.

        Read from Istio's request counter on the canary arm's selector; None when no
        series carries the label or Prometheus cannot be read (logged).
        """
        from canary.errors import MetricsError
        from canary.metrics.queries import QueryContext

        context = QueryContext(
            namespace=canary.namespace,
            arm=canary.arms["canary"],
            reporter=canary.reporter,
            pod_label=canary.pod_label,
        )
        selector = context.variables()["selector"]
        label = canary.revision_label
        query = f"sum by ({label}) (istio_requests_total{{{selector}}})"
        try:
            result = await self.client.query(query, at)
        except MetricsError as exc:
            log.warning("canary %s: cannot read its revision: %s", canary.name, exc)
            return None
        best: tuple[float, str] | None = None
        for sample in result.samples:
            value = sample.labels.get(label)
            if value and (best is None or sample.value > best[0]):
                best = (sample.value, value)
        return best[1] if best else None
