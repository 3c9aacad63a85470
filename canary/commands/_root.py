"""The composition root: how `canary run`, `canary serve` and `canary demo` put the
parts together.

Each command chooses its parts (the daemon with Prometheus and the Kubernetes
routers, the API alone, or the daemon on the simulated mesh with in-memory routers);
this module builds what they share the same way for all three: the API server on a
metric source and a store, with canary's own metrics on /metrics and uvicorn's
configuration from `canary.api.server` (no lifespan handlers: the commands open and
close the parts themselves).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from canary.config import Config
from canary.store.database import Sessions

__all__ = ["api_server"]


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
    return server
