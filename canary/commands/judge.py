"""`canary judge`: judge analyses given as JSON (no Prometheus needed)."""

from __future__ import annotations

import argparse

from canary.commands._common import not_implemented


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "judge", help="judge analyses given as JSON (no Prometheus needed)"
    )
    parser.set_defaults(handler=not_implemented("judge"))
