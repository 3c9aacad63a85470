"""`canary export` and `canary import`: move analyses between databases."""

from __future__ import annotations

import argparse

from canary.commands._common import not_implemented


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser("export", help="write analyses as versioned JSON")
    export.set_defaults(handler=not_implemented("export"))
    imported = subparsers.add_parser("import", help="read analyses written by `canary export`")
    imported.set_defaults(handler=not_implemented("import"))
