"""The Prometheus client against faults (a local HTTP server) and a real Prometheus."""

from __future__ import annotations

import asyncio
import base64
import http.server
import json
import math
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_harness import (
    PrometheusServer,
)

from canary.config import PrometheusConfig
from canary.errors import (
    PrometheusBadResponse,
    PrometheusClientError,
    PrometheusServerError,
    PrometheusStatusError,
    PrometheusTimeout,
    PrometheusUnreachable,
)
from canary.metrics.prometheus import PrometheusClient

SUCCESS = {"status": "success", "data": {"resultType": "vector", "result": []}}


class FaultServer:
    """A local HTTP server answering /api/v1/* the way it is told to."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.mode = "ok"
        self.body: dict = SUCCESS
        self.delay = 0.0
        self.stall = 0.0
        self.requests: list[dict] = []
        self.gets: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        fault = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:  # the client gave up (timeout tests)
                    self.close_connection = True

            def do_GET(self) -> None:
                fault.gets.append(self.path)
                if fault.mode == "interim-drop":
                    self._interim_then_drop()
                    return
                if self.path.endswith("/-/ready"):
                    if fault.mode == "no-ready":
                        self._answer(404, b"404 page not found", "text/plain")
                    else:
                        self._answer(200, b"Prometheus Server is Ready.\n", "text/plain")
                    return
                self._answer(405, b"")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(length).decode())
                with fault.lock:
                    fault.requests.append(
                        {
                            "path": self.path,
                            "form": form,
                            "raw": self.headers.items(),
                            **self.headers,
                        }
                    )
                    fault.in_flight += 1
                    fault.max_in_flight = max(fault.max_in_flight, fault.in_flight)
                try:
                    self._fault()
                finally:
                    with fault.lock:
                        fault.in_flight -= 1

            def _fault(self) -> None:
                mode = fault.mode
                if fault.delay:
                    time.sleep(fault.delay)
                if mode == "close":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if mode == "500":
                    self._answer(500, b"internal error\n", "text/plain")
                elif mode == "503":
                    body = {"status": "error", "errorType": "unavailable", "error": "overloaded"}
                    self._answer(503, json.dumps(body).encode())
                elif mode == "garbage":
                    self._answer(200, b"<html><body>login</body></html>", "text/html")
                elif mode == "400":
                    body = {
                        "status": "error",
                        "errorType": "bad_data",
                        "error": 'invalid parameter "query": 1:9: parse error: unexpected "}"',
                    }
                    self._answer(400, json.dumps(body).encode())
                elif mode in ("trickle", "stall"):
                    self._slowly(mode, json.dumps(fault.body).encode())
                elif mode == "408-when-idle":
                    self._answer(200, json.dumps(fault.body).encode())
                    time.sleep(0.1)  # then, idle, a proxy gives up on the connection
                    self.wfile.write(
                        b"HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\n"
                        b"Connection: close\r\n\r\n"
                    )
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                elif mode == "interim-drop":
                    self._interim_then_drop()
                elif mode in ("chunked", "Chunked", "until-close", "drop-after"):
                    self._framed(mode, json.dumps(fault.body).encode())
                elif mode == "status-error":
                    body = {
                        "status": "error",
                        "errorType": "execution",
                        "error": "too many samples",
                    }
                    self._answer(200, json.dumps(body).encode())
                else:
                    self._answer(200, json.dumps(fault.body).encode())

            def _framed(self, mode: str, body: bytes) -> None:
                """A 200 framed by chunks, by closing the connection, or with a length
                and then closing the kept-alive connection without saying so."""
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if mode in ("chunked", "Chunked"):
                    self.send_header("Transfer-Encoding", mode)  # names are case-insensitive
                    self.end_headers()
                    for start in range(0, len(body), 7):
                        part = body[start : start + 7]
                        self.wfile.write(b"%x;ext=1\r\n%s\r\n" % (len(part), part))
                    self.wfile.write(b"0\r\nX-Trailer: 1\r\n\r\n")
                    return
                if mode == "drop-after":
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)

            def _slowly(self, mode: str, body: bytes) -> None:
                """The head at once, then the body in five parts 0.15 s apart (trickle)
                or half of it, then nothing for `fault.delay` before the rest (stall)."""
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.flush()
                if mode == "trickle":
                    size = -(-len(body) // 5)
                    parts = [body[i : i + size] for i in range(0, len(body), size)]
                    pauses = [0.15] * len(parts)
                else:
                    parts = [body[: len(body) // 2], body[len(body) // 2 :]]
                    pauses = [0.0, fault.stall]
                try:
                    for part, pause in zip(parts, pauses, strict=True):
                        time.sleep(pause)
                        self.wfile.write(part)
                        self.wfile.flush()
                except OSError:  # the client gave up
                    self.close_connection = True

            def _interim_then_drop(self) -> None:
                """A 100 Continue, then the connection ends without the final answer."""
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if ssl_context is not None:
            self.server.socket = ssl_context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def fault_server() -> Iterator[FaultServer]:
    server = FaultServer()
    yield server
    server.stop()


@pytest.fixture
def fault(fault_server: FaultServer) -> FaultServer:
    deadline = time.monotonic() + 5
    while fault_server.in_flight and time.monotonic() < deadline:  # a previous test's sleepers
        time.sleep(0.05)
    fault_server.mode = "ok"
    fault_server.body = SUCCESS
    fault_server.delay = 0.0
    fault_server.stall = 0.0
    fault_server.requests.clear()
    fault_server.gets.clear()
    fault_server.max_in_flight = 0
    return fault_server


def config(url: str, **settings) -> PrometheusConfig:  # type: ignore[no-untyped-def]
    return PrometheusConfig(url=url, **{"retry_backoff": 0.01, "timeout": 2.0, **settings})


def run_query(cfg: PrometheusConfig, query: str = "up", at: float = 1767225600.0):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        async with PrometheusClient(cfg) as client:
            return await client.query(query, at)

    return asyncio.run(go())


# --------------------------------------------------------------------------- faults


def test_5xx_is_retried_then_reported_with_the_server_message(fault: FaultServer) -> None:
    fault.mode = "503"
    with pytest.raises(PrometheusServerError) as info:
        run_query(config(fault.url, retries=2), 'rate(x{a="b"}[1m])')
    assert len(fault.requests) == 3
    error = info.value
    assert error.status_code == 503 and "overloaded" in error.server_message
    assert error.query == 'rate(x{a="b"}[1m])' and 'rate(x{a="b"}[1m])' in str(error)

    fault.requests.clear()
    fault.mode = "500"
    with pytest.raises(PrometheusServerError, match="HTTP 500: internal error"):
        run_query(config(fault.url, retries=1))
    assert len(fault.requests) == 2


def test_4xx_is_never_retried_and_carries_the_promql_error(fault: FaultServer) -> None:
    fault.mode = "400"
    with pytest.raises(PrometheusClientError) as info:
        run_query(config(fault.url, retries=5), "sum(x})")
    assert len(fault.requests) == 1
    assert info.value.error_type == "bad_data"
    assert "parse error" in info.value.server_message
    assert info.value.exit_code == 3


def test_garbage_body_is_a_bad_response(fault: FaultServer) -> None:
    fault.mode = "garbage"
    with pytest.raises(PrometheusBadResponse, match=r"not JSON.*login"):
        run_query(config(fault.url))
    assert len(fault.requests) == 1


def test_status_error_in_a_200(fault: FaultServer) -> None:
    fault.mode = "status-error"
    with pytest.raises(PrometheusStatusError, match="too many samples") as info:
        run_query(config(fault.url))
    assert info.value.error_type == "execution"


def test_closed_connection_is_retried_then_unreachable(fault: FaultServer) -> None:
    fault.mode = "close"
    with pytest.raises(PrometheusUnreachable, match="unreachable"):
        run_query(config(fault.url, retries=2))
    assert len(fault.requests) == 3


@pytest.mark.parametrize("mode", ["chunked", "Chunked", "until-close", "drop-after"])
def test_answers_framed_by_chunks_or_by_the_connection_end_are_read_whole(
    fault: FaultServer, mode: str
) -> None:
    """Prometheus chunks large answers; a proxy may end them by closing, or close a
    kept-alive connection between two queries (the next one opens another, not a
    retry: retries = 0 here)."""
    fault.mode = mode
    fault.body = {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {"pod": "a"}, "value": [1, "42"]}]},
    }

    async def go():  # type: ignore[no-untyped-def]
        async with PrometheusClient(config(fault.url, retries=0)) as client:
            return [await client.query("up", 1767225600.0) for _ in range(3)], client.stats

    results, stats = asyncio.run(go())
    assert [r.samples[0].value for r in results] == [42.0, 42.0, 42.0]
    assert len(fault.requests) == 3 and stats.retries == 0


def test_an_idle_connection_with_unsolicited_bytes_is_not_reused(fault: FaultServer) -> None:
    """A proxy's 408 sent on an idle keep-alive connection is not the next answer."""
    fault.mode = "408-when-idle"

    async def go():  # type: ignore[no-untyped-def]
        async with PrometheusClient(config(fault.url, retries=0)) as client:
            results = []
            for _ in range(3):
                results.append(await client.query("up", 1767225600.0))
                await asyncio.sleep(0.3)
            return results

    assert all(result.empty for result in asyncio.run(go()))
    assert len(fault.requests) == 3


