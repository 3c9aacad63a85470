"""Fill a store with analyses the way the daemon and the judged-only paths write them.

The rounds go through the real pipeline (`canary.rounds.daemon_round` with the
in-memory router and `canary.rounds.judge_round`); only the numbers come from a
seeded scenario instead of Prometheus, through the `MetricSource` protocol that
`canary.rounds` defines for that purpose.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from canary.config import CanaryConfig, Config, parse_config
from canary.control import abort_analysis, start_analysis
from canary.model import Counts, Histogram, RoundData
from canary.ports import Collected
from canary.rounds import daemon_round, ensure_analysis, judge_round
from canary.store.analyses import get_analysis
from canary.store.database import connect, migrate, sessions
from canary.traffic.memory import MemoryRouter

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
BOUNDS = (5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, math.inf)

CONFIG_TOML = {
    "defaults": {
        "interval": "60s",
        "max_duration": "40m",
        "steps": [
            {"weight": 10, "duration": "5m"},
            {"weight": 20, "duration": "5m"},
            {"weight": 50, "duration": "10m"},
        ],
        "metrics": [
            {"name": "errors", "kind": "counts", "min_requests": 500},
            {"name": "latency", "kind": "histogram"},
        ],
    },
    "canary": [
        {
            "name": "checkout",
            "namespace": "shop",
            "traffic": {
                "virtual_service": "checkout",
                "canary": {"host": "checkout", "subset": "canary"},
                "stable": {"host": "checkout", "subset": "stable"},
            },
            "arms": {
                "canary": {"match": {"destination_canonical_revision": "v2"}},
                "baseline": {"match": {"destination_canonical_revision": "v1"}},
            },
        }
    ],
}


def config(**defaults: Any) -> Config:
    raw = {**CONFIG_TOML, "defaults": {**CONFIG_TOML["defaults"], **defaults}}
    return parse_config(raw)


def _histogram(rng: np.random.Generator, n: int, scale: float) -> Histogram:
    samples = rng.lognormal(mean=math.log(40.0 * scale), sigma=0.6, size=n)
    buckets = tuple(int((samples <= b).sum()) for b in BOUNDS)
    return Histogram(bounds=BOUNDS, buckets=buckets)


def scenario(
    seed: int,
    rounds: int,
    *,
    canary_errors: float = 0.01,
    baseline_errors: float = 0.01,
    canary_latency: float = 1.0,
    rps: float = 20.0,
    canary_share: float = 0.2,
    failed_rounds: Sequence[int] = (),
    regression_from: int = 0,
) -> list[RoundData | None]:
    """Per round index (0 = warm-up), the deltas; None marks a round whose queries fail.

    From round `regression_from` on, the canary fails at `canary_errors` and is
    `canary_latency` times slower; before it, it behaves like the baseline.
    """
    rng = np.random.default_rng(seed)
    out: list[RoundData | None] = [None if 0 in failed_rounds else RoundData({}, {})]
    for index in range(1, rounds + 1):
        if index in failed_rounds:
            out.append(None)
            continue
        n = int(rng.poisson(rps * 60 * canary_share))
        m = int(rng.poisson(rps * 60 * (1 - canary_share)))
        bad = index >= regression_from
        p = canary_errors if bad else baseline_errors
        out.append(
            RoundData(
                canary={
                    "errors": Counts(n, int(rng.binomial(n, p))),
                    "latency": _histogram(rng, n, canary_latency if bad else 1.0),
                },
                baseline={
                    "errors": Counts(m, int(rng.binomial(m, baseline_errors))),
                    "latency": _histogram(rng, m, 1.0),
                },
            )
        )
    return out


class ScriptedSource:
    """A MetricSource that hands out one scripted round per call."""

    def __init__(self, script: Sequence[RoundData | None]) -> None:
        self.script = list(script)
        self.calls = 0
        self.previous: datetime | None = None

    async def collect(
        self,
        canary: CanaryConfig,
        at: datetime,
        previous_snapshot: Mapping[str, Any],
        *,
        bounds: Any = None,
    ) -> Collected:
        data = self.script[self.calls]
        self.calls += 1
        start, self.previous = self.previous, at
        snapshot = {"calls": self.calls}
        if data is None:
            failed = RoundData(canary={}, baseline={}, start=start, end=at, error="HTTP 503")
            return Collected(data=failed, snapshot=dict(previous_snapshot))
        return Collected(
            data=RoundData(canary=data.canary, baseline=data.baseline, start=start, end=at),
            snapshot=snapshot,
        )


def daemon_analysis(
    url: str, script: Sequence[RoundData | None], *, cfg: Config | None = None, start: datetime = T0
) -> str:
    """A daemon rollout driven round by round until it finishes or the script ends."""
    cfg = cfg or config()
    canary = cfg.get_canary("checkout")
    factory = sessions(connect(url))
    analysis_id = start_analysis(factory, cfg, "checkout", revision="v2", now=start)
    source = ScriptedSource(script)
    router = MemoryRouter("checkout")

    async def run() -> None:
        for index in range(len(script)):
            at = start + timedelta(seconds=canary.interval * index)
            result = await daemon_round(factory, analysis_id, canary, source, router, at)
            if result.status is not None and result.status.is_final:
                return
            if result.status is not None and result.status.value == "halted":
                return

    asyncio.run(run())
    with factory() as session:
        status = get_analysis(session, analysis_id).status
    if status in ("running", "halted", "paused"):
        # An operator ends what the script left open, so the next rollout can start.
        abort_analysis(factory, analysis_id, now=start + timedelta(hours=2))
    return analysis_id


def judged_analysis(
    url: str,
    script: Sequence[RoundData | None],
    *,
    source: str,
    cfg: Config | None = None,
    start: datetime = T0,
    key: str | None = None,
) -> str:
    """A judged-only analysis (`argo`: the budget from the settings; `analyze`: the
    end of the scripted window is the budget)."""
    cfg = cfg or config()
    canary = cfg.get_canary("checkout")
    factory = sessions(connect(url))
    analysis_id = ensure_analysis(
        factory, canary, key=key or f"{source}-{start.isoformat()}", source=source, now=start
    )
    scripted = ScriptedSource(script)

    async def run() -> None:
        for index in range(len(script)):
            at = start + timedelta(seconds=canary.interval * index)
            last = index == len(script) - 1
            final = True if (source == "analyze" and last) else None
            result = await judge_round(factory, analysis_id, canary, scripted, at, final=final)
            if result.closing is not None:
                return  # ended (a FAIL or the budget), as `canary analyze` and Argo stop

    asyncio.run(run())
    return analysis_id


def argo_analysis(
    url: str,
    script: Sequence[RoundData | None],
    *,
    cfg: Config | None = None,
    start: datetime = T0,
    canary_hash: str = "7c9f5d",
) -> str:
    """An analysis made by Argo-like calls to the web-metric endpoint of a running API
    server (uvicorn, as `canary serve` configures it), one per interval."""
    import httpx
    from api_harness import ApiServer

    from canary.api.app import create_app
    from canary.api.context import AppContext

    cfg = cfg or config()
    canary = cfg.get_canary("checkout")
    now = {"at": start}
    context = AppContext(
        config=cfg,
        sessions=sessions(connect(url)),
        source=ScriptedSource(script),
        tokens=["secret"],
        clock=lambda: now["at"],
    )
    params = {"canary": "checkout", "canaryHash": canary_hash, "stableHash": "5b8d6c"}
    analysis_id = ""
    with (
        ApiServer(create_app(context)) as server,
        httpx.Client(base_url=server.url, headers={"Authorization": "Bearer secret"}) as client,
    ):
        for index in range(len(script)):
            now["at"] = start + timedelta(seconds=canary.interval * index)
            response = client.get("/api/v1/argo/measure", params=params, timeout=30)
            body = response.json()
            analysis_id = body.get("analysisId") or analysis_id
            if response.status_code == 200 and body.get("verdict") == "fail":
                break
    return analysis_id


def history_database(directory: Any) -> tuple[str, dict[str, str]]:
    """A SQLite store with analyses from the three paths; returns (url, name -> id)."""
    url = f"sqlite:///{directory / 'canary.db'}"
    migrate(connect(url))
    made = {
        "good": daemon_analysis(
            url, scenario(11, 45, rps=150, baseline_errors=0.005, canary_errors=0.005)
        ),
        "bad": daemon_analysis(
            url,
            scenario(12, 45, rps=100, canary_errors=0.04, regression_from=8),
            start=T0 + timedelta(hours=3),
        ),
        "halted": daemon_analysis(
            url, scenario(14, 12, failed_rounds=(4, 5, 6)), start=T0 + timedelta(hours=6)
        ),
        "argo_bad": argo_analysis(
            url, scenario(21, 12, canary_errors=0.05, regression_from=5), start=T0
        ),
        "analyze_good": judged_analysis(
            url, scenario(31, 10, rps=150), source="analyze", start=T0 + timedelta(hours=9)
        ),
    }
    return url, made
