"""`canary traffic`: show or set a canary's VirtualService weights."""

from __future__ import annotations

import argparse

from canary.commands._common import not_implemented


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("traffic", help="show or set a canary's VirtualService weights")
    parser.set_defaults(handler=not_implemented("traffic"))
