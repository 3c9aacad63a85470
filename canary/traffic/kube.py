"""A thin async Kubernetes API client on httpx: just what canary needs.

Why not lightkube (<1.0)? We touch a handful of endpoints — one routing custom
resource (an Istio VirtualService or a Gateway API HTTPRoute) in whichever version
the cluster serves, and core Events — and need exact control over what lightkube would hide: the
JSON patch body with its resourceVersion precondition (logged verbatim in dry-run),
the mapping of every status to a typed error naming the resource and the verb,
bounded retries on 5xx, and the service-account token re-read when the kubelet
rotates it. With lightkube we would declare generic resources per Istio version and
still translate its errors; the client below is ~350 lines, has no dependency
beyond httpx (already used for Prometheus) and PyYAML (kubeconfig), and is tested
against the API semantics in tests/kubeapi.py.

Credentials:
- in-cluster: ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``, the CA
  and token files of the mounted service account; the token file is re-read whenever
  it changes (kubelet rotates projected tokens) and once more after a 401;
- kubeconfig (``$KUBECONFIG``, colon-separated files merged, or ``~/.kube/config``)
  with the current or a named context: bearer token or token file, client
  certificate and key (files or ``-data``), CA file or data,
  ``insecure-skip-tls-verify``, and ``exec`` credential plugins (token output).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import socket
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from canary.config import KubernetesConfig
from canary.errors import (
    Conflict,
    Forbidden,
    KubeApiError,
    KubeconfigError,
    ResourceNotFound,
    Unauthorized,
)
from canary.retry import RetryPolicy, retrying

__all__ = [
    "SERVICEACCOUNT_DIR",
    "KubeClient",
    "TokenSource",
]

log = logging.getLogger(__name__)

SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"

_RETRYABLE = {429, 500, 502, 503, 504}


def _retryable(error: Exception) -> bool:
    """Retried: no answer, 429 and 5xx (not 4xx: those are answers)."""
    return isinstance(error, KubeApiError) and (error.status is None or error.status in _RETRYABLE)


def _answer(response: httpx.Response, verb: str, resource: str, attempt: int) -> dict[str, Any]:
    """The decoded JSON of a 2xx answer, else the typed error for its status."""
    status = response.status_code
    if status < 300:
        return response.json() if response.content else {}
    detail = _detail(response)
    if status == 401:
        raise Unauthorized(resource, verb, detail)
    if status == 403:
        raise Forbidden(resource, verb, detail)
    if status == 404:
        raise ResourceNotFound(resource, verb, detail)
    if status == 409:
        raise Conflict(resource, verb, attempt, detail)
    raise KubeApiError(resource, verb, status, detail, attempts=attempt)


# --------------------------------------------------------------------------- tokens


class TokenSource:
    """A bearer token: fixed, read from a file (re-read when it changes), or exec'd."""

    def __init__(
        self,
        *,
        token: str | None = None,
        token_file: str | None = None,
        exec_config: dict[str, Any] | None = None,
    ) -> None:
        self._token = token
        self._file = token_file
        self._exec = exec_config
        self._stamp: tuple[int, int, int] | None = None
        self._expires: datetime | None = None

    def _file_stamp(self) -> tuple[int, int, int]:
        st = os.stat(self._file)  # type: ignore[arg-type]  # follows the kubelet's symlinks
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    async def get(self, *, refresh: bool = False) -> str | None:
        """The token to send; `refresh` forces a re-read (after a 401)."""
        if self._file:
            try:
                stamp = self._file_stamp()
                if refresh or stamp != self._stamp or self._token is None:
                    self._token = Path(self._file).read_text().strip()
                    if self._stamp is not None:
                        log.info("re-read the rotated token file %s", self._file)
                    self._stamp = stamp
            except OSError as exc:
                if self._token is None:
                    raise KubeconfigError(
                        f"cannot read token file {self._file}: {exc.strerror}"
                    ) from exc
        elif self._exec:
            now = datetime.now(UTC)
            if refresh or self._token is None or (self._expires and now >= self._expires):
                self._token, self._expires = await asyncio.to_thread(_run_exec, self._exec)
        return self._token