def test_an_interim_answer_then_a_dropped_connection_is_unreachable(fault: FaultServer) -> None:
    """A 1xx answer followed by the connection's end: retried, then reported as a
    PrometheusError; readiness reads False (it never raises)."""
    fault.mode = "interim-drop"
    with pytest.raises(PrometheusUnreachable, match="ends inside"):
        run_query(config(fault.url, retries=1))
    assert len(fault.requests) == 2

    async def ready() -> bool:
        async with PrometheusClient(config(fault.url, retries=0)) as client:
            return await client.ready()

    assert asyncio.run(ready()) is False


def test_slow_server_times_out_after_the_configured_timeout(fault: FaultServer) -> None:
    """Each attempt gives up at the configured timeout (the error names it and the phase),
    not when the server finally answers; the retry is a second request."""
    fault.delay = 1.5
    with pytest.raises(PrometheusTimeout, match=r"within 0\.3s \(waiting for the answer\)"):
        run_query(config(fault.url, timeout=0.3, retries=1))
    assert len(fault.requests) == 2


BIG = {
    "status": "success",
    "data": {
        "resultType": "vector",
        "result": [{"metric": {"pod": f"p{i}"}, "value": [1, "1"]} for i in range(50)],
    },
}


def test_an_answer_that_keeps_arriving_is_read_past_the_timeout(fault: FaultServer) -> None:
    """The timeout bounds each wait for bytes, not the whole body: five parts 0.15 s
    apart (0.6 s in all) arrive within a 0.4 s timeout."""
    fault.mode, fault.body = "trickle", BIG
    result = run_query(config(fault.url, timeout=0.4, retries=0))
    assert len(result.samples) == 50 and len(fault.requests) == 1


