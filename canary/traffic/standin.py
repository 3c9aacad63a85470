"""An in-process stand-in for the Kubernetes API server, for `canary demo --mesh`.

It holds namespaced objects in memory and answers the requests the routers of
`canary.traffic` make, with the API server's semantics they rely on:

- discovery of an API group (``GET /apis/<group>``: the one version served);
- ``GET`` of an object; ``PATCH`` with ``application/json-patch+json`` (RFC 6902,
  `canary.traffic.jsonpatch`; a failing operation is a 422 and changes nothing),
  where a ``metadata.resourceVersion`` other than the stored one is a 409 Conflict,
  as the API server's optimistic concurrency answers;
- ``metadata.resourceVersion`` from one counter, bumped on every write;
- core/v1 Events (``POST``), kept in `events`.

A `canary.traffic.kube.KubeClient` reaches it through `transport()` (an
`httpx.MockTransport`): no socket, no cluster, and the routers' real write protocol.
It checks no mesh API's own rules; the tests run the routers against
tests/kubeapi.py, which does.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import httpx

from canary.traffic.jsonpatch import PatchError, apply_json_patch

__all__ = ["KubeStandIn"]

_OBJECT = re.compile(r"^/apis/([^/]+)/([^/]+)/namespaces/([^/]+)/([^/]+)/([^/]+)$")
_GROUP = re.compile(r"^/apis/([^/]+)$")
_EVENTS = re.compile(r"^/api/v1/namespaces/([^/]+)/events$")


class KubeStandIn:
    """Objects by (group, plural, namespace, name); each group served in one version."""

    def __init__(self, groups: dict[str, str]) -> None:
        self.groups = dict(groups)  # group -> the version served
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._version = 0

    def create(self, plural: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store `obj` (its ``apiVersion`` names the group) under `plural`."""
        group = obj["apiVersion"].split("/")[0]
        meta = obj.setdefault("metadata", {})
        key = (group, plural, meta["namespace"], meta["name"])
        self.objects[key] = self._stamped(obj)
        return copy.deepcopy(self.objects[key])

    def get(self, group: str, plural: str, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.objects[(group, plural, namespace, name)])

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    # -- the API

    def _stamped(self, obj: dict[str, Any]) -> dict[str, Any]:
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        return obj

    def _handle(self, request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        if method == "GET" and (found := _GROUP.match(path)) and found[1] in self.groups:
            version = {"groupVersion": f"{found[1]}/{self.groups[found[1]]}"}
            version["version"] = self.groups[found[1]]
            return _json(
                200, {"name": found[1], "versions": [version], "preferredVersion": version}
            )
        if method == "POST" and _EVENTS.match(path):
            event = json.loads(request.content)
            self.events.append(event)
            return _json(201, event)
        found = _OBJECT.match(path)
        if found is None or self.groups.get(found[1]) != found[2]:
            return _status(404, "NotFound", f"{path} is not served")
        key = (found[1], found[4], found[3], found[5])
        if key not in self.objects:
            return _status(404, "NotFound", f'{found[4]} "{found[5]}" not found')
        if method == "GET":
            return _json(200, self.objects[key])
        if method != "PATCH":
            return _status(405, "MethodNotAllowed", f"{method} is not served")
        if request.headers.get("content-type") != "application/json-patch+json":
            return _status(415, "UnsupportedMediaType", "only JSON patch is served")
        stored = self.objects[key]
        try:
            patched = apply_json_patch(stored, json.loads(request.content))
        except PatchError as exc:
            return _status(422, "Invalid", str(exc))
        sent = patched["metadata"].get("resourceVersion")
        if sent != stored["metadata"]["resourceVersion"]:
            return _status(409, "Conflict", "the object has been modified; re-read and retry")
        self.objects[key] = self._stamped(patched)
        return _json(200, patched)


def _json(status: int, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(status, json=body)


def _status(code: int, reason: str, message: str) -> httpx.Response:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure"}
    return _json(code, {**body, "reason": reason, "message": message, "code": code})
