"""Helpers for the daemon's end-to-end tests: configurations, VirtualServices, subprocesses.

The daemon runs against a real Prometheus scraping the Istio-like exporter of
`tests/prometheus_harness.py` and the local Kubernetes API server of
`tests/kubeapi.py`; nothing here replaces a component, it only wires them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from kubeapi import (
    GATEWAY,
    ISTIO,
    TEST_TOKEN,
    KubeApiServer,
    virtual_service,
    write_kubeconfig,
)

from canary.config import Config, parse_config

REPO = Path(__file__).resolve().parents[1]


def canary_entry(
    name: str,
    *,
    namespace: str = "live",
    interval: float = 1.0,
    steps: Sequence[tuple[int, float]] = ((10, 2), (20, 2), (50, 2)),
    promotion: str = "evidence",
    max_failed_rounds: int = 3,
    max_duration: float = 120.0,
    min_requests: int = 200,
    canary_workload: str = "app-canary",
    baseline_workload: str = "app-primary",
    mesh: str = "VirtualService",
    **extra: Any,
) -> dict[str, Any]:
    """One `[[canary]]` table routing VirtualService `name` (route `primary`), or with
    ``mesh="HTTPRoute"`` HTTPRoute `name` (rule `primary`, Services NAME-canary and
    NAME-primary)."""
    traffic: dict[str, Any] = {
        "virtual_service": name,
        "route": "primary",
        "canary": {"host": name, "subset": "canary"},
        "stable": {"host": name, "subset": "stable"},
    }
    if mesh == "HTTPRoute":
        traffic = {
            "kind": "HTTPRoute",
            "http_route": name,
            "rule": "primary",
            "canary": {"host": f"{name}-canary"},
            "stable": {"host": f"{name}-primary"},
        }
    return {
        "name": name,
        "namespace": namespace,
        "interval": interval,
        "max_duration": max_duration,
        "promotion": promotion,
        "max_failed_rounds": max_failed_rounds,
        "steps": [{"weight": w, "duration": d} for w, d in steps],
        "metrics": [
            {"name": "errors", "kind": "counts", "min_requests": min_requests},
            {"name": "latency", "kind": "histogram", "min_requests": min_requests},
        ],
        "traffic": traffic,
        "arms": {
            "canary": {"match": {"destination_workload": canary_workload}},
            "baseline": {"match": {"destination_workload": baseline_workload}},
        },
        **extra,
    }


def config_dict(
    prometheus_url: str,
    kubeconfig: Path | str,
    canaries: Sequence[Mapping[str, Any]],
    **sections: Any,
) -> dict[str, Any]:
    return {
        "prometheus": {"url": prometheus_url, "timeout": 2, "retries": 0},
        "kubernetes": {"mode": "kubeconfig", "kubeconfig": str(kubeconfig)},
        "canary": list(canaries),
        **sections,
    }


def make_config(raw: Mapping[str, Any]) -> Config:
    return parse_config(raw)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def write_toml(raw: Mapping[str, Any], path: Path) -> Path:
    """A TOML file of `raw`: tables for top-level mappings, inline values below."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in raw.items() if not isinstance(v, Mapping)]
    for key, value in raw.items():
        if isinstance(value, Mapping):
            lines.append(f"[{key}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in value.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def add_virtual_service(api: KubeApiServer, name: str, namespace: str = "live") -> None:
    """The tests' VirtualService with all traffic on stable before the analysis."""
    vs = virtual_service(name, namespace)
    route = vs["spec"]["http"][1]["route"]
    route[0]["weight"], route[1]["weight"] = 100, 0
    api.create(vs)


def add_http_route(api: KubeApiServer, name: str, namespace: str = "live") -> None:
    """The tests' HTTPRoute (rule `primary`: NAME-primary 100, NAME-canary 0)."""
    api.create(
        {
            "apiVersion": f"{GATEWAY}/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "parentRefs": [{"group": "", "kind": "Service", "name": name, "port": 80}],
                "rules": [
                    {
                        "name": "primary",
                        "backendRefs": [
                            {"name": f"{name}-primary", "port": 80, "weight": 100},
                            {"name": f"{name}-canary", "port": 80, "weight": 0},
                        ],
                    }
                ],
            },
        }
    )