def _run_exec(spec: dict[str, Any]) -> tuple[str, datetime | None]:
    """Run a kubeconfig `exec` credential plugin; its ExecCredential's token and expiry."""
    command = spec.get("command")
    if not command:
        raise KubeconfigError("kubeconfig user.exec has no command")
    env = dict(os.environ)
    for item in spec.get("env") or []:
        env[str(item["name"])] = str(item["value"])
    env["KUBERNETES_EXEC_INFO"] = json.dumps(
        {
            "apiVersion": spec.get("apiVersion", "client.authentication.k8s.io/v1"),
            "kind": "ExecCredential",
            "spec": {"interactive": False},
        }
    )
    try:
        done = subprocess.run(
            [command, *(spec.get("args") or [])],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise KubeconfigError(f"kubeconfig exec plugin {command!r} failed: {exc}") from exc
    if done.returncode != 0:
        raise KubeconfigError(
            f"kubeconfig exec plugin {command!r} exited {done.returncode}: "
            f"{done.stderr.strip()[:300]}"
        )
    try:
        status = json.loads(done.stdout)["status"]
        token = status["token"]
    except (ValueError, KeyError, TypeError) as exc:
        raise KubeconfigError(
            f"kubeconfig exec plugin {command!r} printed no ExecCredential with status.token"
        ) from exc
    expires = None
    if stamp := status.get("expirationTimestamp"):
        with contextlib.suppress(ValueError):
            expires = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return token, expires


# --------------------------------------------------------------------------- connection


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how to authenticate (from kubeconfig or in-cluster)."""

    server: str
    namespace: str = "default"
    token: str | None = None
    token_file: str | None = None
    exec_config: dict[str, Any] | None = None
    ca_file: str | None = None
    ca_data: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    insecure: bool = False
    source: str = ""

    def ssl_context(self) -> ssl.SSLContext:
        """Verification and client certificates as configured."""
        if self.insecure:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            context = ssl.create_default_context(cafile=self.ca_file, cadata=self.ca_data)
        if self.cert_file or self.cert_data:
            _load_client_cert(context, self)
        return context


def _load_client_cert(context: ssl.SSLContext, conn: Connection) -> None:
    """ssl only loads certificates from files: write `-data` to private temp files."""
    with tempfile.TemporaryDirectory(prefix="canary-kube-") as tmp:
        cert, key = conn.cert_file, conn.key_file
        if conn.cert_data is not None:
            cert = os.path.join(tmp, "cert.pem")
            _write_private(cert, conn.cert_data)
        if conn.key_data is not None:
            key = os.path.join(tmp, "key.pem")
            _write_private(key, conn.key_data)
        try:
            context.load_cert_chain(cert, key)  # type: ignore[arg-type]
        except (OSError, ssl.SSLError) as exc:
            raise KubeconfigError(
                f"{conn.source}: cannot load the client certificate: {exc}"
            ) from exc


def _write_private(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def in_cluster_connection(sa_dir: str | None = None) -> Connection:
    """The in-cluster API server from the environment and the mounted service account."""
    sa = Path(sa_dir or SERVICEACCOUNT_DIR)
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise KubeconfigError("not in a cluster: KUBERNETES_SERVICE_HOST is not set")
    if not (sa / "token").exists():
        raise KubeconfigError(f"not in a cluster: no service-account token at {sa / 'token'}")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6
    namespace = "default"
    with contextlib.suppress(OSError):
        namespace = (sa / "namespace").read_text().strip() or namespace
    ca = sa / "ca.crt"
    return Connection(
        server=f"https://{host}:{port}",
        namespace=namespace,
        token_file=str(sa / "token"),
        ca_file=str(ca) if ca.exists() else None,
        source="in-cluster service account",
    )


def _kubeconfig_paths(path: str | None) -> list[Path]:
    if path:
        return [Path(path).expanduser()]
    if env := os.environ.get("KUBECONFIG"):
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    return [Path.home() / ".kube" / "config"]


def _b64(value: str, what: str, source: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise KubeconfigError(f"{source}: {what} is not valid base64") from exc


def kubeconfig_connection(path: str | None = None, context: str | None = None) -> Connection:
    """The connection of `context` (default: current-context) in the kubeconfig file(s)."""
    files = _kubeconfig_paths(path)
    merged: dict[str, dict[str, Any]] = {"clusters": {}, "users": {}, "contexts": {}}
    current = None
    base_dirs: dict[tuple[str, str], Path] = {}
    found = False
    for file in files:
        try:
            doc = yaml.safe_load(file.read_text()) or {}
        except FileNotFoundError:
            continue
        except (OSError, yaml.YAMLError) as exc:
            raise KubeconfigError(f"cannot read kubeconfig {file}: {exc}") from exc
        if not isinstance(doc, dict):
            raise KubeconfigError(f"kubeconfig {file}: not a mapping")
        found = True
        current = current or doc.get("current-context")
        for section in merged:  # the first file that defines a name wins (kubectl's rule)
            for entry in doc.get(section) or []:
                if isinstance(entry, dict) and entry.get("name") not in merged[section]:
                    merged[section][entry["name"]] = entry
                    base_dirs[(section, entry["name"])] = file.parent
    source = "kubeconfig " + os.pathsep.join(str(f) for f in files)
    if not found:
        raise KubeconfigError(f"{source}: no such file")
    name = context or current
    if not name:
        raise KubeconfigError(f"{source}: no current-context; pass a context")
    if name not in merged["contexts"]:
        known = ", ".join(sorted(merged["contexts"])) or "none"
        raise KubeconfigError(f"{source}: no context named {name!r} (known: {known})")
    ctx = merged["contexts"][name].get("context") or {}
    cluster_name, user_name = ctx.get("cluster"), ctx.get("user")
    if cluster_name not in merged["clusters"]:
        raise KubeconfigError(f"{source}: context {name!r} names unknown cluster {cluster_name!r}")
    cluster = merged["clusters"][cluster_name].get("cluster") or {}
    user = (merged["users"].get(user_name) or {}).get("user") or {}
    if user_name and user_name not in merged["users"]:
        raise KubeconfigError(f"{source}: context {name!r} names unknown user {user_name!r}")
    cdir = base_dirs[("clusters", cluster_name)]
    udir = base_dirs.get(("users", user_name), cdir)

    def rel(base: Path, value: str | None) -> str | None:
        return None if not value else str((base / Path(value).expanduser()).resolve())

    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"{source}: cluster {cluster_name!r} has no server")
    if user.get("username") or user.get("auth-provider"):
        raise KubeconfigError(
            f"{source}: user {user_name!r} uses basic auth or an auth-provider, which canary"
            " does not support; use a token, client certificate or exec plugin"
        )
    ca_data = cluster.get("certificate-authority-data")
    return Connection(
        server=server.rstrip("/"),
        namespace=ctx.get("namespace") or "default",
        token=user.get("token"),
        token_file=rel(udir, user.get("tokenFile")),
        exec_config=user.get("exec"),
        ca_file=rel(cdir, cluster.get("certificate-authority")),
        ca_data=_b64(ca_data, "certificate-authority-data", source).decode() if ca_data else None,
        cert_file=rel(udir, user.get("client-certificate")),
        key_file=rel(udir, user.get("client-key")),
        cert_data=_b64(user["client-certificate-data"], "client-certificate-data", source)
        if user.get("client-certificate-data")
        else None,
        key_data=_b64(user["client-key-data"], "client-key-data", source)
        if user.get("client-key-data")
        else None,
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        source=f"{source} (context {name})",
    )


# --------------------------------------------------------------------------- client


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return response.text.strip()[:300]


class KubeClient:
    """Async requests to one API server with typed errors and bounded retries.

    Every call names the Kubernetes verb and a readable resource so an error says
    what was attempted: ``forbidden to patch virtualservices.networking.istio.io/x in
    namespace y``. 5xx, 429 and transport errors (timeouts included) are retried
    `retries` times with exponential backoff from `backoff` seconds; 409 is raised
    at once as Conflict — the caller decides whether to re-read and re-apply.
    """

    def __init__(
        self,
        connection: Connection,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.connection = connection
        self.namespace = connection.namespace
        self.retries = retries
        self.backoff = backoff
        self._tokens = TokenSource(
            token=connection.token,
            token_file=connection.token_file,
            exec_config=connection.exec_config,
        )
        if transport is None:  # `transport`: an in-process API (canary.traffic.standin)
            verify: ssl.SSLContext | bool = True
            if connection.server.startswith("https://"):
                verify = connection.ssl_context()
            # TCP_NODELAY: a request's headers and body leave in separate writes; with
            # Nagle's algorithm and the server's delayed ACK each PATCH/POST waits ~40 ms
            transport = httpx.AsyncHTTPTransport(
                verify=verify, socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]
            )
        self._http = httpx.AsyncClient(
            base_url=connection.server, transport=transport, timeout=timeout, trust_env=False
        )
        self._versions: dict[str, str] = {}

    # -- construction

    @classmethod
    def from_config(cls, config: KubernetesConfig) -> KubeClient:
        """In-cluster or kubeconfig per `config.mode` (auto: in-cluster when available)."""
        mode = config.mode
        if mode == "memory":
            raise KubeconfigError("kubernetes.mode is 'memory': there is no API server to call")
        if mode == "auto":
            in_cluster = os.environ.get("KUBERNETES_SERVICE_HOST") and os.path.exists(
                os.path.join(SERVICEACCOUNT_DIR, "token")
            )
            mode = "in-cluster" if in_cluster and not config.kubeconfig else "kubeconfig"
        if mode == "in-cluster":
            connection = in_cluster_connection()
        else:
            connection = kubeconfig_connection(config.kubeconfig, config.context)
        return cls(connection, timeout=config.timeout, retries=config.retries)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- requests

    async def request(
        self,
        method: str,
        path: str,
        *,
        verb: str,
        resource: str,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
        retries: int | None = None,
    ) -> dict[str, Any]:
        """One API call; the decoded JSON answer or a typed error.

        No answer, 429 and 5xx are retried (`retries`, backoff from `backoff` doubling
        up to 5 s); a first 401 re-reads the token and repeats the attempt once.
        """
        content = None if body is None else json.dumps(body).encode()
        refreshed = False

        async def attempt(number: int) -> dict[str, Any]:
            nonlocal refreshed
            while True:
                try:
                    response = await self._send(method, path, content, content_type, params)
                except httpx.TransportError as exc:
                    detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    raise KubeApiError(resource, verb, None, detail, attempts=number) from exc
                if response.status_code != 401 or refreshed:
                    return _answer(response, verb, resource, number)
                refreshed = True  # the token may have rotated under us: re-read it once
                await self._tokens.get(refresh=True)

        def on_retry(retry: int, delay: float, error: Exception) -> None:
            assert isinstance(error, KubeApiError)
            why = f"HTTP {error.status}: {error.detail}" if error.status else error.detail
            log.warning("%s %s failed (%s); retrying in %.1fs", verb, resource, why, delay)

        policy = RetryPolicy(self.retries if retries is None else retries, self.backoff, cap=5.0)
        return await retrying(attempt, policy, retryable=_retryable, on_retry=on_retry)

    async def _send(
        self,
        method: str,
        path: str,
        content: bytes | None,
        content_type: str,
        params: dict[str, str] | None,
    ) -> httpx.Response:
        token = await self._tokens.get()
        headers = {"Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = content_type
        if token:
            headers["Authorization"] = f"Bearer {token}"
        return await self._http.request(
            method, path, content=content, headers=headers, params=params
        )

    # -- discovery

    async def preferred_version(self, group: str, supported: tuple[str, ...]) -> str:
        """The version of `group` to use: the server's preferred one if we support it,
        else the first of `supported` (in our order of preference) that it serves."""
        if group in self._versions:
            return self._versions[group]
        try:
            info = await self.request("GET", f"/apis/{group}", verb="discover", resource=group)
        except ResourceNotFound:
            raise ResourceNotFound(
                group, "discover", "the API server does not serve this API group"
            ) from None
        served = [v.get("version") for v in info.get("versions") or []]
        preferred = (info.get("preferredVersion") or {}).get("version")
        if preferred in supported:
            chosen = preferred
        else:
            usable = [v for v in supported if v in served]
            if not usable:
                raise KubeApiError(
                    group,
                    "discover",
                    None,
                    f"the server offers versions {served or 'none'}, canary supports"
                    f" {', '.join(supported)}",
                )
            chosen = usable[0]
        self._versions[group] = chosen
        return chosen

    # -- events (core/v1)

    async def create_event(self, namespace: str, event: dict[str, Any]) -> dict[str, Any]:
        """Post a core/v1 Event (no retries: events are best effort)."""
        body = {"apiVersion": "v1", "kind": "Event", **event}
        return await self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/events",
            verb="create",
            resource=f"events in namespace {namespace}",
            body=body,
            retries=0,
        )
