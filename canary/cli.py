"""The `canary` command line: one subcommand per module in `canary.commands`.

Global options: ``--config`` (or ``CANARY_CONFIG``), ``--database-url``,
``--log-format``, ``--log-level``, ``--debug``. Exit codes: 0 ok, 1 a judged verdict
of fail, 2 usage or configuration error, 3 runtime error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from canary.errors import EXIT_RUNTIME, EXIT_USAGE, CanaryError
from canary.logs import setup_logging

#: Modules in canary.commands, each with `register(subparsers)`; order is --help's.
COMMAND_MODULES = (
    "demo",
    "run",
    "serve",
    "control",
    "judge",
    "analyze",
    "replay",
    "history",
    "export",
    "report",
    "traffic",
    "db",
    "config",
)

log = logging.getLogger("canary")


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors, which is already our usage exit code."""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="canary",
        description="Progressive-delivery canary analysis for Istio meshes.",
        epilog="Exit codes: 0 ok, 1 verdict fail, 2 usage or configuration error, 3 runtime error.",
    )
    parser.add_argument(
        "--config",
        default=os.environ.get("CANARY_CONFIG"),
        help="TOML configuration file (env CANARY_CONFIG); embedded defaults if unset",
    )
    parser.add_argument(
        "--database-url",
        help="override [database].url, e.g. postgresql+psycopg://user@host/db",
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    parser.add_argument("--log-level", default=os.environ.get("CANARY_LOG_LEVEL", "INFO"))
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"canary.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_format, "DEBUG" if args.debug else args.log_level)
    try:
        return int(args.handler(args) or 0)
    except CanaryError as exc:
        if args.debug:
            log.exception("%s", exc)
        print(f"canary: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # an unexpected bug: one line unless --debug
        if args.debug:
            raise
        print(
            f"canary: internal error: {type(exc).__name__}: {exc} (rerun with --debug)",
            file=sys.stderr,
        )
        return EXIT_RUNTIME


def entrypoint() -> None:
    sys.exit(main())


__all__ = ["EXIT_USAGE", "build_parser", "main"]