def test_an_answer_that_stops_arriving_times_out(fault: FaultServer) -> None:
    fault.mode, fault.body, fault.stall = "stall", BIG, 1.5
    with pytest.raises(PrometheusTimeout, match=r"within 0\.3s \(reading the answer\)"):
        run_query(config(fault.url, timeout=0.3, retries=0))


def test_the_wait_for_a_free_connection_is_bounded_by_the_timeout(fault: FaultServer) -> None:
    """One connection, held 0.6 s by a trickling answer: a second query waits for
    it at most the 0.4 s timeout."""
    fault.mode, fault.body = "trickle", BIG

    async def go():  # type: ignore[no-untyped-def]
        cfg = config(fault.url, timeout=0.4, retries=0, max_concurrency=1)
        async with PrometheusClient(cfg) as client:
            return await asyncio.gather(
                client.query("first", 0), client.query("second", 0), return_exceptions=True
            )

    first, second = asyncio.run(go())
    assert len(first.samples) == 50
    assert isinstance(second, PrometheusTimeout)
    assert "waiting for a free connection" in str(second) and second.query == "second"
    assert [r["form"]["query"] for r in fault.requests] == [["first"]]


def test_unreachable_port(tmp_path: Path) -> None:
    with pytest.raises(PrometheusUnreachable):
        run_query(config("http://127.0.0.1:9", retries=1))


# --------------------------------------------------------------------------- parsing


def test_vector_with_nan_and_infinities_is_kept_and_flagged(fault: FaultServer) -> None:
    fault.body = {
        "status": "success",
        "warnings": ["results truncated due to limit"],
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"pod": "a"}, "value": [1767225600, "NaN"]},
                {"metric": {"pod": "b"}, "value": [1767225600, "+Inf"]},
                {"metric": {"pod": "c"}, "value": [1767225600, "-Inf"]},
                {"metric": {"pod": "d"}, "value": [1767225600, "12.5"]},
            ],
        },
    }
    result = run_query(config(fault.url))
    values = [s.value for s in result.samples]
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == -math.inf
    assert values[3] == 12.5 and result.samples[3].labels == {"pod": "d"}
    assert result.nonfinite == 3
    assert result.warnings == ["results truncated due to limit"]
    assert not result.empty


def test_empty_result_is_no_data_not_an_error(fault: FaultServer) -> None:
    result = run_query(config(fault.url))
    assert result.empty and result.scalar is None


