"""A small Kubernetes API server for the tests, with the real API's semantics.

No kube-apiserver can run here, so this implements the part canary uses:

- discovery: ``/api``, ``/apis``, ``/apis/<group>``, ``/apis/<group>/<version>``;
- ``networking.istio.io`` VirtualServices in v1, v1beta1 and v1alpha3 (one stored
  object, served in whichever version is asked; the served versions and the
  preferred one are configurable), ``gateway.networking.k8s.io`` HTTPRoutes in v1
  and v1beta1 (likewise configurable), coordination.k8s.io/v1 Leases, core/v1 Events;
- GET, list, POST (409 AlreadyExists, ``generateName``), PUT (409 on a stale
  ``metadata.resourceVersion``; custom resources require it), PATCH with
  ``application/merge-patch+json`` (RFC 7386) and ``application/json-patch+json``
  (RFC 6902; a failed op is 422), 415 for strategic merge patch on custom resources,
  DELETE; a resourceVersion in the patched object that is not the stored one is a
  409 Conflict, exactly as the API server's optimistic concurrency does;
- resourceVersion taken from one global counter and bumped on every write,
  ``metadata.generation`` bumped when ``spec`` changes;
- Istio's weight validation as a 422 (istio/istio pkg/config/validation,
  ``validateHTTPRouteDestinations``: no negative weight, and a route with more than
  one destination must not total 0; any other sum is valid);
- the HTTPRoute CRD's defaulting and validation (kubernetes-sigs/gateway-api
  apis/v1/httproute_types.go and shared_types.go): on every write, a backendRef's
  omitted ``group``, ``kind`` and ``weight`` become ``""``, ``Service`` and ``1``;
  weights are integers in 0..1000000, a Service backendRef must have a ``port``, at
  most 16 rules and 16 backendRefs per rule, rule names unique (422 otherwise);
- bearer-token checks (401), optional TLS with client certificates, RBAC denials
  (403) per verb and resource, 5xx answers and slow answers on demand.

Use it as a fixture (``kube_api``, ``kube_client``, ``kubeconfig_file`` below;
tests/conftest.py re-exports them) or directly: ``with KubeApiServer(tokens={"t"}) as
api: ...``; `client_for` and `shop_canary` build a client and a canary for it.
"""

from __future__ import annotations

import copy
import json
import socket
import ssl
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from canary.config import CanaryConfig, parse_config
from canary.traffic.jsonpatch import PatchError, apply_json_patch
from canary.traffic.kube import Connection, KubeClient

ISTIO = "networking.istio.io"
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")
GATEWAY = "gateway.networking.k8s.io"
GATEWAY_VERSIONS = ("v1", "v1beta1")
COORDINATION = "coordination.k8s.io"

#: (group, plural) -> kind, namespaced, custom resource
RESOURCES: dict[tuple[str, str], tuple[str, bool]] = {
    (ISTIO, "virtualservices"): ("VirtualService", True),
    (ISTIO, "destinationrules"): ("DestinationRule", True),
    (GATEWAY, "httproutes"): ("HTTPRoute", True),
    (COORDINATION, "leases"): ("Lease", False),
    ("", "events"): ("Event", False),
}


