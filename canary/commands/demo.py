"""`canary demo`: the real daemon against a simulated mesh, no configuration, no cluster.

Two canaries run side by side through the real scheduler, engine, judge, SQLite
store and API server: `checkout` is as healthy as its baseline and is promoted step
by step once the evidence says PASS; the new revision of `payments` is worse than its
baseline from its first request (`--error-rate`, `--latency-factor`) and is rolled
back. The mesh's clock runs `--speed` times faster than real time.

Weights live in in-memory routers (`--mesh memory`, the default), or in Istio
VirtualServices (`--mesh istio`) or Gateway API HTTPRoutes (`--mesh gateway-api`)
held by an in-process stand-in of the Kubernetes API and moved by the same routers,
JSON patches and write records as on a cluster; the summary shows each route's
final weights.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import secrets
import signal
import time
from pathlib import Path
from typing import Any

from rich.live import Live
from rich.table import Table

from canary import control
from canary.commands._common import console
from canary.config import Config, default_data_dir, parse_config
from canary.daemon import Daemon, single_daemon_lock
from canary.errors import UsageError
from canary.metrics.simulated import SimulatedCanary, SimulatedMesh
from canary.metrics.simulated_traffic import ArmModel
from canary.model import AnalysisStatus
from canary.notify import Notifier
from canary.report import render_analysis
from canary.store.analyses import load_analysis_full
from canary.store.database import connect, migrate, sessions
from canary.traffic import make_router
from canary.traffic.gatewayapi import GROUP as GATEWAY_GROUP
from canary.traffic.istio import GROUP as ISTIO_GROUP
from canary.traffic.kube import Connection, KubeClient
from canary.traffic.memory import MemoryRouter
from canary.traffic.standin import KubeStandIn
from canary.verdict_words import deciding_effects, describe_metric

log = logging.getLogger(__name__)

HEALTHY, REGRESSING = "checkout", "payments"
NAMESPACE = "demo"
MESHES = ("memory", "istio", "gateway-api")
BASE_ERROR_RATE = 0.01
BASE_LATENCY_MS = 45.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run the daemon against a simulated mesh: one canary promoted, one rolled back",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--error-rate",
        type=float,
        default=0.05,
        help="error rate of the regressing canary (default 0.05; baseline 0.01)",
    )
    parser.add_argument(
        "--latency-factor",
        type=float,
        default=1.5,
        help="latency multiplier of the regressing canary (default 1.5)",
    )
    parser.add_argument(
        "--rps", type=float, default=1000.0, help="requests/s per service (default 1000)"
    )
    parser.add_argument(
        "--mesh",
        choices=MESHES,
        default="memory",
        help="where the weights live: in-memory routers (default), or VirtualServices "
        "(istio) or HTTPRoutes (gateway-api) in an in-process Kubernetes API stand-in",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=60.0,
        help="simulated seconds per real second; one round per real second (default 60)",
    )
    parser.add_argument(
        "--listen",
        default="127.0.0.1:0",
        help="HOST:PORT of the API and report pages (default a free port on localhost)",
    )
    parser.add_argument(
        "--timeout", type=float, default=180.0, help="give up after this many seconds"
    )
    parser.add_argument(
        "--keep-serving",
        action="store_true",
        help="after the demo, keep serving the report pages until Ctrl-C",
    )
    parser.add_argument(
        "--data-dir",
        help="where the SQLite database and reports go (default $CANARY_DATA_DIR or "
        "~/.local/share/canary)",
    )
    parser.set_defaults(handler=_demo)


def demo_config(listen: str, mesh: str = "memory") -> Config:
    """The two demo canaries on `mesh`: one-second rounds and short steps."""
    canary = {
        "namespace": NAMESPACE,
        "interval": "1s",
        "max_duration": "2m",
        "steps": [
            {"weight": 10, "duration": "3s"},
            {"weight": 20, "duration": "3s"},
            {"weight": 50, "duration": "4s"},
        ],
        "metrics": [
            {"name": "errors", "kind": "counts", "min_requests": 2000},
            {"name": "latency", "kind": "histogram"},
        ],
    }
    canaries = []
    for name in (HEALTHY, REGRESSING):
        canaries.append(
            {
                **canary,
                "name": name,
                "traffic": _traffic(name, mesh),
                "arms": {
                    "canary": {"match": {"destination_workload": f"{name}-canary"}},
                    "baseline": {"match": {"destination_workload": f"{name}-primary"}},
                },
            }
        )
    kubernetes = {"mode": "memory" if mesh == "memory" else "kubeconfig"}
    return parse_config(
        {"kubernetes": kubernetes, "server": {"listen": listen}, "canary": canaries}, "demo"
    )


def _traffic(name: str, mesh: str) -> dict[str, Any]:
    if mesh == "gateway-api":
        return {
            "kind": "HTTPRoute",
            "http_route": name,
            "rule": "primary",
            "canary": {"host": f"{name}-canary"},
            "stable": {"host": f"{name}-primary"},
        }
    return {
        "virtual_service": name,
        "route": "primary",
        "canary": {"host": name, "subset": "canary"},
        "stable": {"host": name, "subset": "stable"},
    }


def _route(name: str, mesh: str) -> tuple[str, dict[str, Any]]:
    """(plural, object) of the demo route of `name`: all traffic to stable."""
    metadata = {"name": name, "namespace": NAMESPACE}
    if mesh == "gateway-api":
        backends = [
            {"name": f"{name}-primary", "port": 80, "weight": 100},
            {"name": f"{name}-canary", "port": 80, "weight": 0},
        ]
        spec = {
            "parentRefs": [{"name": "demo-gateway"}],
            "rules": [{"name": "primary", "backendRefs": backends}],
        }
        return "httproutes", {
            "apiVersion": f"{GATEWAY_GROUP}/v1",
            "kind": "HTTPRoute",
            "metadata": metadata,
            "spec": spec,
        }
    destinations = [
        {"destination": {"host": name, "subset": "stable"}, "weight": 100},
        {"destination": {"host": name, "subset": "canary"}, "weight": 0},
    ]
    return "virtualservices", {
        "apiVersion": f"{ISTIO_GROUP}/v1",
        "kind": "VirtualService",
        "metadata": metadata,
        "spec": {"hosts": [name], "http": [{"name": "primary", "route": destinations}]},
    }


def _routers(config: Config, mesh: str) -> tuple[dict[str, Any], KubeClient | None]:
    """The demo's routers by canary name, and the stand-in's client to close after."""
    if mesh == "memory":
        return {c.name: MemoryRouter(c.name) for c in config.canary}, None
    api = KubeStandIn({GATEWAY_GROUP: "v1", ISTIO_GROUP: "v1"})
    for canary in config.canary:
        api.create(*_route(canary.name, mesh))
    kube = KubeClient(Connection(server="http://kubernetes.demo"), transport=api.transport())
    return {c.name: make_router(config.kubernetes, c, client=kube) for c in config.canary}, kube


def _demo(args: argparse.Namespace) -> int:
    if args.speed <= 0 or args.rps <= 0:
        raise UsageError("--speed and --rps must be positive")
    if not 0 <= args.error_rate <= 1:
        raise UsageError("--error-rate must be between 0 and 1")
    if args.latency_factor <= 0:
        raise UsageError("--latency-factor must be positive")
    data_dir = Path(args.data_dir) if args.data_dir else default_data_dir()
    url = args.database_url or f"sqlite:///{data_dir / 'canary.db'}"
    config = demo_config(args.listen, args.mesh)
    if not args.debug:  # the live table shows progress; keep the log to warnings
        logging.getLogger("canary").setLevel(logging.WARNING)
    with single_daemon_lock(url):
        engine = connect(url)
        migrate(engine)
        try:
            ids, routes = asyncio.run(_run_demo(args, config, sessions(engine)))
            _write_reports(ids, routes, sessions(engine), data_dir / "reports")
        finally:
            engine.dispose()
    return 0


async def _run_demo(
    args: argparse.Namespace, config: Config, factory: Any
) -> tuple[dict[str, str], dict[str, str]]:
    """The analyses' ids and each route's final weights in words, by canary name."""
    from canary.commands._root import use_worker_threads

    use_worker_threads(factory, daemon=True)
    routers, kube = _routers(config, args.mesh)
    try:
        ids = await _run_daemon(args, config, factory, routers)
        return ids, {name: _weights_text(await r.get()) for name, r in routers.items()}
    finally:
        if kube is not None:
            await kube.aclose()


def _weights_text(state: Any) -> str:
    weights = state.weights
    return (
        f"{state.resource}, route {state.route}: canary {weights.canary}%, stable {weights.stable}%"
    )


async def _run_daemon(
    args: argparse.Namespace, config: Config, factory: Any, routers: dict[str, Any]
) -> dict[str, str]:

    async def weight_of(name: str) -> int:
        return (await routers[name].get()).weights.canary

    healthy_arm = ArmModel(error_rate=BASE_ERROR_RATE, latency_median_ms=BASE_LATENCY_MS)
    regressed_arm = ArmModel(
        error_rate=args.error_rate, latency_median_ms=BASE_LATENCY_MS * args.latency_factor
    )
    mesh = SimulatedMesh(
        {
            HEALTHY: SimulatedCanary(args.rps, healthy_arm, healthy_arm),
            REGRESSING: SimulatedCanary(args.rps, healthy_arm, regressed_arm),
        },
        weight_of,
        speed=args.speed,
    )
    daemon = Daemon(
        config,
        factory,
        source=mesh,
        router_factory=lambda canary: routers[canary.name],
        notifier=Notifier([]),
        owner="demo",
        sync_interval=0.5,
        shutdown_timeout=3.0,
    )
    token = secrets.token_urlsafe(16)
    server = _api_server(config, daemon, factory, token)
    api_task = asyncio.create_task(server.serve(), name="api")
    daemon_task = asyncio.create_task(daemon.run(), name="daemon")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.stop)
    ids = {name: control.start_analysis(factory, config, name, revision="v2") for name in routers}
    daemon.poke()
    started = time.monotonic()
    try:
        with Live(console=console, refresh_per_second=4, transient=False) as live:
            while not daemon_task.done():
                rows = await asyncio.to_thread(_progress, factory, ids)
                live.update(_table(rows))
                if all(AnalysisStatus(r["status"]).is_final for r in rows.values()):
                    break
                if time.monotonic() - started > args.timeout:
                    console.print(f"demo timed out after {args.timeout:.0f}s", markup=False)
                    break
                await asyncio.sleep(0.25)
        console.print()
    finally:
        daemon.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(daemon_task, timeout=10)
    if args.keep_serving and not api_task.done():
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        host = config.server.listen.rpartition(":")[0]
        console.print(
            f"report pages: http://{host}:{_bound_port(server)}/analyses?token={token} "
            "(Ctrl-C to stop)",
            markup=False,
        )
        await stop.wait()
    server.should_exit = True
    with contextlib.suppress(Exception):
        await asyncio.wait_for(api_task, timeout=5)
    return ids


def _api_server(config: Config, daemon: Daemon, factory: Any, token: str):  # type: ignore[no-untyped-def]
    from canary.commands._root import api_server

    host, _, port = config.server.listen.rpartition(":")
    return api_server(
        config,
        factory,
        daemon.source,
        tokens=[token],
        host=host,
        port=int(port),
        log_level="warning",
    )


def _bound_port(server: Any) -> int | None:
    for listener in getattr(server, "servers", []) or []:
        for sock in listener.sockets:
            return int(sock.getsockname()[1])
    return None


def _progress(factory: Any, ids: dict[str, str]) -> dict[str, dict[str, Any]]:
    rows = {}
    with factory() as session:
        for name, analysis_id in ids.items():
            analysis = load_analysis_full(session, analysis_id)
            latest = analysis.rounds[-1] if analysis.rounds else None
            evidence = [
                describe_metric(r.metric, r.verdict, r.statistics, r.reasons)
                for r in (latest.results if latest else [])
            ]
            rows[name] = {
                "status": analysis.status,
                "weight": analysis.weight,
                "rounds": analysis.rounds_done,
                "verdict": analysis.verdict,
                "evidence": evidence,
                "reason": analysis.reason or "",
            }
    return rows


def _table(rows: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="canary demo: simulated mesh, real daemon")
    for column in ("canary", "status", "weight", "rounds", "verdict", "evidence"):
        table.add_column(column)
    for name, row in rows.items():
        evidence = "\n".join(line for words in row["evidence"] for line in words.lines())
        table.add_row(
            name,
            row["status"],
            f"{row['weight']}%",
            str(row["rounds"]),
            row["verdict"],
            evidence or "warming up",
        )
    return table


def _write_reports(ids: dict[str, str], routes: dict[str, str], factory: Any, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with factory() as session:
        for name, analysis_id in ids.items():
            analysis = load_analysis_full(session, analysis_id)
            path = out / f"{analysis_id}.html"
            path.write_text(render_analysis(analysis), encoding="utf-8")
            judged = [r for r in analysis.rounds if r.index >= 1]
            effects = deciding_effects(analysis.verdict, judged[-1].results) if judged else ""
            console.print(
                f"{name}: {analysis.status} ({analysis.verdict}) after "
                f"{analysis.rounds_done} rounds: {analysis.reason or ''}"
                + (f" — {effects}" if effects else ""),
                markup=False,
            )
            console.print(f"  traffic: {routes[name]}", markup=False)
            console.print(f"  report: {path}", markup=False)
    console.print("More: `canary history`, `canary show ID`, `canary replay ID`.", markup=False)
