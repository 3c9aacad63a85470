"""`canary analyze`: judge a past window of a configured canary from Prometheus."""

from __future__ import annotations

import argparse

from canary.commands._common import not_implemented


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "analyze", help="judge a past window of a configured canary from Prometheus"
    )
    parser.set_defaults(handler=not_implemented("analyze"))
