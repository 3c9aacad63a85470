"""`canary report ID --out FILE.html`: an analysis as one self-contained HTML file."""

from __future__ import annotations

import argparse
from pathlib import Path

from canary.commands._common import console, load, open_engine
from canary.errors import UsageError
from canary.report import render_analysis
from canary.store.analyses import load_analysis_full
from canary.store.database import sessions


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="write an analysis report as one self-contained HTML file"
    )
    parser.add_argument("analysis_id", metavar="ID", help="analysis id (see `canary history`)")
    parser.add_argument("--out", required=True, help="output file, e.g. report.html")
    parser.set_defaults(handler=report_command)


def report_command(args: argparse.Namespace) -> int:
    engine = open_engine(args, load(args))
    with sessions(engine)() as session:
        html = render_analysis(load_analysis_full(session, args.analysis_id))
    out = Path(args.out)
    try:
        out.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror}") from None
    console.print(f"wrote {out} ({len(html) // 1024} KiB)", markup=False)
    return 0
