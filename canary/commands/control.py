"""Operator commands: start, pause, resume, abort, promote, status.

They change the store only; the daemon holding the canary carries out the traffic
change (a pending action) within a few seconds. See `canary.control`.
"""

from __future__ import annotations

import argparse
import time
from datetime import datetime

from rich.live import Live
from rich.table import Table

from canary import control
from canary.commands._common import add_json_flag, console, load, open_engine, print_json
from canary.commands.history import print_wide
from canary.errors import UsageError
from canary.history import latest_words
from canary.store.database import sessions as make_sessions

HELP = {
    "start": "start an analysis of a configured canary",
    "pause": "pause an analysis (no rounds, weights kept)",
    "resume": "resume a paused or halted analysis",
    "abort": "abort an analysis and roll back",
    "promote": "promote an analysis now (manual gate)",
    "status": "show canaries and their running analyses",
}

OPERATIONS = {
    "pause": control.pause_analysis,
    "resume": control.resume_analysis,
    "abort": control.abort_analysis,
    "promote": control.promote_analysis,
}


def _sessions(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    config = load(args)
    return config, make_sessions(open_engine(args, config))


def _start(args: argparse.Namespace) -> int:
    config, sessions = _sessions(args)
    analysis_id = control.start_analysis(sessions, config, args.canary, revision=args.revision)
    if args.json:
        print_json({"analysisId": analysis_id, "canary": args.canary, "revision": args.revision})
    else:
        console.print(f"started analysis {analysis_id} of canary {args.canary}")
    return 0


def _operate(args: argparse.Namespace) -> int:
    _config, sessions = _sessions(args)
    result = OPERATIONS[args.operation](sessions, args.analysis_id)
    if args.json:
        print_json(result.as_dict())
    else:
        pending = " (the daemon applies the weight change)" if result.action_id else ""
        console.print(
            f"analysis {result.analysis_id}: {result.status.value}, "
            f"weight {result.weight}%{pending}: {result.message}"
        )
    return 0


def _status(args: argparse.Namespace) -> int:
    config, sessions = _sessions(args)
    if args.json:
        print_json(control.status(sessions, config))
        return 0
    if not args.watch:
        table = _status_table(sessions, config)
        if isinstance(table, Table):
            print_wide(table)
        else:
            console.print(table)
        return 0
    if args.interval <= 0:
        raise UsageError("--interval must be positive")
    with Live(console=console, auto_refresh=False, screen=False) as live:
        try:
            while True:
                live.update(_status_table(sessions, config, watching=args.interval), refresh=True)
                time.sleep(args.interval)
        except KeyboardInterrupt:  # Ctrl-C ends watching, not an error
            pass
    return 0


def _status_table(sessions, config, watching: float | None = None) -> Table | str:  # type: ignore[no-untyped-def]
    """Canaries, their analyses and the latest evidence in plain words."""
    rows = control.status(sessions, config)
    if not rows:
        return "no canaries configured"
    ids = [row["analysis"]["analysisId"] for row in rows if row["analysis"]]
    with sessions() as session:
        words = latest_words(session, ids)
    title = None
    if watching is not None:
        title = f"{datetime.now():%H:%M:%S}  every {watching:g}s, Ctrl-C to stop"
    table = Table(title=title, title_justify="left")
    for column in ("canary", "analysis", "status", "weight", "step", "rounds", "verdict"):
        table.add_column(column, no_wrap=True)
    table.add_column("evidence", ratio=3)
    table.add_column("reason", ratio=1)
    for row in rows:
        analysis = row["analysis"]
        if analysis is None:
            table.add_row(row["canary"], "-", "idle", "", "", "", "", "", "")
            continue
        pending = analysis["pendingActions"]
        status = analysis["status"] + (" (action pending)" if pending else "")
        evidence = "\n".join(
            line for w in words.get(analysis["analysisId"], []) for line in w.lines()
        )
        table.add_row(
            row["canary"],
            analysis["analysisId"],
            status,
            f"{analysis['weight']}%",
            str(analysis["step"]),
            str(analysis["rounds"]),
            analysis["verdict"],
            evidence,
            analysis["reason"] or "",
        )
    return table


def register(subparsers: argparse._SubParsersAction) -> None:
    start = subparsers.add_parser("start", help=HELP["start"])
    start.add_argument("canary", help="the canary's name in the configuration")
    start.add_argument("--revision", help="the canary revision under analysis (recorded)")
    add_json_flag(start)
    start.set_defaults(handler=_start)
    for name in OPERATIONS:
        parser = subparsers.add_parser(name, help=HELP[name])
        parser.add_argument("analysis_id", metavar="ID", help="the analysis id")
        add_json_flag(parser)
        parser.set_defaults(handler=_operate, operation=name)
    status = subparsers.add_parser("status", help=HELP["status"])
    status.add_argument(
        "--watch", action="store_true", help="refresh the table in place until Ctrl-C"
    )
    status.add_argument(
        "--interval", type=float, default=2.0, help="--watch: seconds between refreshes (2)"
    )
    add_json_flag(status)
    status.set_defaults(handler=_status)
