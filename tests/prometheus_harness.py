"""A real Prometheus 2.42 (Debian's package) for tests, benchmarks and demos.

Reusable pieces (import them as ``from prometheus_harness import ...``; the fixtures
below are shared through tests/conftest.py):

- `PrometheusServer`: starts ``/usr/bin/prometheus`` on 127.0.0.1 at a free port with
  a temporary data dir and ``--storage.tsdb.retention.time=100y`` (retention counts
  from the newest block, so old backfilled blocks would otherwise be deleted).
- `OpenMetricsWriter` + `backfill()`: deterministic data written as OpenMetrics and
  loaded with ``promtool tsdb create-blocks-from openmetrics``; `backfill` checks the
  sample count promtool prints (out-of-order or duplicate samples are dropped
  silently). Timestamps are seconds; the file ends with ``# EOF``.
- `PodCounters`, `ArmTraffic`: the Istio sidecar counters of a pod and the traffic of
  one arm (request rate, error ratio, latency), deterministic, used both by the
  backfill scenarios and by the live exporter.
- `IstioExporter`: a small threaded HTTP server exposing `istio_requests_total` and
  `istio_request_duration_milliseconds_bucket/_sum/_count` with the real Istio
  labels, whose rates, error ratios and latencies can be changed while it runs.
  Sidecar-shaped (``reporter="destination"``, ``pod`` = the workload's pod) or, with
  arms of ``reporter="waypoint"`` whose pods are waypoint pods, shaped like ambient
  mode's waypoint metrics (``pod`` = the waypoint's pod, one series per waypoint and
  destination workload; `restart_waypoint` resets every destination's counters of a
  waypoint, `add_waypoint` scales out).
  `live_prometheus(exporters)` starts a Prometheus scraping them every second
  (first samples after about 7 s).

Fixtures: `prometheus_bin` (skips nothing: fails loudly when the binary is missing),
`live_stack` (an exporter with a canary and a baseline arm + a Prometheus scraping
it, session-scoped, traffic reset per test by the caller).
"""

from __future__ import annotations

import http.server
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import httpx
import pytest

PROMETHEUS = os.environ.get("CANARY_TEST_PROMETHEUS", "/usr/bin/prometheus")
PROMTOOL = os.environ.get("CANARY_TEST_PROMTOOL", "/usr/bin/promtool")

#: Envoy's default histogram bucket bounds in milliseconds (Istio latency metric).
ENVOY_BUCKETS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
    300000, 600000, 1800000, 3600000, math.inf,
)  # fmt: skip

