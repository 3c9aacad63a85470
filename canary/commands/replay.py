"""`canary replay`: re-judge stored analyses; backtest configurations over history."""

from __future__ import annotations

import argparse

from canary.commands._common import not_implemented


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "replay", help="re-judge stored analyses; backtest configurations over history"
    )
    parser.set_defaults(handler=not_implemented("replay"))
