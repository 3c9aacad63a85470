"""`canary history`: list stored analyses."""

from __future__ import annotations

import argparse

from canary.commands._common import not_implemented


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("history", help="list stored analyses")
    parser.set_defaults(handler=not_implemented("history"))
    show = subparsers.add_parser("show", help="show one analysis round by round")
    show.set_defaults(handler=not_implemented("show"))