class ApiStatus(Exception):
    """An error answer: a metav1.Status with `code`, `reason` and `message`."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def body(self) -> dict[str, Any]:
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }


@dataclass
class Request:
    """One request as received (for assertions)."""

    method: str
    path: str
    content_type: str | None
    body: Any
    token: str | None


@dataclass
class _Fault:
    status: int | None  # None: only delay
    delay: float
    match: Callable[[str, str], bool] | None  # (method, path) -> applies?
    count: int


# --------------------------------------------------------------------------- patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON Merge Patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --------------------------------------------------------------------------- validation


def istio_weight_problems(vs: dict[str, Any]) -> list[str]:
    """What Istio's validating webhook says about a VirtualService's http weights.

    istio/istio pkg/config/validation: ``validateWeight`` refuses a negative weight,
    ``validateHTTPRouteDestinations`` a total of 0 when there is more than one
    destination; the weights are proportions, their sum is otherwise free.
    """
    problems = []
    for i, route in enumerate((vs.get("spec") or {}).get("http") or []):
        dests = (route or {}).get("route") or []
        total = 0
        for j, dest in enumerate(dests):
            weight = dest.get("weight", 0)
            if isinstance(weight, bool) or not isinstance(weight, int):
                problems.append(f"spec.http[{i}].route[{j}].weight: must be an integer")
                continue
            if weight < 0:
                problems.append(f"weight {weight} < 0")
            total += weight
        if len(dests) > 1 and total == 0:
            problems.append("total destination weight = 0")
    return problems


def httproute_defaults(route: dict[str, Any]) -> None:
    """The HTTPRoute CRD's defaults, applied in place as the API server does on writes."""
    for rule in (route.get("spec") or {}).get("rules") or []:
        for ref in (rule or {}).get("backendRefs") or []:
            if isinstance(ref, dict):
                ref.setdefault("group", "")
                ref.setdefault("kind", "Service")
                ref.setdefault("weight", 1)


def httproute_problems(route: dict[str, Any]) -> list[str]:
    """What the HTTPRoute CRD's schema and CEL rules say about its rules (after defaults)."""
    problems = []
    rules = (route.get("spec") or {}).get("rules") or []
    if len(rules) > 16:
        problems.append(f"spec.rules: Too many: {len(rules)}: must have at most 16 items")
    names = [r.get("name") for r in rules if isinstance(r, dict) and r.get("name")]
    if len(names) != len(set(names)):
        problems.append("spec.rules: Invalid value: Rule name must be unique within the route")
    for i, rule in enumerate(rules):
        refs = (rule or {}).get("backendRefs") or []
        if len(refs) > 16:
            problems.append(f"spec.rules[{i}].backendRefs: Too many: must have at most 16 items")
        for j, ref in enumerate(refs):
            where = f"spec.rules[{i}].backendRefs[{j}]"
            weight = ref.get("weight")
            if isinstance(weight, bool) or not isinstance(weight, int):
                problems.append(f"{where}.weight: Invalid value: must be of type integer")
            elif not 0 <= weight <= 1_000_000:
                problems.append(f"{where}.weight: Invalid value: {weight}: must be in 0..1000000")
            if ref.get("group") == "" and ref.get("kind") == "Service" and "port" not in ref:
                problems.append(f"{where}: Invalid value: Must have port for Service reference")
    return problems


def _admission(kind: str, obj: dict[str, Any]) -> None:
    """Defaulting and validation of the custom resources (422 Invalid like the server)."""
    if kind == "VirtualService" and (problems := istio_weight_problems(obj)):
        raise ApiStatus(
            422,
            "Invalid",
            'admission webhook "validation.istio.io" denied the request: '
            "configuration is invalid: " + "; ".join(problems),
        )
    if kind == "HTTPRoute":
        httproute_defaults(obj)
        if problems := httproute_problems(obj):
            name = (obj.get("metadata") or {}).get("name")
            raise ApiStatus(
                422,
                "Invalid",
                f'HTTPRoute.{GATEWAY} "{name}" is invalid: ' + ", ".join(problems),
            )


# --------------------------------------------------------------------------- server


