"""Operator commands: start, pause, resume, abort, promote, status (not implemented yet)."""

from __future__ import annotations

import argparse

from canary.commands._common import not_implemented

HELP = {
    "start": "start an analysis of a configured canary",
    "pause": "pause an analysis (no rounds, weights kept)",
    "resume": "resume a paused or halted analysis",
    "abort": "abort an analysis and roll back",
    "promote": "promote an analysis now (manual gate)",
    "status": "show canaries and their running analyses",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    for name, text in HELP.items():
        parser = subparsers.add_parser(name, help=text)
        parser.set_defaults(handler=not_implemented(name))
