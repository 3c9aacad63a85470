"""What every command needs: the configuration, the store, JSON and table output."""

from __future__ import annotations

import argparse
import json
import re
import socket
import sys
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any

from rich.console import Console

from canary.config import Config, load_config, parse_duration
from canary.errors import UsageError
from canary.store.database import check_schema, connect

console = Console(stderr=False, highlight=False, soft_wrap=True)


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def load(args: argparse.Namespace) -> Config:
    """The configuration named by --config / CANARY_CONFIG, or the embedded defaults."""
    return load_config(args.config)


def database_url(args: argparse.Namespace, config: Config) -> str:
    return args.database_url or config.database.resolved_url()


def listen_socket(listen: str) -> socket.socket:
    """A socket bound to HOST:PORT and listening; UsageError (one line) when it cannot be."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        family, kind, proto, _name, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, ValueError) as exc:
        raise UsageError(f"server.listen {listen}: cannot listen: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        why = exc.strerror or str(exc)
        raise UsageError(f"server.listen {listen}: cannot listen: {why}") from None
    sock.set_inheritable(True)
    return sock


def open_engine(args: argparse.Namespace, config: Config, *, check: bool = True):  # type: ignore[no-untyped-def]
    """An engine on the configured database, refusing a wrong schema when `check`."""
    engine = connect(database_url(args, config))
    if check:
        check_schema(engine)
    return engine


def to_jsonable(value: Any) -> Any:
    """Dataclasses, enums, datetimes, tuples and mappings -> plain JSON values."""
    if is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(asdict(value))
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    return value


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(value), indent=2, allow_nan=False) + "\n")


def not_implemented(name: str):  # type: ignore[no-untyped-def]
    def handler(args: argparse.Namespace) -> int:
        raise UsageError(f"`canary {name}` is not implemented yet")

    return handler


# --------------------------------------------------------------------------- times

_RELATIVE = re.compile(r"^now\s*(?:-\s*(\S+))?$")


def parse_time(text: str, option: str, *, now: datetime | None = None) -> datetime:
    """A UTC datetime from ISO 8601, epoch seconds, ``now`` or ``now-DURATION``."""
    now = now or datetime.now(UTC)
    value = text.strip()
    try:
        if match := _RELATIVE.match(value):
            offset = parse_duration(match.group(1)) if match.group(1) else 0.0
            return now - timedelta(seconds=offset)
        if re.fullmatch(r"\d+(\.\d+)?", value):
            return datetime.fromtimestamp(float(value), UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except (ValueError, OverflowError) as exc:
        raise UsageError(
            f"{option} {text!r}: not a time ({exc}); use e.g. 2026-01-01T10:00:00Z, "
            "1767261600 or now-2h"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def since_time(text: str | None, option: str = "--since") -> datetime | None:
    """``30d`` -> the UTC time 30 days ago (None for None); UsageError naming the value."""
    if text is None:
        return None
    try:
        return datetime.now(UTC) - timedelta(seconds=parse_duration(text))
    except (ValueError, OverflowError) as exc:
        raise UsageError(f"{option} {text!r}: {exc}") from None
