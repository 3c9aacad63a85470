"""`canary serve`: serve the HTTP API only (Argo Rollouts web metric provider, REST, /metrics).

Refuses to start on a database without the current schema (`canary db upgrade`
first) and without any API token, unless `--insecure-no-auth` is given for local
use on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from canary import preflight
from canary.commands._common import database_url, listen_socket, load
from canary.config import ServerConfig
from canary.errors import UsageError
from canary.store.database import check_schema, connect, sessions

log = logging.getLogger("canary.serve")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve the HTTP API only (Argo Rollouts web metric provider, REST, /metrics)"
    )
    parser.add_argument("--listen", help="HOST:PORT, overrides [server].listen")
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve without bearer tokens (local use only; refused unless listening on loopback)",
    )
    parser.add_argument(
        "--round-timeout",
        type=float,
        default=8.0,
        help="seconds an Argo measurement may spend on a round before answering with the "
        "stored judgement (default 8, below Argo's 10 s timeout)",
    )
    parser.set_defaults(handler=serve)


def _loopback(host: str) -> bool:
    return host in ("127.0.0.1", "::1", "localhost") or host.startswith("127.")


def serve(args: argparse.Namespace) -> int:
    config = load(args)
    preflight.check(config, args.config or "configuration", args.database_url)
    server = config.server
    if args.listen:
        try:
            server = ServerConfig.model_validate({**server.model_dump(), "listen": args.listen})
        except ValueError as exc:
            raise UsageError(f"--listen: must be HOST:PORT, got {args.listen!r}") from exc
    if not 0 < args.round_timeout <= 60:
        raise UsageError("--round-timeout: must be between 0 and 60 seconds")
    tokens = server.api_tokens()
    if args.insecure_no_auth:
        if not _loopback(server.host):
            raise UsageError(
                f"--insecure-no-auth is for local use: listen on 127.0.0.1, not {server.host}"
            )
    elif not tokens:
        where = server.api_token_file or f"${server.api_token_env}"
        raise UsageError(
            f"no API token configured (server.api_token_file / api_token_env: {where} is "
            "empty); set one, or pass --insecure-no-auth for local use"
        )
    engine = connect(database_url(args, config))
    check_schema(engine)  # SchemaError: "run `canary db upgrade` first" (creates no file)
    sock = listen_socket(server.listen)  # a port in use is one line, before anything runs

    from canary.commands._root import api_server
    from canary.metrics.source import PrometheusSource

    source = PrometheusSource(config.prometheus)
    factory = sessions(engine)
    api = api_server(
        config.model_copy(update={"server": server}),
        factory,
        source,
        tokens=tokens,
        auth=not args.insecure_no_auth,
        round_timeout=args.round_timeout,
        signals=True,
    )
    if args.insecure_no_auth:
        log.warning("serving WITHOUT authentication (--insecure-no-auth) on %s", server.listen)
    try:
        asyncio.run(_run(api, factory, server.host, server.port, source, sock))
    finally:
        sock.close()
    return 0


async def _run(server, sessions, host: str, port: int, source, sock) -> None:  # type: ignore[no-untyped-def]
    from canary.commands._root import use_worker_threads

    use_worker_threads(sessions, daemon=False)
    log.info("serving the canary API on http://%s:%d", host, port)
    try:
        await server.serve(sockets=[sock])
    finally:
        close = getattr(source, "aclose", None)
        if close is not None:
            await close()
