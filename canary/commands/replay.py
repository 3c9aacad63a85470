"""`canary replay`: re-judge stored analyses; backtest configurations over history.

    canary replay ID [--config FILE] [--judge NAME] [--set key=value ...] [--json]
    canary replay --all [--canary NAME] [--since 30d] [--config FILE ...] [--labels FILE]

Nothing is written: replay reads the store and prints. The global ``--config`` (before
the command) still names the database; ``--config`` after ``replay`` names the
configuration(s) to replay with (default: the configuration each analysis recorded).

Exit codes: one analysis exits 1 when its replayed verdict is FAIL (as `canary analyze`
and `canary judge`), else 0; a backtest (`--all`) is a report and exits 0, or 3 after
the report when a stored analysis could not be read (each named on stderr). Bad input
exits 2, an unreachable database or an unreadable stored analysis 3.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from canary.commands._common import console, load, open_engine, print_json, since_time
from canary.config import Config, load_config
from canary.errors import EXIT_FAIL_VERDICT, EXIT_OK, EXIT_RUNTIME, UsageError
from canary.judge import JUDGES
from canary.model import Verdict
from canary.overrides import parse_overrides
from canary.replay import (
    BacktestSummary,
    ReplayResult,
    backtest,
    fmt_seconds,
    load_stored,
    read_labels,
    recorded_summary,
    replay,
    resolve_settings,
    select_ids,
)
from canary.store.database import connection_url, dispose, sessions


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="re-judge stored analyses; backtest configurations over history",
        description=(
            "Re-run the judge (and, for daemon rollouts, the engine's decisions) on the "
            "raw observations stored with an analysis, without Prometheus or Kubernetes. "
            "With the recorded configuration the recorded decisions are reproduced."
        ),
    )
    parser.add_argument("analysis_id", nargs="?", metavar="ID", help="the analysis to replay")
    parser.add_argument(
        "--all",
        action="store_true",
        help="backtest every analysis in range (see --canary, --since)",
    )
    parser.add_argument(
        "--config",
        dest="replay_configs",
        action="append",
        default=[],
        metavar="FILE",
        help="replay with this configuration file instead of the recorded one; "
        "with --all, repeat to compare configurations side by side",
    )
    parser.add_argument(
        "--judge", help="replay with this judge (sequential, mann_whitney, threshold)"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a setting as `canary judge --set` does: max_rounds=30, "
        "alpha_fail=0.005 (every metric), errors.margin=2 (one metric)",
    )
    parser.add_argument("--canary", help="--all: only analyses of this canary")
    parser.add_argument(
        "--since", help="--all: only analyses started within this duration, e.g. 30d"
    )
    parser.add_argument(
        "--labels",
        metavar="FILE",
        help="--all: ground truth, analysis id -> good|bad (JSON object or 'ID good' lines)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="--all: judge in N processes (default: the CPU count for 400+ analyses)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(handler=replay_command)


def _configs(paths: Sequence[str]) -> list[tuple[str, Config | None]]:
    if not paths:
        return [("replayed", None)]
    return [(path, load_config(path)) for path in paths]


def replay_command(args: argparse.Namespace) -> int:
    if args.all == bool(args.analysis_id):
        raise UsageError("give one analysis ID, or --all for a backtest")
    if not args.all:
        for option in ("canary", "since", "labels", "workers"):
            if getattr(args, option):
                raise UsageError(f"--{option} needs --all")
        if len(args.replay_configs) > 1:
            raise UsageError("one --config for a single analysis (several need --all)")
    parse_overrides(args.overrides)  # a bad --set fails before anything is read
    if args.judge is not None and args.judge not in JUDGES:
        raise UsageError(f"--judge {args.judge!r}: unknown judge (known: {', '.join(JUDGES)})")
    if args.workers is not None and args.workers < 1:
        raise UsageError("--workers must be at least 1")
    since = since_time(args.since)
    labels = read_labels(args.labels) if args.labels else {}
    configs = _configs(args.replay_configs)
    factory = sessions(open_engine(args, load(args)))
    if not args.all:
        with factory() as session:
            stored = load_stored(session, args.analysis_id)
        settings = resolve_settings(
            stored, config=configs[0][1], judge=args.judge, overrides=args.overrides
        )
        result = replay(stored, settings)
        if args.json:
            name = args.replay_configs[0] if args.replay_configs else "recorded"
            print_json(result_json(result, name, args.overrides))
        else:
            print_result(result, args.replay_configs[0] if args.replay_configs else "recorded")
        # As `canary analyze` and `canary judge`: 1 when the (replayed) verdict is FAIL.
        return EXIT_FAIL_VERDICT if result.replayed.verdict == Verdict.FAIL.value else EXIT_OK
    return _backtest(args, factory, configs, labels, since)


# --------------------------------------------------------------------------- one analysis


def result_json(result: ReplayResult, config: str, overrides: Sequence[str]) -> dict[str, Any]:
    return {
        "analysisId": result.analysis_id,
        "canary": result.canary,
        "source": result.source,
        "mode": result.mode,
        "judge": result.judge,
        "config": config,
        "overrides": list(overrides),
        "recorded": result.recorded,
        "replayed": result.replayed,
        "reproduced": result.reproduced,
        "differences": [
            {
                "round": r.index,
                "recordedVerdict": r.recorded_verdict,
                "replayedVerdict": r.verdict,
                "recordedDecision": r.recorded_decision,
                "replayedDecision": r.decision,
                "reasons": list(r.reasons),
            }
            for r in result.differences
        ],
        "rounds": [
            {
                "round": r.index,
                "recordedVerdict": r.recorded_verdict,
                "replayedVerdict": r.verdict,
                "recordedDecision": r.recorded_decision,
                "replayedDecision": r.decision,
                "weight": r.weight,
            }
            for r in result.rounds
        ],
    }


def _outcome_text(outcome: Any) -> str:
    if outcome.round is None:
        return f"{outcome.verdict}, no decision within the recorded rounds"
    decided = f", {outcome.decision}" if outcome.decision else ""
    return (
        f"{outcome.verdict} at round {outcome.round}{decided} after {fmt_seconds(outcome.seconds)}"
    )


def print_result(result: ReplayResult, config: str) -> None:
    console.print(
        f"analysis {result.analysis_id} ({result.source}, {result.mode} replay, "
        f"judge {result.judge}, configuration: {config})",
        markup=False,
    )
    console.print(f"  recorded: {_outcome_text(result.recorded)}", markup=False)
    console.print(f"  replayed: {_outcome_text(result.replayed)}", markup=False)
    differences = result.differences
    if not differences:
        console.print("  every round reproduced: same verdicts and decisions", markup=False)
        return
    reached = [r for r in differences if r.decision is not None or r.verdict is not None]
    unreached = [r.index for r in differences if r not in reached]
    if reached:
        table = Table(title=f"{len(reached)} round(s) differ", title_justify="left")
        for column in ("round", "recorded verdict", "replayed verdict", "recorded decision"):
            table.add_column(column)
        table.add_column("replayed decision")
        table.add_column("why", overflow="fold")
        for r in reached:
            table.add_row(
                str(r.index),
                r.recorded_verdict,
                r.verdict or "-",
                r.recorded_decision or "-",
                r.decision or "-",
                "; ".join(r.reasons),
            )
        console.print(table)
    if unreached:
        span = f"{unreached[0]}" if len(unreached) == 1 else f"{unreached[0]}-{unreached[-1]}"
        console.print(
            f"  rounds {span} were recorded, but the replayed analysis had already ended "
            f"at round {result.replayed.round}",
            markup=False,
        )


# --------------------------------------------------------------------------- backtest


def _backtest(
    args: argparse.Namespace,
    factory: Any,
    configs: list[tuple[str, Config | None]],
    labels: dict[str, str],
    since: datetime | None,
) -> int:
    with factory() as session:
        ids = select_ids(session, canary=args.canary, since=since)
    url = connection_url(factory)
    dispose(factory)
    workers = args.workers or (min(os.cpu_count() or 1, 8) if len(ids) >= 400 else 1)
    progress = Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("analyses"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not sys.stderr.isatty(),
    )
    with progress:
        task = progress.add_task("replay", total=len(ids))
        run = backtest(
            url,
            ids,
            configs,
            judge=args.judge,
            overrides=args.overrides,
            workers=workers,
            progress=lambda done: progress.advance(task, done),
        )
    results, errors = run.results, run.errors
    every = {r.analysis_id: r for replayed in results.values() for r in replayed}
    summaries = [recorded_summary(every.values(), labels)]
    for name, _ in configs:
        summary = BacktestSummary(name=name)
        for result in results[name]:
            summary.add(result, labels.get(result.analysis_id))
        summary.errors = len(errors[name])
        summaries.append(summary)
    if args.json:
        print_json(
            {
                "analyses": len(ids),
                "labels": len(labels),
                "configurations": [s.to_json() for s in summaries],
                "errors": errors,
                "results": {
                    name: [
                        {
                            "analysisId": r.analysis_id,
                            "canary": r.canary,
                            "source": r.source,
                            "recorded": r.recorded,
                            "replayed": r.replayed,
                            "reproduced": r.reproduced,
                        }
                        for r in rs
                    ]
                    for name, rs in results.items()
                },
            }
        )
    else:
        _print_analyses(results)
        _print_summary(summaries, labelled=bool(labels))
    return _report_unreplayed(errors)


def _report_unreplayed(errors: dict[str, list[str]]) -> int:
    """Each analysis that could not be replayed, once, on stderr; 3 if there was one."""
    several = len(errors) > 1
    seen: dict[str, list[str]] = {}
    for name, problems in errors.items():
        for problem in problems:
            seen.setdefault(problem, []).append(name)
    for problem, names in seen.items():
        where = f" (with {', '.join(names)})" if several and len(names) < len(errors) else ""
        print(f"canary: replay: not replayed{where}: {problem}", file=sys.stderr)
    return EXIT_RUNTIME if seen else EXIT_OK


def _print_analyses(results: dict[str, list[ReplayResult]]) -> None:
    names = list(results)
    by_id: dict[str, dict[str, ReplayResult]] = {}
    for name, replayed in results.items():
        for result in replayed:
            by_id.setdefault(result.analysis_id, {})[name] = result
    table = Table(title="analyses", title_justify="left")
    table.add_column("analysis")
    table.add_column("source")
    table.add_column("recorded")
    for name in names:
        table.add_column(name if len(names) > 1 else "replayed")
    for analysis_id, group in by_id.items():
        first = next(iter(group.values()))
        cells = [
            _cell(group[name].replayed, first.recorded) if name in group else "(error)"
            for name in names
        ]
        table.add_row(analysis_id, first.source, _cell(first.recorded, None), *cells)
    console.print(table)


def _cell(outcome: Any, recorded: Any) -> str:
    what = outcome.decision or outcome.verdict
    when = f" r{outcome.round} {fmt_seconds(outcome.seconds)}" if outcome.round is not None else ""
    changed = ""
    if recorded is not None and (outcome.verdict, outcome.decision, outcome.round) != (
        recorded.verdict,
        recorded.decision,
        recorded.round,
    ):
        changed = " *"
    return f"{what}{when}{changed}"


def _print_summary(summaries: list[BacktestSummary], *, labelled: bool) -> None:
    table = Table(title="summary (* = differs from recorded)", title_justify="left")
    table.add_column("")
    for summary in summaries:
        table.add_column(summary.name, justify="right")

    def row(label: str, values: list[str]) -> None:
        table.add_row(label, *values)

    row("analyses", [str(s.analyses) for s in summaries])
    for verdict in ("pass", "fail", "inconclusive", "running"):
        row(f"verdict {verdict}", [str(s.verdicts.get(verdict, 0)) for s in summaries])
    row("verdicts changed", [str(s.verdicts_changed) for s in summaries])
    row("decisions changed", [str(s.decisions_changed) for s in summaries])
    row("rollbacks earlier", [str(s.rollbacks_earlier) for s in summaries])
    row("rollbacks later", [str(s.rollbacks_later) for s in summaries])
    row("new rollbacks", [str(s.rollbacks_new) for s in summaries])
    row("rollbacks lost", [str(s.rollbacks_lost) for s in summaries])
    row("promotions lost", [str(s.promotions_lost) for s in summaries])
    row("new promotions", [str(s.promotions_new) for s in summaries])
    if labelled:
        row("labelled good / bad", [f"{s.good} / {s.bad}" for s in summaries])
        row("false rollbacks", [f"{s.false_rollbacks} of {s.good}" for s in summaries])
        row("missed regressions", [f"{s.missed_regressions} of {s.bad}" for s in summaries])
    row(
        "median time to decision",
        [f"{fmt_seconds(s.median_seconds)} ({_rounds(s.median_rounds)})" for s in summaries],
    )
    if any(s.errors for s in summaries):
        row("not replayed", [str(s.errors) for s in summaries])
    console.print(table)


def _rounds(value: float | None) -> str:
    if value is None:
        return "- rounds"
    return f"{value:g} rounds"
