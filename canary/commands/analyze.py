"""`canary analyze`: judge a past window of a configured canary from Prometheus.

    canary analyze --canary NAME --from T1 --to T2 [--interval 60s] [--json]

The window is split into rounds of `--interval` (default: the canary's interval; a
shorter last round ends exactly at T2). Prometheus is queried at each round boundary
at those past times — the first boundary is the warm-up snapshot — through the same
`canary.rounds.judge_round` the daemon's Argo endpoint uses, with the canary's
configured judge. The analysis is stored (source ``analyze``) and can be shown,
reported and replayed like any other. Judging stops at the first PASS or FAIL; the
end of the window is the budget (neither by then: INCONCLUSIVE).

Times: ISO 8601 (``2026-01-01T10:00:00Z``; without an offset, UTC), seconds since
the epoch, ``now``, or ``now-2h`` style offsets. Exit code 1 on a FAIL verdict.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from rich import box
from rich.table import Table

from canary.commands._common import (
    add_json_flag,
    console,
    load,
    open_engine,
    parse_time,
    print_json,
)
from canary.commands.history import print_wide
from canary.config import CanaryConfig, parse_duration
from canary.errors import EXIT_FAIL_VERDICT, EXIT_OK, CanaryError, UsageError
from canary.model import (
    Counts,
    Histogram,
    Observation,
    Verdict,
    observation_to_json,
)
from canary.verdict_words import describe_judgement

#: More rounds than this in one window is almost certainly a typo in --interval.
MAX_ROUNDS = 5000


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze",
        help="judge a past window of a configured canary from Prometheus",
        description=(
            "Judge a past window that was never recorded: split it into rounds, query "
            "Prometheus at each round boundary, judge with the canary's judge, store the "
            "analysis and print the result. Exit 1 on FAIL."
        ),
    )
    parser.add_argument("--canary", required=True, help="the configured canary's name")
    parser.add_argument(
        "--from", dest="start", required=True, help="window start: ISO 8601, epoch, now-2h"
    )
    parser.add_argument("--to", dest="end", required=True, help="window end (in the past)")
    parser.add_argument(
        "--interval", help="round length, e.g. 60s (default: the canary's interval)"
    )
    add_json_flag(parser)
    parser.set_defaults(handler=run)


# --------------------------------------------------------------------------- arguments


def boundaries(start: datetime, end: datetime, interval: float) -> list[datetime]:
    """Round boundaries from `start` every `interval`; the last one is `end`."""
    if end <= start:
        raise UsageError("--to must be after --from")
    span = (end - start).total_seconds()
    if span < interval:
        raise UsageError(
            f"the window ({span:g}s) is shorter than one round (--interval {interval:g}s)"
        )
    count = math.ceil(span / interval - 1e-9)
    if count > MAX_ROUNDS:
        raise UsageError(
            f"{count} rounds of {interval:g}s: more than {MAX_ROUNDS}; raise --interval"
        )
    points = [start + timedelta(seconds=interval * k) for k in range(count)]
    return [*points, end]


# --------------------------------------------------------------------------- output


def _observation_json(observation: Observation) -> Any:
    data = observation_to_json(observation)
    if data and isinstance(data.get("value"), float) and math.isinf(data["value"]):
        data = {"value": "+Inf" if data["value"] > 0 else "-Inf"}
    return data


def _cell(observation: Observation) -> str:
    if observation is None:
        return "-"
    if isinstance(observation, Counts):
        return f"{observation.failed}/{observation.total}"
    if isinstance(observation, Histogram):
        return f"n={observation.total}"
    return f"{observation:.4g}"


def _round_json(result: Any) -> dict[str, Any]:
    data = result.data
    judgement = result.judgement
    return {
        "index": result.index,
        "start": data.start.isoformat() if data.start else None,
        "end": data.end.isoformat() if data.end else None,
        "warmup": result.warmup,
        "error": data.error,
        "verdict": result.verdict.value,
        "observations": {
            "canary": {k: _observation_json(v) for k, v in data.canary.items()},
            "baseline": {k: _observation_json(v) for k, v in data.baseline.items()},
        },
        "metrics": {
            name: {"verdict": m.verdict.value, "round": m.round, "reasons": list(m.reasons)}
            for name, m in (judgement.metrics.items() if judgement else ())
        },
        "reasons": list(judgement.reasons) if judgement else [],
    }


def _print_text(summary: dict[str, Any], canary: CanaryConfig) -> None:
    names = [m.name for m in canary.metrics]
    table = Table(
        title=f"{summary['analysis_id']}: {canary.name} from {summary['from']} to {summary['to']}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
    )
    table.add_column("round", justify="right")
    table.add_column("end")
    for name in names:
        table.add_column(f"{name} canary", justify="right")
        table.add_column(f"{name} baseline", justify="right")
    table.add_column("verdict")
    for item in summary["_results"]:
        data = item.data
        cells = [str(item.index), data.end.strftime("%Y-%m-%d %H:%M:%S") if data.end else "-"]
        for name in names:
            cells += [_cell(data.canary.get(name)), _cell(data.baseline.get(name))]
        verdict = "warm-up" if item.warmup else item.verdict.value
        if data.error:
            verdict = f"error: {data.error}"
        table.add_row(*cells, verdict)
    print_wide(table)
    at = f" at round {summary['round']}" if summary["round"] is not None else ""
    console.print(f"verdict: {summary['verdict'].upper()}{at}", markup=False)
    for reason in summary["reasons"]:
        console.print(f"  {reason}", markup=False)
    last = summary["_results"][-1].judgement
    if last is not None:
        for words in describe_judgement(last):
            effect = f": {words.effect}" if words.effect else ""
            console.print(f"  {words.metric}: {words.verdict}{effect}", markup=False)
            if words.progress:
                console.print("    " + " · ".join(words.progress), markup=False)
            for note in words.notes:
                console.print(f"    {note}", markup=False)


# --------------------------------------------------------------------------- the run


async def analyze_window(
    sessions: Any, canary: CanaryConfig, prometheus: Any, points: list[datetime]
) -> dict[str, Any]:
    """Run the rounds of one past window; returns the JSON summary (plus `_results`)."""
    from canary import engine
    from canary.metrics.source import PrometheusSource
    from canary.rounds import close_judged, ensure_analysis, judge_round

    source = PrometheusSource(prometheus)
    try:
        if not await source.client.ready():
            raise CanaryError(f"Prometheus at {source.client.url} is not reachable or not ready")
        key = f"analyze/{canary.name}/{points[0].isoformat()}/{uuid.uuid4().hex[:12]}"
        analysis_id = await asyncio.to_thread(
            ensure_analysis, sessions, canary, key=key, source="analyze", now=points[0]
        )
        results = []
        for index, at in enumerate(points):
            final = True if index == len(points) - 1 else None
            result = await judge_round(sessions, analysis_id, canary, source, at, final=final)
            results.append(result)
            if index == 0 and result.error:
                closing = engine.warmup_failed(result.error)
                await asyncio.to_thread(close_judged, sessions, analysis_id, closing, at)
                raise CanaryError(
                    f"the warm-up snapshot at {at.isoformat()} failed: {result.error}"
                )
            if result.judgement and (
                result.verdict in (Verdict.PASS, Verdict.FAIL) or result.final
            ):
                break
    finally:
        await source.aclose()

    judged = [r for r in results if r.judgement is not None]
    last = judged[-1].judgement if judged else None
    closing = engine.window_closing(last, sum(1 for r in results if r.error))
    end = results[-1].data.end or points[-1]  # the window's time, not the wall clock
    await asyncio.to_thread(close_judged, sessions, analysis_id, closing, end)
    assert closing.verdict is not None
    return {
        "analysis_id": analysis_id,
        "verdict": closing.verdict.value,
        "round": last.round if last else None,
        "rounds": [_round_json(r) for r in results],
        "canary": canary.name,
        "judge": canary.judge,
        "from": points[0].isoformat(),
        "to": points[-1].isoformat(),
        "interval": canary.interval,
        "reasons": list(closing.reasons),
        "_results": results,
    }


def run(args: argparse.Namespace) -> int:
    from canary.store.database import sessions

    config = load(args)
    canary = config.get_canary(args.canary)
    now = datetime.now(UTC)
    start = parse_time(args.start, "--from", now=now)
    end = parse_time(args.end, "--to", now=now)
    if end > now:
        raise UsageError(f"--to {args.end!r} is in the future: analyze judges past windows")
    if args.interval is not None:
        try:
            interval = parse_duration(args.interval)
        except ValueError as exc:
            raise UsageError(f"--interval {args.interval!r}: {exc}") from None
        if interval <= 0:
            raise UsageError("--interval must be positive")
        canary = canary.model_copy(update={"interval": interval})
    points = boundaries(start, end, canary.interval)
    factory = sessions(open_engine(args, config))
    summary = asyncio.run(analyze_window(factory, canary, config.prometheus, points))
    if args.json:
        print_json({k: v for k, v in summary.items() if not k.startswith("_")})
    else:
        _print_text(summary, canary)
    return EXIT_FAIL_VERDICT if summary["verdict"] == Verdict.FAIL.value else EXIT_OK