#: Latency multipliers cycled through for successive requests (deterministic spread).
LATENCY_SPREAD: tuple[float, ...] = (0.3, 0.6, 0.8, 0.9, 1.0, 1.0, 1.1, 1.3, 1.8, 3.0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def le_text(bound: float) -> str:
    """How Envoy writes a bucket bound: ``0.5``, ``1``, ``25``, ``+Inf``."""
    if math.isinf(bound):
        return "+Inf"
    return f"{bound:g}" if bound < 1e6 else str(int(bound))


def escape_label_value(value: str) -> str:
    """Exposition-format escaping of a label value (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_labels(labels: Mapping[str, str]) -> str:
    return ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())


def istio_labels(
    *,
    namespace: str,
    workload: str,
    pod: str,
    revision: str = "v1",
    service: str | None = None,
    reporter: str = "destination",
    source_workload: str = "loadgen",
) -> dict[str, str]:
    """The label set Istio's standard metrics carry (plus the scraped `pod`).

    With ``reporter="waypoint"`` (ambient mode) `pod` is the waypoint's pod: the labels
    are those a waypoint reports for requests to `workload`.
    """
    service = service or workload.rsplit("-", 1)[0]
    return {
        "reporter": reporter,
        "source_workload": source_workload,
        "source_workload_namespace": namespace,
        "source_principal": f"spiffe://cluster.local/ns/{namespace}/sa/{source_workload}",
        "source_app": source_workload,
        "source_version": "unknown",
        "source_canonical_service": source_workload,
        "source_canonical_revision": "latest",
        "source_cluster": "Kubernetes",
        "destination_workload": workload,
        "destination_workload_namespace": namespace,
        "destination_principal": f"spiffe://cluster.local/ns/{namespace}/sa/{service}",
        "destination_app": service,
        "destination_version": revision,
        "destination_service": f"{service}.{namespace}.svc.cluster.local",
        "destination_service_name": service,
        "destination_service_namespace": namespace,
        "destination_canonical_service": service,
        "destination_canonical_revision": revision,
        "destination_cluster": "Kubernetes",
        "request_protocol": "http",
        "grpc_response_status": "",
        "response_flags": "-",
        "connection_security_policy": "mutual_tls",
        "pod": pod,
    }


# --------------------------------------------------------------------------- counters


@dataclass
class PodCounters:
    """The Istio counters one pod's sidecar exposes (reset when it restarts).

    Like Envoy, a series exists from the first request with its labels on: the
    request counter per response code, the latency histogram per response code.
    """

    labels: dict[str, str]
    requests: dict[str, int] = field(default_factory=dict)  # response_code -> count
    buckets: dict[str, list[int]] = field(default_factory=dict)  # code -> cumulative
    sum_ms: dict[str, float] = field(default_factory=dict)

    def record(self, code: str, latency_ms: float, n: int = 1) -> None:
        self.requests[code] = self.requests.get(code, 0) + n
        buckets = self.buckets.setdefault(code, [0] * len(ENVOY_BUCKETS))
        for i, bound in enumerate(ENVOY_BUCKETS):
            if latency_ms <= bound:
                buckets[i] += n
        self.sum_ms[code] = self.sum_ms.get(code, 0.0) + latency_ms * n

    def reset(self) -> None:
        self.requests = {}
        self.buckets = {}
        self.sum_ms = {}

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        """(metric name, labels, value) of every series this pod exposes now."""
        for code, value in sorted(self.requests.items()):
            yield "istio_requests_total", {**self.labels, "response_code": code}, value
        for code, buckets in sorted(self.buckets.items()):
            labels = {**self.labels, "response_code": code}
            for bound, value in zip(ENVOY_BUCKETS, buckets, strict=True):
                yield (
                    "istio_request_duration_milliseconds_bucket",
                    {**labels, "le": le_text(bound)},
                    value,
                )
            yield "istio_request_duration_milliseconds_sum", labels, round(self.sum_ms[code], 3)
            yield "istio_request_duration_milliseconds_count", labels, buckets[-1]


@dataclass
class ArmTraffic:
    """Deterministic traffic of one arm, spread round-robin over its pods.

    `rate` requests/s; a fraction `error_ratio` answered `error_code` (allocated
    exactly, with carry); latency `latency_ms` times the cycling `LATENCY_SPREAD`.
    """

    namespace: str
    workload: str
    pods: list[str]
    revision: str = "v1"
    rate: float = 10.0
    error_ratio: float = 0.0
    error_code: str = "503"
    latency_ms: float = 20.0
    counters: dict[str, PodCounters] = field(default_factory=dict)
    _carry: float = 0.0
    _error_carry: float = 0.0
    _next: int = 0
    served: int = 0
    failed: int = 0
    #: "destination": sidecar metrics, `pods` are the workload's pods; "waypoint":
    #: ambient mode, `pods` are the waypoint pods serving this workload's traffic.
    reporter: str = "destination"
    #: Ambient mode with a destination pod label (added by a Telemetry resource):
    #: `pods` are the workload's pods, each reached through the waypoint pod named
    #: here; the series carry ``pod`` = that waypoint and ``destination_pod``.
    via: dict[str, str] | None = None

    def __post_init__(self) -> None:
        for pod in self.pods:
            self.add_pod(pod)

    def add_pod(self, pod: str) -> None:
        if pod not in self.counters:
            labels = istio_labels(
                namespace=self.namespace,
                workload=self.workload,
                pod=self.via[pod] if self.via else pod,
                revision=self.revision,
                reporter=self.reporter,
            )
            if self.via:
                labels["destination_pod"] = pod
            self.counters[pod] = PodCounters(labels)
        if pod not in self.pods:
            self.pods.append(pod)

    def remove_pod(self, pod: str) -> None:
        self.pods.remove(pod)

    def serve(self, n: int) -> None:
        """Serve exactly `n` requests now."""
        for _ in range(n):
            if not self.pods:
                return
            pod = self.pods[self._next % len(self.pods)]
            self._error_carry += self.error_ratio
            failed = self._error_carry >= 1.0 - 1e-9
            if failed:
                self._error_carry -= 1.0
            latency = self.latency_ms * LATENCY_SPREAD[self._next % len(LATENCY_SPREAD)]
            self._next += 1
            self.counters[pod].record(self.error_code if failed else "200", latency)
            self.served += 1
            self.failed += failed

    def advance(self, seconds: float) -> int:
        """Serve the requests of `seconds` at `rate` (fractions carried); returns n."""
        self._carry += self.rate * seconds
        n = int(self._carry + 1e-9)
        self._carry -= n
        self.serve(n)
        return n

    def samples(self) -> Iterator[tuple[str, dict[str, str], float]]:
        for pod in self.pods:
            yield from self.counters[pod].samples()


# --------------------------------------------------------------------------- OpenMetrics


class OpenMetricsWriter:
    """Collects samples and writes an OpenMetrics file promtool can backfill."""

    FAMILIES: ClassVar[dict[str, tuple[str, str]]] = {
        "istio_requests_total": ("istio_requests", "counter"),
        "istio_request_duration_milliseconds_bucket": (
            "istio_request_duration_milliseconds",
            "histogram",
        ),
        "istio_request_duration_milliseconds_sum": (
            "istio_request_duration_milliseconds",
            "histogram",
        ),
        "istio_request_duration_milliseconds_count": (
            "istio_request_duration_milliseconds",
            "histogram",
        ),
    }

    def __init__(self) -> None:
        self._series: dict[str, dict[tuple[str, str], list[tuple[float, float]]]] = {}
        self.samples = 0

    def add(self, name: str, labels: Mapping[str, str], timestamp: float, value: float) -> None:
        family = self.FAMILIES.get(name, (name, "gauge"))[0]
        key = (name, render_labels(labels))
        points = self._series.setdefault(family, {}).setdefault(key, [])
        if points and timestamp <= points[-1][0]:
            raise ValueError(f"samples of {name}{{{key[1]}}} must be added in time order")
        points.append((timestamp, value))
        self.samples += 1

    def add_all(self, samples: Iterable[tuple[str, Mapping[str, str], float]], ts: float) -> None:
        for name, labels, value in samples:
            self.add(name, labels, ts, value)

    def text(self) -> str:
        lines = []
        for family, series in self._series.items():
            kind = next(
                (k for n, (f, k) in self.FAMILIES.items() if f == family),
                "gauge",
            )
            lines.append(f"# TYPE {family} {kind}")
            for (name, labels), points in series.items():
                for ts, value in points:
                    number = (
                        repr(float(value)) if not float(value).is_integer() else str(int(value))
                    )
                    lines.append(f"{name}{{{labels}}} {number} {ts:.3f}")
        lines.append("# EOF")
        return "\n".join(lines) + "\n"


_SAMPLES_COLUMN = re.compile(r"^\w{26}\s+\d+\s+\d+\s+\S+\s+(\d+)\s", re.MULTILINE)


def backfill(text: str, data_dir: Path | str, *, expected_samples: int | None = None) -> int:
    """Load OpenMetrics `text` into `data_dir` with promtool; returns the sample count.

    Raises when promtool fails or (with `expected_samples`) loaded a different number
    of samples than written — promtool drops out-of-order and duplicate samples.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".om", delete=False) as handle:
        handle.write(text)
        path = handle.name
    try:
        proc = subprocess.run(
            [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", path, str(data_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        raise RuntimeError(f"promtool failed ({proc.returncode}): {proc.stderr or proc.stdout}")
    loaded = sum(int(n) for n in _SAMPLES_COLUMN.findall(proc.stdout))
    if expected_samples is not None and loaded != expected_samples:
        raise RuntimeError(
            f"promtool loaded {loaded} samples, {expected_samples} were written:\n{proc.stdout}"
        )
    return loaded


# --------------------------------------------------------------------------- Prometheus


class PrometheusServer:
    """One Prometheus process on 127.0.0.1 with its own data directory."""

    def __init__(
        self,
        data_dir: Path | str,
        *,
        scrape_targets: Sequence[str] = (),
        scrape_interval: str = "1s",
        port: int | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.scrape_targets = list(scrape_targets)
        self.scrape_interval = scrape_interval
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir.parent / f"prometheus-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _config(self) -> Path:
        path = self.data_dir.parent / f"prometheus-{self.port}.yml"
        lines = ["global:", f"  scrape_interval: {self.scrape_interval}", "scrape_configs:"]
        if self.scrape_targets:
            targets = ", ".join(f'"{t}"' for t in self.scrape_targets)
            lines += [
                "  - job_name: istio-sidecars",
                f"    scrape_interval: {self.scrape_interval}",
                f"    scrape_timeout: {self.scrape_interval}",
                "    honor_labels: true",
                f"    static_configs: [{{targets: [{targets}]}}]",
            ]
        else:
            lines[-1] = "scrape_configs: []"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, timeout: float = 30.0) -> PrometheusServer:
        if not Path(PROMETHEUS).exists():
            raise RuntimeError(f"{PROMETHEUS} is missing: apt-get install prometheus")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={self._config()}",
                f"--storage.tsdb.path={self.data_dir}",
                "--storage.tsdb.retention.time=100y",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"prometheus not ready after {timeout}s: {self.log_path}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def add_blocks(self, text: str, *, expected_samples: int | None = None) -> int:
        """Backfill more data: stop, run promtool into the data dir, start again."""
        self.stop()
        loaded = backfill(text, self.data_dir, expected_samples=expected_samples)
        self.start()
        return loaded

    def query(self, promql: str, at: float) -> list[dict]:
        """A synchronous instant query (tests): the raw `data.result` list."""
        response = httpx.post(
            f"{self.url}/api/v1/query", data={"query": promql, "time": f"{at:.3f}"}, timeout=30
        )
        response.raise_for_status()
        return response.json()["data"]["result"]

    def __enter__(self) -> PrometheusServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_backfilled(text: str, data_dir: Path | str, *, expected_samples: int | None = None):
    """A Prometheus over the OpenMetrics `text` (backfilled first, then started)."""
    backfill(text, Path(data_dir) / "data", expected_samples=expected_samples)
    return PrometheusServer(Path(data_dir) / "data").start()


# --------------------------------------------------------------------------- live exporter


class IstioExporter:
    """A threaded HTTP server exposing Istio sidecar metrics of several arms.

    ``exporter.arms["canary"].error_ratio = 0.2`` (or `configure`) changes traffic
    while it runs; a background thread serves requests every `tick` seconds.
    `pause()` stops traffic; `totals()` gives the counts served so far per arm;
    `LiveStack.wait_scraped()` waits until Prometheus holds its counters as they are.
    """

    def __init__(self, arms: Mapping[str, ArmTraffic], *, tick: float = 0.05) -> None:
        self.arms = dict(arms)
        self.tick = tick
        self.lock = threading.Lock()
        self.scrapes = 0
        self._stop = threading.Event()
        exporter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._threads = [
            threading.Thread(target=self.server.serve_forever, daemon=True),
            threading.Thread(target=self._traffic, daemon=True),
        ]

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> IstioExporter:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()

    def _traffic(self) -> None:
        last = time.monotonic()
        while not self._stop.wait(self.tick):
            now = time.monotonic()
            with self.lock:
                for arm in self.arms.values():
                    arm.advance(now - last)
            last = now

    def configure(self, arm: str, **settings: float | str) -> None:
        """Change `rate`, `error_ratio`, `error_code` or `latency_ms` of an arm now."""
        with self.lock:
            for key, value in settings.items():
                if key not in ("rate", "error_ratio", "error_code", "latency_ms"):
                    raise ValueError(f"unknown traffic setting {key!r}")
                setattr(self.arms[arm], key, value)

    def pause(self) -> None:
        with self.lock:
            for arm in self.arms.values():
                arm.rate = 0.0
                arm._carry = 0.0

    def restart_pod(self, arm: str, pod: str) -> None:
        with self.lock:
            self.arms[arm].counters[pod].reset()

    def restart_waypoint(self, pod: str) -> None:
        """A waypoint pod restarts: its counters for every destination start over."""
        with self.lock:
            for arm in self.arms.values():
                arm.counters[pod].reset()

    def add_waypoint(self, pod: str) -> None:
        """The waypoint scales out: the new pod takes its share of every arm's traffic."""
        with self.lock:
            for arm in self.arms.values():
                arm.add_pod(pod)

    def counter_sums(self) -> dict[str, int]:
        """The requests counted per destination workload in what a scrape shows now."""
        with self.lock:
            return {
                arm.workload: sum(arm.counters[pod].total for pod in arm.pods)
                for arm in self.arms.values()
            }

    def totals(self) -> dict[str, tuple[int, int]]:
        """(served, failed) per arm since the start."""
        with self.lock:
            return {name: (arm.served, arm.failed) for name, arm in self.arms.items()}

    def render(self) -> str:
        with self.lock:
            self.scrapes += 1
            samples = [s for arm in self.arms.values() for s in arm.samples()]
        families = {
            "istio_requests_total": "# TYPE istio_requests_total counter",
            "istio_request_duration_milliseconds": (
                "# TYPE istio_request_duration_milliseconds histogram"
            ),
        }
        by_family: dict[str, list[str]] = {name: [] for name in families}
        for name, labels, value in samples:
            family = (
                "istio_requests_total"
                if name == "istio_requests_total"
                else ("istio_request_duration_milliseconds")
            )
            by_family[family].append(f"{name}{{{render_labels(labels)}}} {value}")
        out = []
        for family, header in families.items():
            out.append(header)
            out.extend(by_family[family])
        return "\n".join(out) + "\n"


def live_prometheus(exporters: Sequence[IstioExporter], data_dir: Path | str) -> PrometheusServer:
    """A Prometheus scraping `exporters` every second (data after about 7 s)."""
    return PrometheusServer(
        Path(data_dir) / "data", scrape_targets=[e.target for e in exporters]
    ).start()


def wait_for_series(server: PrometheusServer, promql: str, timeout: float = 30.0) -> None:
    """Block until `promql` returns something at the current time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.query(promql, time.time()):
            return
        time.sleep(0.25)
    raise TimeoutError(f"no data for {promql} after {timeout}s")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    """The Prometheus binary; the suite fails (not skips) without it."""
    for binary in (PROMETHEUS, PROMTOOL):
        if not shutil.which(binary):
            raise RuntimeError(
                f"{binary} not found: apt-get install --no-install-recommends prometheus"
            )
    return PROMETHEUS


@dataclass
class LiveStack:
    exporter: IstioExporter
    prometheus: PrometheusServer
    namespace: str = "live"

    def wait_scraped(self, timeout: float = 30.0) -> None:
        """Block until Prometheus holds the exporter's counters as they are now.

        Call it with the traffic paused (or between changes of the counters): the
        per-workload sums Prometheus returns for the current time equal the exporter's
        only once it has scraped after the last change, however late a loaded machine
        lets that scrape happen. Raises `TimeoutError` naming both sums otherwise.
        """
        want = self.exporter.counter_sums()
        deadline = time.monotonic() + timeout
        while True:
            found = self.prometheus.query(
                "sum by (destination_workload) (istio_requests_total)", time.time()
            )
            seen = {r["metric"].get("destination_workload", ""): r["value"][1] for r in found}
            held = {workload: int(float(seen.get(workload, 0))) for workload in want}
            if held == want:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Prometheus {self.prometheus.url} holds {held} requests per workload"
                    f" after {timeout}s; the exporter shows {want} (scraped"
                    f" {self.exporter.scrapes} times)"
                )
            time.sleep(0.1)

    def reset_traffic(self) -> None:
        """Back to the defaults: 20 req/s per arm, no errors, 20 ms."""
        for name in self.exporter.arms:
            self.exporter.configure(name, rate=20.0, error_ratio=0.0, latency_ms=20.0)


@pytest.fixture(scope="session")
def live_stack(
    prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveStack]:
    """An Istio-like exporter (arms `canary`: app-canary, `baseline`: app-primary, two
    pods each, namespace `live`) scraped every second by a real Prometheus."""
    arms = {
        "canary": ArmTraffic("live", "app-canary", ["app-canary-0", "app-canary-1"], "v2", 20.0),
        "baseline": ArmTraffic(
            "live", "app-primary", ["app-primary-0", "app-primary-1"], "v1", 20.0
        ),
    }
    exporter = IstioExporter(arms).start()
    server = live_prometheus([exporter], tmp_path_factory.mktemp("live-prometheus"))
    try:
        wait_for_series(server, "istio_requests_total")
        yield LiveStack(exporter, server)
    finally:
        server.stop()
        exporter.stop()


#: The waypoint pods of `ambient_stack` (one waypoint Deployment, two replicas).
WAYPOINTS = ("waypoint-7d9f-0", "waypoint-7d9f-1")


@pytest.fixture(scope="session")
def ambient_stack(
    prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveStack]:
    """Ambient mode: a waypoint-shaped exporter (namespace `ambient`; both arms, canary
    app-canary v2 and baseline app-primary v1, served through the waypoint pods
    `WAYPOINTS`, ``reporter="waypoint"``) scraped every second by a real Prometheus."""
    arms = {
        "canary": ArmTraffic(
            "ambient", "app-canary", list(WAYPOINTS), "v2", 20.0, reporter="waypoint"
        ),
        "baseline": ArmTraffic(
            "ambient", "app-primary", list(WAYPOINTS), "v1", 20.0, reporter="waypoint"
        ),
    }
    exporter = IstioExporter(arms).start()
    server = live_prometheus([exporter], tmp_path_factory.mktemp("ambient-prometheus"))
    try:
        wait_for_series(server, 'istio_requests_total{reporter="waypoint"}')
        yield LiveStack(exporter, server, namespace="ambient")
    finally:
        server.stop()
        exporter.stop()
