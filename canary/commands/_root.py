"""The composition root: how `canary run`, `canary serve` and `canary demo` put the
parts together.

Each command chooses its parts (the daemon with Prometheus and the Kubernetes
routers, the API alone, or the daemon on the simulated mesh with in-memory routers);
this module builds what they share the same way for all three: the API server on a
metric source and a store, with canary's own metrics on /metrics and uvicorn's
configuration from `canary.api.server` (no lifespan handlers: the commands open and
close the parts themselves), the heap left by the start (`settle_heap`), and the
worker threads that run the blocking work (database transactions) of the process
(`use_worker_threads`).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from canary.config import Config
from canary.store.database import Sessions, backend

__all__ = ["api_server", "settle_heap", "use_worker_threads", "worker_threads"]


def settle_heap() -> None:
    """Exempt what the start left on the heap from the garbage collector's passes.

    Imports, the configuration and the API's models leave some 180,000 objects that
    live as long as the process; every full collection would walk them again, and a
    round's allocations (Prometheus answers, store rows) trigger collections often.
    `gc.freeze` moves them out of the collected generations (CPython's documented use:
    freeze once the start is done). The cost of a round's own collections remains.
    """
    gc.collect()
    gc.freeze()


def worker_threads(sessions: Sessions, *, daemon: bool) -> int:
    """How many threads run a process' blocking work (`asyncio.to_thread`).

    With the daemon (`run`, `demo`): 1 on SQLite, which has one writer (more workers
    would only sleep in SQLite's busy handler), 8 on PostgreSQL. The API alone
    (`serve`): 32, since the default pool (CPUs + 4) would queue concurrent Argo
    measurements behind each other.
    """
    if not daemon:
        return 32
    return 1 if backend(sessions) == "sqlite" else 8


def use_worker_threads(sessions: Sessions, *, daemon: bool) -> None:
    """Give the running event loop its default executor of `worker_threads` threads."""
    threads = worker_threads(sessions, daemon=daemon)
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=threads, thread_name_prefix="canary-worker")
    )


def api_server(
    config: Config,
    sessions: Sessions,
    source: Any | None,
    *,
    tokens: Sequence[str] | None = None,
    auth: bool = True,
    round_timeout: float = 8.0,
    kubernetes: bool = False,
    host: str | None = None,
    port: int | None = None,
    signals: bool = False,
    **uvicorn_options: Any,
) -> Any:
    """A uvicorn server for the API on `config.server` (or `host`/`port`).

    `tokens=None` reads them from `config.server`; `kubernetes` says the process moves
    traffic (readiness then probes the Kubernetes API). `signals=False` (run, demo):
    the command owns SIGTERM/SIGINT (the daemon's `stop`); True (serve): uvicorn's
    own handlers stop the server.
    """
    import uvicorn

    from canary import telemetry
    from canary.api.app import create_app
    from canary.api.context import AppContext
    from canary.api.server import server_config

    context = AppContext(
        config=config,
        sessions=sessions,
        source=source,
        tokens=tokens,
        auth=auth,
        round_timeout=round_timeout,
        registry=telemetry.REGISTRY,
        kubernetes=kubernetes,
    )
    telemetry.watch_store(sessions)
    server = uvicorn.Server(
        server_config(create_app(context), config.server, host=host, port=port, **uvicorn_options)
    )
    if not signals:
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    settle_heap()
    return server