def test_scalar_and_matrix(fault: FaultServer) -> None:
    fault.body = {"status": "success", "data": {"resultType": "scalar", "result": [1.5, "3"]}}
    assert run_query(config(fault.url)).scalar == 3.0
    fault.body = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {"a": "1"}, "values": [[10, "1"], [20, "NaN"]]}],
        },
    }
    result = run_query(config(fault.url))
    assert result.series[0].points[0] == (10.0, 1.0)
    assert math.isnan(result.series[0].points[1][1]) and result.nonfinite == 1


def test_wrong_shape_is_a_bad_response(fault: FaultServer) -> None:
    fault.body = {"status": "success", "data": {"resultType": "vector", "result": [{"x": 1}]}}
    with pytest.raises(PrometheusBadResponse, match="does not parse"):
        run_query(config(fault.url))


# --------------------------------------------------------------------------- request details


def test_explicit_time_auth_and_headers_are_sent(fault: FaultServer, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    run_query(
        config(fault.url, bearer_token_file=str(token), headers={"X-Scope-OrgID": "team-a"}),
        "up",
        1767225600.25,
    )
    request = fault.requests[0]
    assert request["path"] == "/api/v1/query"
    assert request["form"] == {"query": ["up"], "time": ["1767225600.250"]}
    assert request["Authorization"] == "Bearer s3cret"
    assert request["X-Scope-OrgID"] == "team-a"


def test_header_names_are_merged_case_insensitively(fault: FaultServer, tmp_path: Path) -> None:
    """A configured header replaces the client's own of the same name in any case;
    the token set by bearer_token_file replaces a configured Authorization."""
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    headers = {"host": "prom.example", "user-agent": "ops", "authorization": "Bearer old"}
    run_query(config(fault.url, bearer_token_file=str(token), headers=headers))
    sent: dict[str, list[str]] = {}
    for name, value in fault.requests[0]["raw"]:
        sent.setdefault(name.lower(), []).append(value)
    assert sent["host"] == ["prom.example"]
    assert sent["user-agent"] == ["ops"]
    assert sent["authorization"] == ["Bearer s3cret"]
    assert sent["content-length"] == [str(len("query=up&time=1767225600.000"))]


@pytest.mark.parametrize("name", ["Content-Length", "transfer-encoding", "CONNECTION"])
def test_framing_headers_are_refused_in_the_config(name: str) -> None:
    with pytest.raises(ValueError, match=f"{name}.*set by canary"):
        config("http://127.0.0.1:9090", headers={name: "1"})


def test_basic_auth(fault: FaultServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROM_PASSWORD", "pw")
    cfg = config(fault.url, basic_auth={"username": "canary", "password_env": "PROM_PASSWORD"})
    run_query(cfg)
    expected = "Basic " + base64.b64encode(b"canary:pw").decode()
    assert fault.requests[0]["Authorization"] == expected


def test_credentials_in_the_url_are_sent_as_basic_and_never_shown(
    fault: FaultServer, tmp_path: Path
) -> None:
    with_userinfo = fault.url.replace("http://", "http://alice:s%40cret@")
    run_query(config(with_userinfo))
    assert (
        fault.requests[0]["Authorization"] == "Basic " + base64.b64encode(b"alice:s@cret").decode()
    )

    token = tmp_path / "token"
    token.write_text("t0ken\n")
    run_query(config(with_userinfo, bearer_token_file=str(token)))
    assert fault.requests[1]["Authorization"] == "Bearer t0ken"

    fault.mode = "500"
    with pytest.raises(PrometheusServerError) as info:
        run_query(config(with_userinfo, retries=0))
    assert "cret" not in str(info.value) and "cret" not in str(info.value.url)


def test_prometheus_behind_a_path_prefix(fault: FaultServer) -> None:
    async def go():  # type: ignore[no-untyped-def]
        async with PrometheusClient(config(fault.url + "/prometheus/")) as client:
            return await client.ready(), await client.query_range("up", 100.0, 200.0, 15)

    ready, _ = asyncio.run(go())
    assert ready and fault.gets == ["/prometheus/-/ready"]
    assert fault.requests[0]["path"] == "/prometheus/api/v1/query_range"


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def test_a_proxy_from_the_environment_carries_the_queries(
    fault: FaultServer, no_proxy_env: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY names the fault server: it receives the absolute URL, prefix
    included, with the configured headers once each; NO_PROXY exempts a host."""
    no_proxy_env.setenv("HTTP_PROXY", fault.url)
    cfg = config("http://prometheus.invalid:9090/prom", headers={"user-agent": "ops"})
    assert run_query(cfg).empty
    request = fault.requests[0]
    assert request["path"] == "http://prometheus.invalid:9090/prom/api/v1/query"
    assert request["form"] == {"query": ["up"], "time": ["1767225600.000"]}
    assert [v for k, v in request["raw"] if k.lower() == "user-agent"] == ["ops"]

    fault.requests.clear()
    no_proxy_env.setenv("NO_PROXY", "127.0.0.1")
    assert run_query(config(fault.url + "/prom")).empty
    assert fault.requests[0]["path"] == "/prom/api/v1/query"


def test_query_range_parameters(fault: FaultServer) -> None:
    fault.body = {"status": "success", "data": {"resultType": "matrix", "result": []}}

    async def go():  # type: ignore[no-untyped-def]
        async with PrometheusClient(config(fault.url)) as client:
            return await client.query_range("up", 100.0, 200.0, 15)

    assert asyncio.run(go()).empty
    assert fault.requests[0]["path"] == "/api/v1/query_range"
    assert fault.requests[0]["form"] == {
        "query": ["up"],
        "start": ["100.000"],
        "end": ["200.000"],
        "step": ["15.0"],
    }


def test_one_concurrency_limit_for_all_queries(fault: FaultServer) -> None:
    fault.delay = 0.15

    async def go() -> None:
        async with PrometheusClient(config(fault.url, max_concurrency=2)) as client:
            await asyncio.gather(*(client.query(f"q{i}", 0) for i in range(8)))

    asyncio.run(go())
    assert len(fault.requests) == 8
    assert fault.max_in_flight == 2


def test_readiness_falls_back_to_a_query_when_there_is_no_ready_endpoint(
    fault: FaultServer,
) -> None:
    async def ready(url: str) -> bool:
        async with PrometheusClient(config(url, retries=0)) as client:
            return await client.ready()

    assert asyncio.run(ready(fault.url))
    fault.mode = "no-ready"
    assert asyncio.run(ready(fault.url))
    assert fault.requests[-1]["form"]["query"] == ["1"]
    assert not asyncio.run(ready("http://127.0.0.1:9"))


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FaultServer, Path]]:
    """The fault server behind TLS with a self-signed certificate for 127.0.0.1."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = FaultServer(context)
    yield server, cert
    server.stop()


def test_tls_with_a_ca_file_insecure_skip_verify_and_an_unknown_ca(tls_server) -> None:
    server, cert = tls_server
    assert run_query(config(server.url, ca_file=str(cert))).empty
    assert run_query(config(server.url, insecure_skip_verify=True)).empty
    with pytest.raises(PrometheusUnreachable, match="CERTIFICATE_VERIFY_FAILED"):
        run_query(config(server.url, retries=0))


def test_tls_settings_are_for_https_only(fault: FaultServer, tmp_path: Path) -> None:
    """A config shared with an https setup (its CA file absent here) still reaches an
    http URL: no TLS context is built for it."""
    assert run_query(config(fault.url, ca_file=str(tmp_path / "absent.pem"))).empty


# --------------------------------------------------------------------------- a real Prometheus


@pytest.fixture(scope="module")
def own_prometheus(prometheus_bin: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    server = PrometheusServer(tmp_path_factory.mktemp("own-prometheus") / "data").start()
    yield server
    server.stop()


def test_real_prometheus_with_a_configured_host_header(own_prometheus: PrometheusServer) -> None:
    """Two Host headers make Prometheus answer 400; a configured one replaces the URL's."""
    cfg = config(own_prometheus.url, retries=0, headers={"host": "prometheus.example"})
    assert run_query(cfg, "vector(3)").samples[0].value == 3.0


def test_real_prometheus_bad_promql_and_a_stopped_server(own_prometheus: PrometheusServer) -> None:
    cfg = config(own_prometheus.url, retries=1)
    assert run_query(cfg, "vector(2)").samples[0].value == 2.0
    with pytest.raises(PrometheusClientError) as info:
        run_query(cfg, 'sum(x{a="b"}')
    assert info.value.status_code == 400 and "parse error" in info.value.server_message

    async def ready() -> bool:
        async with PrometheusClient(cfg) as client:
            return await client.ready()

    assert asyncio.run(ready())
    own_prometheus.stop()
    with pytest.raises(PrometheusUnreachable, match=own_prometheus.url):
        run_query(cfg, "vector(1)")
    assert not asyncio.run(ready())
