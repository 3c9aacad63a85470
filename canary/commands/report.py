"""`canary report`: write an analysis report as one self-contained HTML file."""

from __future__ import annotations

import argparse

from canary.commands._common import not_implemented


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report", help="write an analysis report as one self-contained HTML file"
    )
    parser.set_defaults(handler=not_implemented("report"))