def add_route(api: KubeApiServer, name: str, mesh: str, namespace: str = "live") -> None:
    """The tests' VirtualService or HTTPRoute, all traffic on stable."""
    if mesh == "HTTPRoute":
        add_http_route(api, name, namespace)
    else:
        add_virtual_service(api, name, namespace)


def kubeconfig(api: KubeApiServer, directory: Path) -> Path:
    return write_kubeconfig(directory / "kubeconfig", api.url, token=TEST_TOKEN)


def canary_weight(
    api: KubeApiServer, name: str, namespace: str = "live", mesh: str = "VirtualService"
) -> int:
    if mesh == "HTTPRoute":
        route = api.http_route(namespace, name)
        return int(route["spec"]["rules"][0]["backendRefs"][1].get("weight") or 0)
    vs = api.virtual_service(namespace, name)
    return int(vs["spec"]["http"][1]["route"][1].get("weight") or 0)


def vs_weight_writes(
    api: KubeApiServer, name: str, namespace: str = "live", mesh: str = "VirtualService"
) -> list[int]:
    """The canary weight of every write that reached the VirtualService (or HTTPRoute)."""
    if mesh == "HTTPRoute":
        path = f"/apis/{GATEWAY}/v1/namespaces/{namespace}/httproutes/{name}"
        suffix = "/backendRefs/1/weight"
    else:
        path = f"/apis/{ISTIO}/v1/namespaces/{namespace}/virtualservices/{name}"
        suffix = "/route/1/weight"
    weights = []
    for request in api.writes():
        if request.path != path or request.method not in ("PATCH", "PUT"):
            continue
        weights.append(_canary_weight_in(request.body, suffix))
    return weights


def _canary_weight_in(body: Any, suffix: str = "/route/1/weight") -> int:
    """The canary weight a PATCH sets (JSON patch op on the canary's weight)."""
    if isinstance(body, list):
        for op in body:
            path = op.get("path", "")
            if path.endswith(suffix) and op.get("op") in ("replace", "add"):
                return int(op["value"])
    return -1


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout}s")


class DaemonProcess:
    """`canary run` in a subprocess (so it can be killed with SIGKILL)."""

    def __init__(
        self,
        config_path: Path,
        database_url: str,
        log_path: Path,
        *,
        owner: str | None = None,
        lease_ttl: float = 15.0,
        sync_interval: float = 1.0,
        extra: Sequence[str] = (),
        api: bool = False,
    ) -> None:
        self.log_path = log_path
        command = [
            sys.executable,
            "-m",
            "canary",
            "--config",
            str(config_path),
            "--database-url",
            database_url,
            "run",
            *(() if api else ("--no-api",)),
            "--lease-ttl",
            str(lease_ttl),
            "--sync-interval",
            str(sync_interval),
            "--shutdown-timeout",
            "5",
            *extra,
        ]
        if owner:
            command += ["--owner", owner]
        env = {**os.environ, "PYTHONPATH": str(REPO), "CANARY_LOG_LEVEL": "INFO"}
        self._log = log_path.open("ab")
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=REPO
        )

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, exactly like a crashed pod."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self._log.close()

    def terminate(self, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self._log.close()
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class WebhookReceiver:
    """A local HTTP server recording every JSON POST (the webhook target in tests).

    `fail_first` answers that many requests with 500 first; `delay` sleeps before
    answering (to exercise timeouts).
    """

    def __init__(self, *, fail_first: int = 0, delay: float = 0.0) -> None:
        import http.server
        import threading

        self.bodies: list[Any] = []
        self.attempts = 0
        self.fail_first = fail_first
        self.delay = delay
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.attempts += 1
                if receiver.delay:
                    time.sleep(receiver.delay)
                if receiver.attempts <= receiver.fail_first:
                    self.send_response(500)
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self) -> list[str]:
        return [b.get("event") for b in self.bodies]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
