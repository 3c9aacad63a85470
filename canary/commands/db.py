"""`canary db upgrade|status`: apply and inspect schema migrations."""

from __future__ import annotations

import argparse

from canary.commands._common import add_json_flag, console, database_url, load, print_json
from canary.store.database import connect, current_revision, head_revision, migrate


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("db", help="database schema: upgrade, status")
    sub = parser.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    upgrade = sub.add_parser("upgrade", help="create or migrate the schema to this version")
    add_json_flag(upgrade)
    upgrade.set_defaults(handler=upgrade_command)
    status = sub.add_parser("status", help="show the schema revision of the database")
    add_json_flag(status)
    status.set_defaults(handler=status_command)


def upgrade_command(args: argparse.Namespace) -> int:
    url = database_url(args, load(args))
    engine = connect(url)
    before, after = migrate(engine)
    if args.json:
        print_json({"database": engine.url.render_as_string(), "before": before, "after": after})
    else:
        what = "already at" if before == after else f"upgraded from {before or 'empty'} to"
        console.print(f"{engine.url.render_as_string()}: {what} revision {after}", markup=False)
    return 0


def status_command(args: argparse.Namespace) -> int:
    engine = connect(database_url(args, load(args)))
    current, head = current_revision(engine), head_revision()
    if args.json:
        print_json({"current": current, "head": head, "up_to_date": current == head})
    else:
        state = "up to date" if current == head else "needs `canary db upgrade`"
        console.print(f"revision {current or 'none'} (head {head}): {state}", markup=False)
    return 0
