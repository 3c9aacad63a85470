"""`canary export` and `canary import`: move analyses between databases as versioned JSON.

canary export ID... [--out FILE]     # stdout without --out
canary import FILE [--json]          # `-` reads stdin; importing twice adds nothing
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from canary.commands._common import add_json_flag, console, load, open_engine, print_json
from canary.errors import UsageError
from canary.store.database import sessions
from canary.transfer import export_analyses, import_analyses, parse_document


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser("export", help="write analyses as versioned JSON")
    export.add_argument("analysis_ids", nargs="+", metavar="ID", help="analyses to export")
    export.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    export.set_defaults(handler=export_command)
    imported = subparsers.add_parser("import", help="read analyses written by `canary export`")
    imported.add_argument("file", metavar="FILE", help="an export file, or - for stdin")
    add_json_flag(imported)
    imported.set_defaults(handler=import_command)


def export_command(args: argparse.Namespace) -> int:
    factory = sessions(open_engine(args, load(args)))
    with factory() as session:
        document = export_analyses(session, args.analysis_ids)
    text = json.dumps(document, indent=1, allow_nan=False) + "\n"
    if not args.out:
        sys.stdout.write(text)
        return 0
    target = Path(args.out)
    if target.parent and not target.parent.is_dir():
        raise UsageError(f"--out {args.out}: directory {target.parent} does not exist")
    # Write beside the target and rename, so a failed write leaves no half file.
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    count = len(document["analyses"])
    rounds = sum(len(a["rounds"]) for a in document["analyses"])
    console.print(f"exported {count} analyses ({rounds} rounds) to {target}", markup=False)
    return 0


def import_command(args: argparse.Namespace) -> int:
    if args.file == "-":
        text, source = sys.stdin.read(), "stdin"
    else:
        try:
            text = Path(args.file).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {args.file}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise UsageError(f"{args.file}: not a UTF-8 text file") from None
        source = args.file
    analyses = parse_document(text, source)
    factory = sessions(open_engine(args, load(args)))
    with factory.begin() as session:
        report = import_analyses(session, analyses)
    if args.json:
        print_json(
            {"imported": report.imported, "replaced": report.replaced, "skipped": report.skipped}
        )
        return 0
    console.print(
        f"imported {len(report.imported)}, replaced {len(report.replaced)} with a longer "
        f"export, skipped {len(report.skipped)} already present",
        markup=False,
    )
    return 0
