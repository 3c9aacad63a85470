"""What the HTTP API needs from the process that serves it (`canary serve`, `canary run`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from canary.config import Config
from canary.store.database import Sessions

__all__ = ["AppContext"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class AppContext:
    """Everything `create_app` wires together.

    - `config`: the validated configuration (canaries, server section, Prometheus).
    - `sessions`: a sessionmaker on a migrated database.
    - `source`: the round pipeline's metric source (`canary.ports.MetricSource`);
      None means Prometheus is not configured and the Argo endpoint answers 503.
    - `tokens`: accepted bearer tokens; None reads them from `config.server`.
    - `auth`: False only for `canary serve --insecure-no-auth` (local use).
    - `round_timeout`: seconds an Argo measurement may spend on a round before it
      answers with the stored judgement (Argo's own timeout is 10 s).
    - `registry`: the service's Prometheus registry (`canary.telemetry`), exported
      on /metrics together with the API's request metrics.
    - `ready`: an optional async probe of Prometheus for /readyz.
    - `kubernetes`: True inside `canary run`, whose daemon calls the Kubernetes API
      (so /readyz probes it); `canary serve` never does.
    - `clock`: the current UTC time (tests may pin it).
    """

    config: Config
    sessions: Sessions
    source: Any | None = None
    tokens: Sequence[str] | None = None
    auth: bool = True
    round_timeout: float = 8.0
    registry: CollectorRegistry | None = None
    ready: Callable[[], Any] | None = None
    kubernetes: bool = False
    clock: Callable[[], datetime] = field(default=_utcnow)

    def api_tokens(self) -> list[str]:
        if self.tokens is not None:
            return [t for t in self.tokens if t]
        return self.config.server.api_tokens()
