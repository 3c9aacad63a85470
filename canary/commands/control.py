"""Operator commands: start, pause, resume, abort, promote, status.

They change the store only; the daemon holding the canary carries out the traffic
change (a pending action) within a few seconds. See `canary.control`.
"""

from __future__ import annotations

import argparse

from rich.table import Table

from canary import control
from canary.commands._common import add_json_flag, console, load, open_engine, print_json
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
    rows = control.status(sessions, config)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        console.print("no canaries configured")
        return 0
    table = Table()
    for column in ("canary", "analysis", "status", "weight", "step", "rounds", "verdict"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason", ratio=1)
    for row in rows:
        analysis = row["analysis"]
        if analysis is None:
            table.add_row(row["canary"], "-", "idle", "", "", "", "", "")
            continue
        pending = analysis["pendingActions"]
        status = analysis["status"] + (" (action pending)" if pending else "")
        table.add_row(
            row["canary"],
            analysis["analysisId"],
            status,
            f"{analysis['weight']}%",
            str(analysis["step"]),
            str(analysis["rounds"]),
            analysis["verdict"],
            analysis["reason"] or "",
        )
    console.print(table)
    return 0


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
    add_json_flag(status)
    status.set_defaults(handler=_status)