class KubeApiServer:
    """The API server; `start()`/`stop()` or use it as a context manager."""

    def __init__(
        self,
        *,
        istio_versions: tuple[str, ...] = ISTIO_VERSIONS,
        preferred: str | None = None,
        gateway_versions: tuple[str, ...] = GATEWAY_VERSIONS,
        tokens: set[str] | None = None,
        tls: tuple[str, str] | None = None,
        client_ca: str | None = None,
        user: str = "system:serviceaccount:canary-system:canary",
    ) -> None:
        self.istio_versions = tuple(istio_versions)
        self.preferred = preferred or (self.istio_versions[0] if self.istio_versions else "")
        self.gateway_versions = tuple(gateway_versions)
        #: Accepted bearer tokens; None accepts anonymous requests.
        self.tokens = tokens
        self.user = user
        self.tls, self.client_ca = tls, client_ca
        self.lock = threading.RLock()
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.requests: list[Request] = []
        #: (verb, plural) pairs that RBAC denies (403), e.g. ("patch", "virtualservices").
        self.denied: set[tuple[str, str]] = set()
        #: Run before the next write(s) is applied (simulates a concurrent writer).
        self.before_write: list[Callable[[KubeApiServer], None]] = []
        self._faults: list[_Fault] = []
        self._rv = 100
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    def start(self) -> KubeApiServer:
        handler = type("Handler", (_Handler,), {"api": self})
        self._httpd = _Server(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            if self.client_ca:
                context.load_verify_locations(self.client_ca)
                context.verify_mode = ssl.CERT_OPTIONAL
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- knobs

    def fail(
        self,
        status: int = 500,
        *,
        count: int = 1,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """Answer the next `count` matching requests with `status`."""
        self._faults.append(_Fault(status, 0.0, _matcher(method, path), count))

    def slow(
        self, seconds: float, *, count: int = 1, method: str | None = None, path: str | None = None
    ) -> None:
        """Delay the next `count` matching requests by `seconds` (then answer normally)."""
        self._faults.append(_Fault(None, seconds, _matcher(method, path), count))

    def deny(self, verb: str, plural: str) -> None:
        """RBAC: forbid `verb` on `plural` (403)."""
        self.denied.add((verb, plural))

    # -- direct state access (as another client would see it)

    def next_rv(self) -> str:
        with self.lock:
            self._rv += 1
            return str(self._rv)

    def create(self, obj: dict[str, Any], *, plural: str | None = None) -> dict[str, Any]:
        """Store a new object (as `kubectl create` would); returns the stored copy."""
        group, _, _ = obj["apiVersion"].rpartition("/")
        kind = obj["kind"]
        plural = plural or next(
            p for (g, p), (k, _) in RESOURCES.items() if (g, k) == (group, kind)
        )
        meta = obj.setdefault("metadata", {})
        key = (group, plural, meta.get("namespace", "default"), meta["name"])
        with self.lock:
            stored = copy.deepcopy(obj)
            if kind == "HTTPRoute":
                httproute_defaults(stored)
            stored = self._stamp(stored, None)
            self.objects[key] = stored
            return copy.deepcopy(stored)

    def get(self, group: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self.objects[(group, plural, namespace, name)])

    def virtual_service(self, namespace: str, name: str) -> dict[str, Any]:
        return self.get(ISTIO, "virtualservices", namespace, name)

    def http_route(self, namespace: str, name: str) -> dict[str, Any]:
        return self.get(GATEWAY, "httproutes", namespace, name)

    def modify(
        self, group: str, plural: str, namespace: str, name: str, change: Callable[[dict], None]
    ) -> dict[str, Any]:
        """Change a stored object in place as another writer would (bumps resourceVersion)."""
        with self.lock:
            key = (group, plural, namespace, name)
            obj = copy.deepcopy(self.objects[key])
            change(obj)
            if obj.get("kind") == "HTTPRoute":
                httproute_defaults(obj)
            self.objects[key] = self._stamp(obj, self.objects[key])
            return copy.deepcopy(self.objects[key])

    def events(self, namespace: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                copy.deepcopy(o)
                for (g, p, ns, _), o in self.objects.items()
                if (g, p) == ("", "events") and namespace in (None, ns)
            ]

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method in ("PUT", "PATCH", "POST", "DELETE")]

    # -- internals

    def _stamp(self, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        meta = obj.setdefault("metadata", {})
        meta["resourceVersion"] = self.next_rv()
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now()
            meta["generation"] = 1
        else:
            old_meta = old["metadata"]
            meta["uid"], meta["creationTimestamp"] = old_meta["uid"], old_meta["creationTimestamp"]
            generation = old_meta.get("generation", 1)
            meta["generation"] = generation + (obj.get("spec") != old.get("spec"))
        return obj

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        with self.lock:
            for fault in self._faults:
                if fault.match is None or fault.match(method, path):
                    fault.count -= 1
                    if fault.count <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], raw: bytes, cert: Any
    ) -> tuple[int, dict[str, Any]]:
        content_type = (headers.get("content-type") or "").split(";")[0].strip() or None
        auth = headers.get("authorization") or ""
        token = auth[7:] if auth.lower().startswith("bearer ") else None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = ValueError
        with self.lock:
            self.requests.append(Request(method, path, content_type, body, token))
        fault = self._take_fault(method, path)
        if fault:
            if fault.delay:
                time.sleep(fault.delay)
            if fault.status:
                raise ApiStatus(fault.status, "InternalError", f"injected HTTP {fault.status}")
        if self.tokens is not None and not cert and token not in self.tokens:
            raise ApiStatus(401, "Unauthorized", "Unauthorized")
        if body is ValueError:
            raise ApiStatus(400, "BadRequest", "the request body is not valid JSON")
        return self._route(method, path, query, content_type, body)

    def _route(
        self, method: str, path: str, query: str, content_type: str | None, body: Any
    ) -> tuple[int, dict[str, Any]]:
        parts = [p for p in path.split("/") if p]
        if parts == ["api"]:
            return 200, {"kind": "APIVersions", "versions": ["v1"]}
        if parts == ["apis"]:
            return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": self._groups()}
        if len(parts) == 2 and parts[0] == "apis":
            for group in self._groups():
                if group["name"] == parts[1]:
                    return 200, {"kind": "APIGroup", "apiVersion": "v1", **group}
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        if len(parts) == 3 and parts[0] == "apis":
            return 200, self._resource_list(parts[1], parts[2])
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        if not self._serves(group, version) or len(rest) not in (3, 4) or rest[0] != "namespaces":
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        namespace, plural = rest[1], rest[2]
        name = rest[3] if len(rest) == 4 else None
        if (group, plural) not in RESOURCES:
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        verb = {
            ("GET", True): "get",
            ("GET", False): "list",
            ("POST", False): "create",
            ("PUT", True): "update",
            ("PATCH", True): "patch",
            ("DELETE", True): "delete",
        }.get((method, name is not None))
        if verb is None:
            raise ApiStatus(405, "MethodNotAllowed", f"{method} is not allowed here")
        qualified = f"{plural}.{group}" if group else plural
        if (verb, plural) in self.denied:
            what = f'{qualified} "{name}"' if name else qualified
            raise ApiStatus(
                403,
                "Forbidden",
                f'{what} is forbidden: User "{self.user}" cannot {verb} resource "{plural}"'
                f' in API group "{group}" in the namespace "{namespace}"',
            )
        key = (group, plural, namespace, name or "")
        api_version = f"{group}/{version}" if group else version
        kind, custom = RESOURCES[(group, plural)]
        with self.lock:
            if verb == "list":
                items = [
                    self._out(o, api_version)
                    for (g, p, ns, _), o in sorted(self.objects.items())
                    if (g, p, ns) == (group, plural, namespace)
                ]
                return 200, {
                    "kind": f"{kind}List",
                    "apiVersion": api_version,
                    "metadata": {"resourceVersion": str(self._rv)},
                    "items": items,
                }
            if verb == "create":
                return 201, self._create(group, plural, namespace, api_version, kind, body)
            current = self.objects.get(key)
            if current is None:
                raise ApiStatus(404, "NotFound", f'{qualified} "{name}" not found')
            if verb == "get":
                return 200, self._out(current, api_version)
            if verb == "delete":
                del self.objects[key]
                return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"}
        # writes: let a "concurrent writer" act between the client's read and this write
        with self.lock:
            hooks, self.before_write = self.before_write, []
        for hook in hooks:  # a hook may queue itself again for the next write
            hook(self)
        with self.lock:
            current = self.objects.get(key)
            if current is None:
                raise ApiStatus(404, "NotFound", f'{qualified} "{name}" not found')
            if verb == "update":
                new = self._update_body(body, current, custom, qualified, name or "")
            else:
                new = self._patched(content_type, body, current, custom, api_version)
            new_meta = new.setdefault("metadata", {})
            if str(new_meta.get("resourceVersion")) != current["metadata"]["resourceVersion"]:
                raise ApiStatus(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {qualified} "{name}": the object has'
                    " been modified; please apply your changes to the latest version and try"
                    " again",
                )
            if new_meta.get("name") != name or new_meta.get("namespace", namespace) != namespace:
                raise ApiStatus(422, "Invalid", "metadata.name and namespace are immutable")
            _admission(kind, new)
            new.pop("apiVersion", None)
            self.objects[key] = self._stamp(new, current)
            return 200, self._out(self.objects[key], api_version)

    def _update_body(
        self, body: Any, current: dict[str, Any], custom: bool, qualified: str, name: str
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiStatus(400, "BadRequest", "the body must be an object")
        new = copy.deepcopy(body)
        meta = new.setdefault("metadata", {})
        if not meta.get("resourceVersion"):
            if custom:
                raise ApiStatus(
                    422,
                    "Invalid",
                    f'{qualified} "{name}" is invalid: metadata.resourceVersion: Invalid value:'
                    " 0x0: must be specified for an update",
                )
            meta["resourceVersion"] = current["metadata"]["resourceVersion"]
        return new

    def _patched(
        self,
        content_type: str | None,
        body: Any,
        current: dict[str, Any],
        custom: bool,
        api_version: str,
    ) -> dict[str, Any]:
        base = self._out(current, api_version)
        if content_type == "application/merge-patch+json":
            if not isinstance(body, dict):
                raise ApiStatus(400, "BadRequest", "a merge patch must be an object")
            return merge_patch(base, body)
        if content_type == "application/json-patch+json":
            try:
                return apply_json_patch(base, body)
            except PatchError as exc:
                raise ApiStatus(
                    422,
                    "Invalid",
                    f"the server rejected our request due to an error in our request: {exc}",
                ) from None
        if content_type == "application/strategic-merge-patch+json" and custom:
            raise ApiStatus(
                415,
                "UnsupportedMediaType",
                "strategic merge patch is not supported for custom resources",
            )
        raise ApiStatus(
            415, "UnsupportedMediaType", f"the media type {content_type!r} is not supported"
        )

    def _create(
        self,
        group: str,
        plural: str,
        namespace: str,
        api_version: str,
        kind: str,
        body: Any,
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ApiStatus(400, "BadRequest", "the body must be an object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiStatus(422, "Invalid", "metadata.name: Required value")
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        meta["namespace"] = namespace
        meta.pop("resourceVersion", None)
        key = (group, plural, namespace, meta["name"])
        if key in self.objects:
            qualified = f"{plural}.{group}" if group else plural
            raise ApiStatus(409, "AlreadyExists", f'{qualified} "{meta["name"]}" already exists')
        _admission(kind, obj)
        obj.pop("apiVersion", None)
        obj["kind"] = kind
        self.objects[key] = self._stamp(obj, None)
        return self._out(self.objects[key], api_version)

    def _out(self, obj: dict[str, Any], api_version: str) -> dict[str, Any]:
        out = copy.deepcopy(obj)
        out["apiVersion"] = api_version
        return dict(sorted(out.items(), key=lambda kv: kv[0] not in ("apiVersion", "kind")))

    def _serves(self, group: str, version: str) -> bool:
        if group == ISTIO:
            return version in self.istio_versions
        if group == GATEWAY:
            return version in self.gateway_versions
        return (group, version) in (("", "v1"), (COORDINATION, "v1"))

    def _groups(self) -> list[dict[str, Any]]:
        groups = []
        if self.istio_versions:
            versions = [{"groupVersion": f"{ISTIO}/{v}", "version": v} for v in self.istio_versions]
            preferred = {"groupVersion": f"{ISTIO}/{self.preferred}", "version": self.preferred}
            groups.append({"name": ISTIO, "versions": versions, "preferredVersion": preferred})
        if self.gateway_versions:
            versions = [
                {"groupVersion": f"{GATEWAY}/{v}", "version": v} for v in self.gateway_versions
            ]
            preferred = {
                "groupVersion": f"{GATEWAY}/{self.gateway_versions[0]}",
                "version": self.gateway_versions[0],
            }
            groups.append({"name": GATEWAY, "versions": versions, "preferredVersion": preferred})
        coordination = {"groupVersion": f"{COORDINATION}/v1", "version": "v1"}
        groups.append(
            {"name": COORDINATION, "versions": [coordination], "preferredVersion": coordination}
        )
        return groups

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        if not self._serves(group, version):
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        resources = [
            {"name": plural, "namespaced": True, "kind": kind}
            for (g, plural), (kind, _) in RESOURCES.items()
            if g == group
        ]
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}",
            "resources": resources,
        }


def _matcher(method: str | None, path: str | None) -> Callable[[str, str], bool] | None:
    if method is None and path is None:
        return None
    return lambda m, p: (method is None or m == method) and (path is None or path in p)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Server(ThreadingHTTPServer):
    # the default backlog of 5 drops connections when a daemon test or a benchmark
    # opens many at once (and the client then waits for SYN retransmits)
    request_queue_size = 256


class _Handler(BaseHTTPRequestHandler):
    api: KubeApiServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        # headers and body go out in two writes: without this, Nagle's algorithm and
        # delayed ACKs add ~40 ms to every answer
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path, _, query = self.path.partition("?")
        cert = None
        if isinstance(self.connection, ssl.SSLSocket):
            cert = self.connection.getpeercert() or None
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            status, body = self.api.handle(self.command, path, query, headers, raw, cert)
        except ApiStatus as exc:
            status, body = exc.code, exc.body()
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


# --------------------------------------------------------------------------- helpers


def self_signed(directory: Path, name: str, cn: str = "127.0.0.1") -> tuple[str, str]:
    """A self-signed EC certificate and key for `cn` (also an IP SAN), via openssl."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", f"/CN={cn}",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return str(cert), str(key)


def write_kubeconfig(
    path: Path,
    server: str,
    *,
    token: str | None = None,
    context: str = "test",
    namespace: str | None = None,
    extra_cluster: dict[str, Any] | None = None,
    extra_user: dict[str, Any] | None = None,
    other_contexts: dict[str, str] | None = None,
) -> Path:
    """A kubeconfig whose current context `context` reaches `server`.

    `other_contexts` maps more context names to servers (with the same user), to
    test choosing a named context.
    """
    user: dict[str, Any] = dict(extra_user or {})
    if token:
        user["token"] = token
    ctx: dict[str, Any] = {"cluster": context, "user": "tester"}
    if namespace:
        ctx["namespace"] = namespace
    clusters = [{"name": context, "cluster": {"server": server, **(extra_cluster or {})}}]
    contexts = [{"name": context, "context": ctx}]
    for name, url in (other_contexts or {}).items():
        clusters.append({"name": name, "cluster": {"server": url}})
        contexts.append({"name": name, "context": {"cluster": name, "user": "tester"}})
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": context,
        "clusters": clusters,
        "contexts": contexts,
        "users": [{"name": "tester", "user": user}],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def virtual_service(
    name: str = "checkout", namespace: str = "shop", api_version: str = f"{ISTIO}/v1"
) -> dict[str, Any]:
    """The issue's VirtualService: a named 90/10 subset split with retries and a fault
    delay, a header-matched route, and a second route with a 10 s timeout."""
    return {
        "apiVersion": api_version,
        "kind": "VirtualService",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": name},
            "annotations": {"owner": "team-shop"},
        },
        "spec": {
            "hosts": [name, f"{name}.example.com"],
            "gateways": ["mesh", "shop/public"],
            "http": [
                {
                    "name": "beta-testers",
                    "match": [{"headers": {"x-beta": {"exact": "1"}}}],
                    "route": [{"destination": {"host": name, "subset": "canary"}}],
                },
                {
                    "name": "primary",
                    "match": [{"uri": {"prefix": "/"}}],
                    "route": [
                        {
                            "destination": {
                                "host": name,
                                "subset": "stable",
                                "port": {"number": 80},
                            },
                            "weight": 90,
                            "headers": {"response": {"set": {"x-arm": "stable"}}},
                        },
                        {"destination": {"host": name, "subset": "canary"}, "weight": 10},
                    ],
                    "retries": {"attempts": 3, "perTryTimeout": "2s", "retryOn": "5xx"},
                    "fault": {"delay": {"percentage": {"value": 0.1}, "fixedDelay": "5s"}},
                    "mirror": {"host": f"{name}-shadow"},
                    "mirrorPercentage": {"value": 5.0},
                },
                {
                    "name": "legacy",
                    "route": [{"destination": {"host": f"{name}-legacy"}}],
                    "timeout": "10s",
                },
            ],
        },
    }


def http_route(
    name: str = "checkout", namespace: str = "shop", api_version: str = f"{GATEWAY}/v1"
) -> dict[str, Any]:
    """An HTTPRoute on a Gateway and as a mesh route (parentRef to the Service): a named
    90/10 split with filters and timeouts, a header-matched rule to the canary only,
    and an unnamed rule to a legacy Service with an omitted weight."""
    return {
        "apiVersion": api_version,
        "kind": "HTTPRoute",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app": name},
            "annotations": {"owner": "team-shop"},
        },
        "spec": {
            "parentRefs": [
                {"group": "", "kind": "Service", "name": name, "port": 80},
                {"name": "public", "namespace": "istio-ingress", "sectionName": "https"},
            ],
            "hostnames": [f"{name}.example.com"],
            "rules": [
                {
                    "name": "beta-testers",
                    "matches": [{"headers": [{"name": "x-beta", "value": "1"}]}],
                    "backendRefs": [{"name": f"{name}-canary", "port": 80}],
                },
                {
                    "name": "primary",
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "filters": [
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {"set": [{"name": "x-route", "value": "1"}]},
                        }
                    ],
                    "backendRefs": [
                        {"name": f"{name}-stable", "port": 80, "weight": 90},
                        {"name": f"{name}-canary", "port": 80, "weight": 10},
                    ],
                    "timeouts": {"request": "10s"},
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/legacy"}}],
                    "backendRefs": [{"name": f"{name}-legacy", "port": 8080}],
                },
            ],
        },
    }


# --------------------------------------------------------------------------- fixtures

TEST_TOKEN = "test-token"


@pytest.fixture
def kube_api() -> Iterator[KubeApiServer]:
    """A running local API server (plain HTTP) accepting the bearer token TEST_TOKEN."""
    with KubeApiServer(tokens={TEST_TOKEN}) as server:
        yield server


def client_for(api: KubeApiServer, *, retries: int = 3, timeout: float = 5.0) -> KubeClient:
    """A canary Kubernetes client of `api` with TEST_TOKEN and a short backoff."""
    return KubeClient(
        Connection(server=api.url, token=TEST_TOKEN), retries=retries, timeout=timeout, backoff=0.01
    )


@pytest.fixture
async def kube_client(kube_api: KubeApiServer) -> AsyncIterator[KubeClient]:
    """`client_for(kube_api)`, open for the test."""
    async with client_for(kube_api) as kube:
        yield kube


def shop_canary(traffic: dict[str, Any], *, stable_workload: str) -> CanaryConfig:
    """The canary ``checkout`` in namespace ``shop`` with `traffic`, its arms selected by
    destination workload (``checkout-canary`` and `stable_workload`)."""
    raw = {
        "canary": [
            {
                "name": "checkout",
                "namespace": "shop",
                "traffic": traffic,
                "arms": {
                    "canary": {"match": {"destination_workload": "checkout-canary"}},
                    "baseline": {"match": {"destination_workload": stable_workload}},
                },
            }
        ]
    }
    return parse_config(raw).canary[0]


@pytest.fixture
def kubeconfig_file(kube_api: KubeApiServer, tmp_path: Path) -> Path:
    """A kubeconfig file whose current context reaches `kube_api` with TEST_TOKEN."""
    return write_kubeconfig(tmp_path / "kubeconfig", kube_api.url, token=TEST_TOKEN)


__all__ = [
    "GATEWAY",
    "ISTIO",
    "TEST_TOKEN",
    "ApiStatus",
    "KubeApiServer",
    "Request",
    "client_for",
    "http_route",
    "httproute_defaults",
    "httproute_problems",
    "istio_weight_problems",
    "kube_api",
    "kube_client",
    "kubeconfig_file",
    "merge_patch",
    "self_signed",
    "shop_canary",
    "virtual_service",
    "write_kubeconfig",
]
