"""The `canary` command line: one subcommand per module in `canary.commands`.

Global options: ``--config`` (or ``CANARY_CONFIG``), ``--database-url``,
``--log-format``, ``--log-level``, ``--debug``, accepted before or after the command
(``canary db upgrade --database-url URL``), except where a command has an option of the
same name (`replay --config` names the configuration to replay with). Exit codes: 0 ok,
1 a judged verdict of fail, 2 usage or configuration error, 3 runtime error.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from canary import DISTRIBUTION, __version__
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
    "completion",
)

log = logging.getLogger("canary")


class _Parser(argparse.ArgumentParser):
    """argparse exits 2 on usage errors, which is already our usage exit code."""


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """The options every command accepts; below the top their default is SUPPRESS, so
    an option given after the command sets the value and one not given keeps the top's."""

    def default(value: object) -> object:
        return value if top else argparse.SUPPRESS

    taken = parser._option_string_actions
    options: list[tuple[str, dict[str, object]]] = [
        (
            "--config",
            {
                "default": default(os.environ.get("CANARY_CONFIG")),
                "help": "TOML configuration file (env CANARY_CONFIG); embedded defaults if unset",
            },
        ),
        (
            "--database-url",
            {
                "default": default(None),
                "help": "override [database].url, e.g. postgresql+psycopg://user@host/db",
            },
        ),
        ("--log-format", {"choices": ("text", "json"), "default": default("text")}),
        ("--log-level", {"default": default(os.environ.get("CANARY_LOG_LEVEL", "INFO"))}),
        (
            "--debug",
            {
                "action": "store_true",
                "default": default(False),
                "help": "show tracebacks on errors",
            },
        ),
    ]
    group = parser.add_argument_group("global options") if not top else parser
    for flag, kwargs in options:
        if flag in taken:  # the command's own option of that name wins
            continue
        dest = flag.lstrip("-").replace("-", "_")
        group.add_argument(flag, dest=dest, **kwargs)  # type: ignore[arg-type]


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every parser below `parser` (commands and their actions), depth first."""
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases share a parser
                found.append(child)
                found.extend(_subparsers(child))
    return found


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="canary",
        description="Progressive-delivery canary analysis for Istio meshes.",
        epilog="Exit codes: 0 ok, 1 verdict fail, 2 usage or configuration error, 3 runtime error.",
    )
    parser.add_argument(
        "--version", action="version", version=f"canary {__version__} ({DISTRIBUTION})"
    )
    _global_options(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"canary.commands.{name}").register(subparsers)
    for child in _subparsers(parser):
        _global_options(child, top=False)
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
