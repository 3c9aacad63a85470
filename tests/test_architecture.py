"""The allowed imports between canary's packages (docs/architecture.md, "Layers"),
and that only canary/store/ imports the database libraries.

Every `import` in canary/ is read (module level and inside functions alike), mapped
to the top-level package or module it names, and checked against the layers: a
package imports its own layer (the edges excepted: they never import each other)
or a lower one as `MAY_IMPORT` lists, never a higher one, and the package graph has
no cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "canary"

#: Lowest first. "" is the package itself (`from canary import __version__`).
LAYERS: dict[str, set[str]] = {
    "foundation": {"", "errors", "model", "config", "logs", "promregex", "retry"},
    "core": {"engine", "judge", "ports", "overrides", "analysis_json", "verdict_words"},
    "store": {"store"},
    "edges": {"metrics", "traffic"},
    "application": {
        "rounds",
        "control",
        "replay",
        "history",
        "notify",
        "report",
        "transfer",
        "telemetry",
    },
    "drivers": {"daemon", "api", "preflight"},
    "entry": {"commands", "cli", "__main__"},
}
#: What each layer may import. The store and the edges sit side by side above the
#: core: neither imports the other, an edge never imports another edge, and only
#: the drivers (daemon, API) and the entry points wire edges to the application.
MAY_IMPORT: dict[str, set[str]] = {
    "foundation": {"foundation"},
    "core": {"foundation", "core"},
    "store": {"foundation", "core", "store"},
    "edges": {"foundation", "core"},
    "application": {"foundation", "core", "store", "application"},
    "drivers": {"foundation", "core", "store", "edges", "application", "drivers"},
    "entry": set(LAYERS),
}
LAYER_OF = {package: layer for layer, packages in LAYERS.items() for package in packages}


def _package(module: str) -> str:
    """`canary.store.tables` -> `store`; `canary` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    """The canary packages a source file imports (any import statement)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "canary":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("canary."):
                found.add(_package(node.module))
        elif isinstance(node, ast.Import):
            found.update(_package(a.name) for a in node.names if a.name.startswith("canary."))
    return found


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        relative = path.relative_to(ROOT)
        package = relative.parts[0].removesuffix(".py") if relative.parts else ""
        if package == "__init__":
            package = ""
        imported = {p if p in LAYER_OF else "" for p in _imports(path)}
        graph.setdefault(package, set()).update(imported - {package})
    return graph


def test_every_package_has_a_layer() -> None:
    unknown = sorted(set(_graph()) - set(LAYER_OF))
    assert not unknown, f"packages missing from LAYERS (and docs/architecture.md): {unknown}"


def test_no_package_imports_a_layer_above_or_beside_it() -> None:
    wrong = []
    for package, imported in sorted(_graph().items()):
        layer = LAYER_OF[package]
        for other in sorted(imported):
            other_layer = LAYER_OF[other]
            if other_layer not in MAY_IMPORT[layer]:
                wrong.append(f"{package} ({layer}) imports {other} ({other_layer})")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_the_package_graph_has_no_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for other in sorted(graph.get(node, ())):
            if state.get(other) == 1:
                cycles.append([*path[path.index(other) :], other])
            elif other not in state:
                visit(other, [*path, other])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


#: Third-party packages only the store imports: every SQL statement, transaction
#: helper and table lives under canary/store/, and the rest of canary reaches the
#: database through its functions (`canary.store.database.Sessions` and `Session`
#: are the handles passed around).
STORE_ONLY = {"sqlalchemy", "alembic"}


def _third_party(path: Path) -> set[str]:
    """The top-level names of the non-canary modules a source file imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
    return found - {"canary"}


def test_only_the_store_imports_the_database_libraries() -> None:
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        relative = path.relative_to(ROOT)
        if relative.parts[0] == "store":
            continue
        for name in sorted(_third_party(path) & STORE_ONLY):
            wrong.append(f"canary/{relative} imports {name}")
    assert not wrong, "database access outside canary/store:\n" + "\n".join(wrong)


TESTS = Path(__file__).resolve().parent


def test_test_modules_share_fixtures_through_conftest_only() -> None:
    """No test module imports another (shared fixtures live in conftest.py, shared
    helpers in the harness modules), and the harnesses are imported by their bare
    names only: `tests.x` next to `x` would load a second copy of module `x`."""
    wrong = []
    for path in sorted(TESTS.glob("*.py")):
        for name in sorted(_third_party(path)):
            if name.startswith("test_") or name == "tests":
                wrong.append(f"tests/{path.name} imports {name}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from sqlalchemy import select", {"sqlalchemy"}),
        ("def f():\n    from sqlalchemy.exc import IntegrityError", {"sqlalchemy"}),
        ("import alembic.command", {"alembic"}),
        ("from canary.store.database import Sessions", set()),
    ],
)
def test_the_checker_sees_database_imports(tmp_path: Path, source: str, expected: set[str]) -> None:
    path = tmp_path / "module.py"
    path.write_text(source + "\n", encoding="utf-8")
    assert _third_party(path) & STORE_ONLY == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from canary.store.tables import Round", {"store"}),
        ("def f():\n    from canary.traffic import make_router", {"traffic"}),
        ("from canary import engine as rollout", {"engine"}),
        ("import canary.metrics.collect", {"metrics"}),
        ("from sqlalchemy import select", set()),
    ],
)
def test_the_checker_sees_every_kind_of_import(
    tmp_path: Path, source: str, expected: set[str]
) -> None:
    path = tmp_path / "module.py"
    path.write_text(source + "\n", encoding="utf-8")
    assert _imports(path) == expected
