"""`canary history` lists stored analyses; `canary show ID` shows one round by round."""

from __future__ import annotations

import argparse
from datetime import datetime
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from canary.commands._common import (
    add_json_flag,
    console,
    load,
    open_engine,
    print_json,
    since_time,
)
from canary.errors import UsageError
from canary.history import analysis_detail, describe_observation, history_rows, latest_words
from canary.model import Verdict
from canary.replay import fmt_seconds
from canary.store.database import sessions
from canary.verdict_words import describe_metric

_VERDICT_STYLE = {"pass": "green", "fail": "red", "inconclusive": "yellow", "running": "cyan"}
_DECISION_STYLE = {"rollback": "red", "promote": "green", "advance": "blue", "hold": "yellow"}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("history", help="list stored analyses")
    parser.add_argument("--canary", help="only this canary's analyses")
    parser.add_argument("--since", help="only analyses started within this duration, e.g. 30d")
    parser.add_argument(
        "--verdict", choices=[v.value for v in Verdict], help="only analyses with this verdict"
    )
    parser.add_argument("--limit", type=int, help="at most this many (newest first)")
    add_json_flag(parser)
    parser.set_defaults(handler=history_command)
    show = subparsers.add_parser("show", help="show one analysis round by round")
    show.add_argument("analysis_id", metavar="ID")
    add_json_flag(show)
    show.set_defaults(handler=show_command)


def history_command(args: argparse.Namespace) -> int:
    since = since_time(args.since)
    if args.limit is not None and args.limit < 1:
        raise UsageError("--limit must be at least 1")
    factory = sessions(open_engine(args, load(args)))
    with factory() as session:
        rows = history_rows(
            session, canary=args.canary, since=since, verdict=args.verdict, limit=args.limit
        )
        words = {} if args.json else latest_words(session, [row["id"] for row in rows])
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        console.print("no analyses stored (matching the filters)", markup=False)
        return 0
    table = Table(
        title=f"{len(rows)} analyses, newest first", title_justify="left", box=box.SIMPLE_HEAD
    )
    for column in ("id", "canary", "source", "started", "took", "rounds", "verdict", "status"):
        table.add_column(column, no_wrap=True)
    table.add_column("evidence", overflow="fold", min_width=24)
    table.add_column("reason", overflow="fold", min_width=16)
    for row in rows:
        canary = row["canary"] + (f"@{row['revision']}" if row["revision"] else "")
        verdict = Text(row["verdict"], style=_VERDICT_STYLE.get(row["verdict"], ""))
        table.add_row(
            row["id"],
            canary,
            row["source"],
            _time(row["started"])[:16],
            fmt_seconds(row["durationSeconds"]),
            str(row["rounds"]),
            verdict,
            row["status"],
            "\n".join(f"{w.metric}: {w.summary}" for w in words.get(row["id"], [])),
            row["reason"] or "",
        )
    print_wide(table)
    return 0


def print_wide(table: Table) -> None:
    """A terminal folds the table to its width; a pipe or file gets it unfolded."""
    if console.is_terminal:
        console.print(table)
    else:
        natural = console.measure(table, options=console.options.update(width=400)).maximum
        width = max(console.width, min(natural, 400))
        Console(file=console.file, width=width, highlight=False, color_system=None).print(table)


def _time(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M:%S")


def show_command(args: argparse.Namespace) -> int:
    factory = sessions(open_engine(args, load(args)))
    with factory() as session:
        detail = analysis_detail(session, args.analysis_id)
    if args.json:
        print_json(detail)
        return 0
    print_detail(detail)
    return 0


def _header(detail: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    verdict = Text(detail["verdict"], style=_VERDICT_STYLE.get(detail["verdict"], ""))
    if detail["verdictRound"] is not None:
        verdict.append(f" at round {detail['verdictRound']}")
    fields: list[tuple[str, Any]] = [
        ("analysis", detail["id"]),
        ("canary", f"{detail['canary']}  revision {detail['revision'] or '-'}"),
        ("source", f"{detail['source']}  judge {detail['judge']}"),
        ("status", f"{detail['status']}  weight {detail['weight']}%"),
        ("verdict", verdict),
        ("reason", detail["reason"] or "-"),
        ("started", _time(detail["started"])),
        ("finished", _time(detail["finished"])),
        ("duration", fmt_seconds(detail["durationSeconds"])),
    ]
    if detail["key"]:
        fields.insert(1, ("key", detail["key"]))
    for name, value in fields:
        grid.add_row(name, value)
    return grid


def _arms(arms: dict[str, Any]) -> str:
    canary = describe_observation(arms.get("canary"))
    baseline = describe_observation(arms.get("baseline"))
    return f"canary {canary}   baseline {baseline}"


def _round_lines(round_: dict[str, Any]) -> list[Text]:
    """One round as a few lines: a heading, then per metric its data and judgement."""
    head = Text(f"round {round_['round']}", style="bold")
    head.append(f"  {_time(round_['windowEnd'])}  weight {round_['weight']}%  ")
    if round_["warmup"] and not round_["error"]:
        head.append("warm-up: counter snapshot only", style="dim")
    else:
        head.append(round_["verdict"], style=_VERDICT_STYLE.get(round_["verdict"], ""))
        if round_["decision"]:
            head.append("  → ")
            head.append(round_["decision"], style=_DECISION_STYLE.get(round_["decision"], ""))
    lines = [head]
    if round_["error"]:
        lines.append(Text(f"  queries failed: {round_['error']} (no evidence)", style="red"))
    width = max((len(m) for m in [*round_["observations"], *round_["metrics"]]), default=0)
    for metric in dict.fromkeys([*round_["observations"], *round_["metrics"]]):
        arms = round_["observations"].get(metric)
        line = Text(f"  {metric:<{width}}  ", style="bold")
        if arms is not None and not round_["error"]:
            line.append(_arms(arms))
        lines.append(line)
        result = round_["metrics"].get(metric)
        if result is not None:
            words = describe_metric(
                metric, result["verdict"], result["statistics"], result["reasons"]
            )
            verdict = Text(" " * (width + 4))
            verdict.append(result["verdict"], style=_VERDICT_STYLE.get(result["verdict"], ""))
            if result["verdictRound"] is not None:
                verdict.append(f" at round {result['verdictRound']}")
            if words.effect:
                verdict.append(f": {words.effect}")
            lines.append(verdict)
            indent = " " * (width + 6)
            if words.progress:
                lines.append(Text(indent + " · ".join(words.progress)))
            lines.extend(Text(indent + note) for note in words.notes)
    for action in round_["actions"]:
        text = Text(f"  action {action['kind']} {action['fromWeight']}→{action['toWeight']}%")
        text.append(f" {action['state']}", style="green" if action["state"] == "done" else "red")
        if action["error"]:
            text.append(f" ({action['error']})", style="red")
        lines.append(text)
    return lines


def print_detail(detail: dict[str, Any]) -> None:
    console.print(_header(detail))
    for action in detail["otherActions"]:
        console.print(
            f"action {action['kind']}: {action['fromWeight']}→{action['toWeight']}% "
            f"{action['state']} at {_time(action['created'])}",
            markup=False,
        )
    for round_ in detail["rounds"]:
        console.print()
        for line in _round_lines(round_):
            console.print(line)
