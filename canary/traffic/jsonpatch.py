"""JSON Patch (RFC 6902) as the Kubernetes API server applies it to an object.

`apply_json_patch` serves the in-process API stand-in (`canary.traffic.standin`) and
the tests' API server alike. Every operation of the RFC (``add``, ``remove``,
``replace``, ``move``, ``copy``, ``test``); a malformed or failing one raises
`PatchError` (the API server's 422) and the document is left as it was.
"""

from __future__ import annotations

import copy
import re
from typing import Any

__all__ = ["PatchError", "apply_json_patch"]

_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]*")


class PatchError(ValueError):
    """A JSON-patch operation that cannot apply (the API server's 422)."""


def apply_json_patch(doc: Any, operations: Any) -> Any:
    """`doc` with the RFC 6902 `operations` applied (a copy); PatchError when one fails."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch is a list of operations")
    out = copy.deepcopy(doc)
    for operation in operations:
        if not isinstance(operation, dict) or not isinstance(operation.get("path"), str):
            raise PatchError(f"operation {operation!r} has no path")
        op, path = operation.get("op"), operation["path"]
        if op == "add":
            _add(out, path, _member(operation, "value"))
        elif op == "remove":
            _remove(out, path)
        elif op == "replace":
            value = _member(operation, "value")
            _remove(out, path)
            _add(out, path, value)
        elif op == "move":
            _add(out, path, _remove(out, _member(operation, "from")))
        elif op == "copy":
            _add(out, path, copy.deepcopy(_get(out, _member(operation, "from"))))
        elif op == "test":
            if _get(out, path) != _member(operation, "value"):
                raise PatchError(f"test {path!r}: the value differs")
        else:
            raise PatchError(f"unsupported operation {op!r}")
    return out


def _member(operation: dict[str, Any], name: str) -> Any:
    if name not in operation:
        raise PatchError(f"{operation.get('op')} {operation['path']!r}: no {name!r}")
    return copy.deepcopy(operation[name])


def _tokens(path: Any) -> list[str]:
    """The reference tokens of a JSON pointer (RFC 6901): "~1" is "/", "~0" is "~"."""
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(f"{path!r} is not a JSON pointer")
    if path == "":
        return []
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _child(node: Any, token: str, path: str) -> Any:
    if isinstance(node, dict) and token in node:
        return node[token]
    if isinstance(node, list):
        return node[_index(node, token, path)]
    raise PatchError(f"{path!r}: no member {token!r}")


def _index(node: list[Any], token: str, path: str, *, end: bool = False) -> int:
    """An array index that exists (or, with `end`, the one past the last element)."""
    if not _ARRAY_INDEX.fullmatch(token) or int(token) > len(node) - (0 if end else 1):
        raise PatchError(f"{path!r}: no element {token!r}")
    return int(token)


def _get(doc: Any, path: str) -> Any:
    node = doc
    for token in _tokens(path):
        node = _child(node, token, path)
    return node


def _parent(doc: Any, path: str) -> tuple[Any, str]:
    tokens = _tokens(path)
    if not tokens:
        raise PatchError(f"{path!r}: the whole document cannot be patched here")
    node = doc
    for token in tokens[:-1]:
        node = _child(node, token, path)
    return node, tokens[-1]


def _remove(doc: Any, path: str) -> Any:
    parent, last = _parent(doc, path)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, path))
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    raise PatchError(f"{path!r}: no member {last!r}")


def _add(doc: Any, path: str, value: Any) -> None:
    parent, last = _parent(doc, path)
    if isinstance(parent, list):
        parent.insert(len(parent) if last == "-" else _index(parent, last, path, end=True), value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise PatchError(f"{path!r}: the parent is not a container")
