"""Playing Argo Rollouts' part against the canary API, plus servers the API tests need.

- `jsonpath(data, expr)`: the subset of kubectl's JSONPath that web metrics use
  (``{$.verdict}``, ``{$.result.verdict}``, ``{.a.b}``, ``{$}``), returning the value
  itself as Argo's current web provider does (it passes the first JSONPath result
  to the condition, not its text).
- `evaluate_condition(expr, result)`: a small evaluator for the condition language
  of the shipped templates (expr-lang syntax: ``result.verdict == "fail"``, ``!=``,
  ``&&``, ``||``, ``!``, parentheses, string/number/bool literals).
- `argo_phase(value, metric)`: Argo's measurement phase from both conditions — the
  rules of argo-rollouts `utils/evaluate` (EvaluateResult), restated: failure wins;
  without a failureCondition a false success is a failure; without a
  successCondition a false failure is a success; neither true is Inconclusive.
- `ArgoWebMetric`: one metric of deploy/argo/analysis-template.yaml executed like the
  web provider does: render `{{args.*}}`, send the request, non-2xx or a timeout is
  an Error, a non-JSON 2xx body is Successful (released versions), else JSONPath +
  conditions.
- `ApiServer`: the real app on uvicorn on 127.0.0.1 in a thread (stop/start = a
  process restart as far as the API is concerned).
- `SlowProxy`: an HTTP server in front of a Prometheus that delays every query, or
  drops every connection while `down`.
"""

from __future__ import annotations

import http.server
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
import yaml

from canary.api.server import server_config

TEMPLATE_FILE = (
    Path(__file__).resolve().parent.parent / "deploy" / "argo" / "analysis-template.yaml"
)

# --------------------------------------------------------------------------- JSONPath


def jsonpath(data: Any, expr: str) -> Any:
    """Evaluate ``{$.a.b}`` / ``{.a.b}`` / ``{$}``; KeyError when the path is absent."""
    match = re.fullmatch(r"\{\s*(\$?)((?:\.[A-Za-z_][A-Za-z0-9_-]*)*)\s*\}", expr.strip())
    if not match:
        raise ValueError(f"unsupported JSONPath {expr!r}")
    value = data
    for part in [p for p in match.group(2).split(".") if p]:
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"{expr}: no field {part!r}")
        value = value[part]
    return value


