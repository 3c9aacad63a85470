"""Schemathesis against the OpenAPI document of the running server: no 5xx, ever.

Bounded: `MAX_EXAMPLES` generated requests per operation (env
CANARY_SCHEMATHESIS_EXAMPLES raises it for a longer local run).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import schemathesis
from api_fixtures import TOKEN, make_config, migrated_sqlite, serve
from api_harness import ApiServer
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

MAX_EXAMPLES = int(os.environ.get("CANARY_SCHEMATHESIS_EXAMPLES", "25"))


@pytest.fixture(scope="module")
def api_server(backfilled, tmp_path_factory) -> Iterator[ApiServer]:  # type: ignore[no-untyped-def]
    url = migrated_sqlite(tmp_path_factory.mktemp("schemathesis"))
    server = serve(url, make_config(backfilled.prometheus.url))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api_schema(api_server: ApiServer):  # type: ignore[no-untyped-def]
    # The document is behind the token like the API (`[server] public_docs` is off).
    return schemathesis.openapi.from_url(
        f"{api_server.url}/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"}
    )


def _check(case, server: ApiServer) -> None:  # type: ignore[no-untyped-def]
    headers = dict(case.headers or {})
    headers.setdefault("Authorization", f"Bearer {TOKEN}")
    response = case.call(base_url=server.url, headers=headers)
    case.validate_response(response, checks=[not_a_server_error])
    if response.status_code >= 400 and case.path != "/metrics":
        headers = {k.lower(): v for k, v in response.headers.items()}
        content_type = headers["content-type"]
        content_type = content_type[0] if isinstance(content_type, list) else content_type
        assert content_type.startswith("application/json"), (case.path, content_type)
        assert "error" in response.json()


def test_no_server_errors(api_schema, api_server: ApiServer) -> None:  # type: ignore[no-untyped-def]
    """Every operation, `MAX_EXAMPLES` generated requests each (hypothesis strategies
    from schemathesis, driven here rather than by its pytest plugin, which does not
    follow pytest's private API changes)."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case) -> None:  # type: ignore[no-untyped-def]
            _check(case, api_server)

        check()
