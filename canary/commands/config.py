"""`canary config check FILE`: validate a configuration and print every problem."""

from __future__ import annotations

import argparse

from canary import preflight
from canary.commands._common import add_json_flag, console, print_json
from canary.config import load_config
from canary.errors import EXIT_USAGE, ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="check a configuration file")
    sub = parser.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    check = sub.add_parser(
        "check",
        help="validate FILE; print each problem with its key path, exit 2 if any",
    )
    check.add_argument("file", help="TOML configuration file")
    check.add_argument(
        "--offline",
        action="store_true",
        help="check the file alone, not what it points to here (secret files, environment "
        "variables, kubeconfig, templates): for a configuration that runs elsewhere",
    )
    add_json_flag(check)
    check.set_defaults(handler=check_command)


def check_command(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
        # What the file points to must be there too: `run` and `serve` check the same.
        if not args.offline:
            preflight.check(config, args.file)
    except ConfigError as exc:
        if args.json:
            print_json(
                {"ok": False, "problems": [{"key": k, "message": m} for k, m in exc.problems]}
            )
        else:
            for key, message in exc.problems:
                console.print(f"{key}: {message}" if key else message, markup=False)
        return EXIT_USAGE
    if args.json:
        print_json({"ok": True, "canaries": [c.name for c in config.canary]})
    else:
        names = ", ".join(c.name for c in config.canary) or "none"
        console.print(f"{args.file}: ok ({len(config.canary)} canaries: {names})", markup=False)
    return 0
