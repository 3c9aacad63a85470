"""`canary demo`: run the daemon against a simulated mesh: one canary promoted, one rolled back."""

from __future__ import annotations

import argparse

from canary.commands._common import not_implemented


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the daemon against a simulated mesh: one canary promoted, one rolled back"
    )
    parser.set_defaults(handler=not_implemented("demo"))
