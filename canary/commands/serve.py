"""`canary serve`: serve the HTTP API only (Argo Rollouts web metric provider, REST, /metrics)."""

from __future__ import annotations

import argparse

from canary.commands._common import not_implemented


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve the HTTP API only (Argo Rollouts web metric provider, REST, /metrics)"
    )
    parser.set_defaults(handler=not_implemented("serve"))
