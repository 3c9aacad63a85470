"""`canary run`: run the daemon: scheduled rounds, traffic shifting, HTTP API."""

from __future__ import annotations

import argparse

from canary.commands._common import not_implemented


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run the daemon: scheduled rounds, traffic shifting, HTTP API"
    )
    parser.set_defaults(handler=not_implemented("run"))