# --------------------------------------------------------------------------- conditions

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
      | (?P<number>\d+(?:\.\d+)?)
      | (?P<op>==|!=|>=|<=|&&|\|\||[()!<>])
      | (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
    )""",
    re.VERBOSE,
)


def _tokens(expr: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    expr = expr.strip()
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if not match or match.end() == pos:
            raise ValueError(f"cannot parse condition at {expr[pos:]!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind)))
        pos = match.end()
        while pos < len(expr) and expr[pos].isspace():
            pos += 1
    return tokens


class _Parser:
    def __init__(self, expr: str, result: Any) -> None:
        self.tokens = _tokens(expr)
        self.i = 0
        self.result = result

    def peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def parse(self) -> Any:
        value = self.or_()
        if self.i != len(self.tokens):
            raise ValueError(f"unexpected {self.peek()!r}")
        return value

    def or_(self) -> Any:
        value = self.and_()
        while self.peek() == "||":
            self.take()
            right = self.and_()
            value = bool(value) or bool(right)
        return value

    def and_(self) -> Any:
        value = self.not_()
        while self.peek() == "&&":
            self.take()
            right = self.not_()
            value = bool(value) and bool(right)
        return value

    def not_(self) -> Any:
        if self.peek() == "!":
            self.take()
            return not self.not_()
        return self.compare()

    def compare(self) -> Any:
        left = self.primary()
        op = self.peek()
        if op in ("==", "!=", ">=", "<=", ">", "<"):
            self.take()
            right = self.primary()
            if op == "==":
                return left == right
            if op == "!=":
                return left != right
            return {">=": left >= right, "<=": left <= right, ">": left > right, "<": left < right}[
                op
            ]
        return left

    def primary(self) -> Any:
        kind, text = self.take()
        if text == "(":
            value = self.or_()
            if self.take()[1] != ")":
                raise ValueError("missing )")
            return value
        if kind == "string":
            return bytes(text[1:-1], "utf-8").decode("unicode_escape")
        if kind == "number":
            return float(text)
        if kind == "name":
            if text in ("true", "false"):
                return text == "true"
            if text == "nil":
                return None
            parts = text.split(".")
            if parts[0] != "result":
                raise ValueError(f"unknown name {parts[0]!r}")
            value = self.result
            for part in parts[1:]:
                if not isinstance(value, dict) or part not in value:
                    raise KeyError(f"result has no field {part!r}")
                value = value[part]
            return value
        raise ValueError(f"unexpected {text!r}")


def evaluate_condition(expr: str, result: Any) -> bool:
    return bool(_Parser(expr, result).parse())


def argo_phase(value: Any, metric: dict[str, Any]) -> str:
    """Successful | Failed | Inconclusive, as Argo derives it from the conditions."""
    success_expr = metric.get("successCondition") or ""
    failure_expr = metric.get("failureCondition") or ""
    success = evaluate_condition(success_expr, value) if success_expr else False
    failure = evaluate_condition(failure_expr, value) if failure_expr else False
    if not success_expr and not failure_expr:
        return "Successful"
    if success_expr and not failure_expr:
        failure = not success
    elif failure_expr and not success_expr:
        success = not failure
    if failure:
        return "Failed"
    if not success:
        return "Inconclusive"
    return "Successful"


# --------------------------------------------------------------------------- templates


def shipped_templates() -> dict[str, dict[str, Any]]:
    """The AnalysisTemplates of deploy/argo/analysis-template.yaml by name."""
    docs = list(yaml.safe_load_all(TEMPLATE_FILE.read_text()))
    return {d["metadata"]["name"]: d for d in docs if d and d["kind"] == "AnalysisTemplate"}


@dataclass
class Measurement:
    phase: str  # Successful | Failed | Inconclusive | Error
    status_code: int | None
    value: Any
    body: Any
    seconds: float


class ArgoWebMetric:
    """One web metric of a shipped AnalysisTemplate, executed as Argo's provider does."""

    def __init__(self, template: str, args: dict[str, str]) -> None:
        spec = shipped_templates()[template]["spec"]
        self.metric = spec["metrics"][0]
        defaults = {a["name"]: a.get("value") for a in spec["args"]}
        self.args = {**{k: v for k, v in defaults.items() if v is not None}, **args}
        missing = [a["name"] for a in spec["args"] if a["name"] not in self.args]
        if missing:
            raise ValueError(f"template {template}: missing args {missing}")

    def _render(self, text: str) -> str:
        return re.sub(r"\{\{\s*args\.([A-Za-z0-9_-]+)\s*\}\}", lambda m: self.args[m[1]], text)

    def measure(self) -> Measurement:
        web = self.metric["provider"]["web"]
        method = web.get("method", "GET")
        headers = {h["key"]: self._render(h["value"]) for h in web.get("headers", [])}
        kwargs: dict[str, Any] = {}
        if "jsonBody" in web:
            body = yaml.safe_dump(web["jsonBody"])
            kwargs["json"] = yaml.safe_load(self._render(body))
        started = time.perf_counter()
        try:
            response = httpx.request(
                method,
                self._render(web["url"]),
                headers=headers,
                timeout=float(web.get("timeoutSeconds", 10)),
                **kwargs,
            )
        except httpx.HTTPError as exc:
            return Measurement("Error", None, None, str(exc), time.perf_counter() - started)
        seconds = time.perf_counter() - started
        if not 200 <= response.status_code < 300:
            return Measurement("Error", response.status_code, None, _json(response), seconds)
        body = _json(response)
        if body is None:  # released Argo versions: a non-JSON body counts as success
            return Measurement("Successful", response.status_code, response.text, None, seconds)
        value = jsonpath(body, web.get("jsonPath", "{$}"))
        return Measurement(
            argo_phase(value, self.metric), response.status_code, value, body, seconds
        )


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


# --------------------------------------------------------------------------- servers


class ApiServer:
    """The ASGI app on a real uvicorn server on 127.0.0.1, in a thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        from prometheus_harness import free_port

        self.port = port or free_port()
        # The configuration `canary serve` uses (read timeout, connection cap, no
        # trusted forwarded headers), on 127.0.0.1.
        config = app.state.context.config.server
        self.server = uvicorn.Server(server_config(app, config, host="127.0.0.1", port=self.port))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ApiServer:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SlowProxy:
    """Forwards to `upstream` after sleeping `delay` seconds on every query; while
    `down` is set it drops every connection unanswered (Prometheus unreachable)."""

    def __init__(self, upstream: str, delay: float = 0.0) -> None:
        self.upstream = upstream
        self.delay = delay
        self.down = False
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy.down:
                    self.close_connection = True
                    return
                if self.path.startswith("/api/"):
                    time.sleep(proxy.delay)
                try:
                    response = httpx.request(
                        self.command,
                        proxy.upstream + self.path,
                        content=body,
                        headers={"Content-Type": self.headers.get("Content-Type", "")},
                        timeout=30,
                    )
                except httpx.HTTPError:
                    return
                data = response.content
                try:
                    self.send_response(response.status_code)
                    self.send_header("Content-Type", response.headers.get("content-type", ""))
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client gave up waiting

            do_GET = _forward
            do_POST = _forward

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> SlowProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
