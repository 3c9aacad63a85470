"""Shared fixtures: databases (SQLite and the local PostgreSQL), a local Kubernetes API,
a real Prometheus scraping an Istio-like exporter (`live_stack`, `ambient_stack`),
steady traffic on it (`traffic`), one serving the backfilled scenarios of
tests/metrics_scenarios.py (`backfilled_scenarios`) and one serving the API tests'
Argo-style scenarios (`backfilled`, tests/api_fixtures.py). Test modules use them by
name, without importing.
"""

from __future__ import annotations

import os
import socketserver
import sys
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from api_fixtures import backfilled  # noqa: F401  (fixture: the API tests' Prometheus)
from kubeapi import (  # noqa: F401  (fixtures: local Kubernetes API)
    kube_api,
    kube_client,
    kubeconfig_file,
)
from metrics_scenarios import SCENARIOS, Expected, Scenario
from prometheus_harness import (  # noqa: F401  (fixtures: Prometheus and the exporter)
    LiveStack,
    OpenMetricsWriter,
    PrometheusServer,
    ambient_stack,
    backfill,
    live_stack,
    prometheus_bin,
)
from sqlalchemy.orm import Session, sessionmaker

from canary.store.database import connect, migrate
from canary.store.database import sessions as make_sessions


def _quiet_when_the_client_left(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
    """The tests' HTTP servers (Prometheus stand-ins, webhook receivers, the Kubernetes
    API) run in handler threads that can outlive their test: a client that gave up
    (the product's timeouts, a stopped daemon) leaves a handler with a broken pipe or a
    reset connection, and socketserver prints its traceback to whatever `sys.stderr` is
    then — another test's captured output, which that test reads. Such a disconnect is
    expected; any other handler error is still printed."""
    if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
        return
    _print_handler_error(self, request, client_address)


_print_handler_error = socketserver.BaseServer.handle_error
socketserver.BaseServer.handle_error = _quiet_when_the_client_left  # type: ignore[method-assign]


POSTGRES_URL = os.environ.get(
    "CANARY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _fresh_postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test; dropped afterwards."""
    admin = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    name = f"canary_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        sa.create_engine(url).dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """An empty database URL, once on SQLite and once on the local PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'canary.db'}"
    else:
        yield from _fresh_postgres_database()


@pytest.fixture
def migrated_url(database_url: str) -> str:
    """A database URL with the schema applied."""
    engine = connect(database_url)
    migrate(engine)
    engine.dispose()
    return database_url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty database on the local PostgreSQL."""
    yield from _fresh_postgres_database()


@pytest.fixture
def sessions(migrated_url: str) -> Iterator[sessionmaker[Session]]:
    """A sessionmaker on a migrated database (SQLite and PostgreSQL)."""
    engine = connect(migrated_url)
    yield make_sessions(engine)
    engine.dispose()


@pytest.fixture
def traffic(live_stack: LiveStack) -> Iterator[LiveStack]:  # noqa: F811  (the fixture above)
    """Both arms at 100 req/s with 5% errors; the exporter is reset afterwards."""
    for arm in ("canary", "baseline"):
        live_stack.exporter.configure(arm, rate=100.0, error_ratio=0.05)
    yield live_stack
    live_stack.reset_traffic()


@pytest.fixture(scope="session")
def backfilled_scenarios(
    prometheus_bin: str,  # noqa: F811  (the fixture imported above)
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[PrometheusServer, dict[str, tuple[Scenario, Expected]]]]:
    """One Prometheus serving every scenario of tests/metrics_scenarios.py, backfilled
    with promtool, and each scenario with its expected per-round deltas."""
    writer = OpenMetricsWriter()
    scenarios = {}
    for name, build in SCENARIOS.items():
        scenario = build()
        scenarios[name] = (scenario, scenario.generate(writer))
    data_dir = tmp_path_factory.mktemp("backfilled") / "data"
    backfill(writer.text(), data_dir, expected_samples=writer.samples)
    server = PrometheusServer(data_dir).start()
    try:
        yield server, scenarios
    finally:
        server.stop()
