"""`canary run`: run the daemon (scheduled rounds, traffic shifting) and the HTTP API."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal

from canary import preflight
from canary.commands._common import database_url, listen_socket, load, open_engine
from canary.config import Config
from canary.daemon import Daemon, single_daemon_lock
from canary.store.database import sessions as make_sessions

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run the daemon: scheduled rounds, traffic shifting, HTTP API"
    )
    parser.add_argument("--owner", help="this replica's lease owner id (default host/pid/random)")
    parser.add_argument(
        "--lease-ttl",
        type=float,
        default=15.0,
        help="seconds a canary's lease lasts without renewal (default 15)",
    )
    parser.add_argument(
        "--sync-interval",
        type=float,
        default=2.0,
        help="seconds between lease renewals / pickups of new analyses (default 2)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        help="seconds running rounds get to finish on SIGTERM (default 10)",
    )
    parser.add_argument("--no-api", action="store_true", help="do not serve the HTTP API")
    parser.add_argument("--listen", help="HOST:PORT for the API (default [server].listen)")
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    config = load(args)
    preflight.check(config, args.config or "configuration", args.database_url)
    url = database_url(args, config)
    with single_daemon_lock(url) as lock:
        engine = open_engine(args, config)
        if lock is not None and not args.owner:
            # One daemon per SQLite file (the lock): a restarted daemon takes its
            # leases over at once instead of waiting for them to expire.
            args.owner = "sqlite-daemon"
        # Bind the API's port before anything starts: a port in use is one line.
        sock = None if args.no_api else listen_socket(args.listen or config.server.listen)
        try:
            asyncio.run(_serve(args, config, make_sessions(engine), sock))
        finally:
            engine.dispose()
            if sock is not None:
                sock.close()
    return 0


def _api_server(args: argparse.Namespace, config: Config, daemon: Daemon):  # type: ignore[no-untyped-def]
    """A uvicorn server for the API app, or None when the API is not available."""
    try:
        from canary.commands._root import api_server
    except ImportError:
        log.warning("the HTTP API is not available in this build; running without it")
        return None

    listen = args.listen or config.server.listen
    if not config.server.api_tokens():
        log.warning(
            "no API token configured ([server] api_token_file / api_token_env): the API "
            "answers health and metrics only; authenticated endpoints are refused"
        )
    host, _, port = listen.rpartition(":")
    return api_server(
        config,
        daemon.sessions,
        daemon.source,
        kubernetes=True,
        host=host.strip("[]"),
        port=int(port),
    )


async def _serve(args: argparse.Namespace, config: Config, sessions, sock=None) -> None:  # type: ignore[no-untyped-def]
    from canary.commands._root import use_worker_threads

    use_worker_threads(sessions, daemon=True)
    daemon = Daemon(
        config,
        sessions,
        owner=args.owner,
        lease_ttl=args.lease_ttl,
        sync_interval=args.sync_interval,
        shutdown_timeout=args.shutdown_timeout,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.stop)
    server = None if args.no_api else _api_server(args, config, daemon)
    api_task = None
    if server is not None:
        api_task = asyncio.create_task(
            server.serve(sockets=[sock] if sock is not None else None), name="api"
        )
        log.info("serving the API on %s", args.listen or config.server.listen)
    try:
        await daemon.run()
    finally:
        if server is not None and api_task is not None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(api_task, timeout=5)
