"""The CLI as a user runs it: help, config check, db upgrade, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]


def canary(*args: str, cwd: Path | None = None, env: dict | None = None):  # type: ignore[no-untyped-def]
    return subprocess.run(
        [sys.executable, "-m", "canary", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_help_lists_every_command() -> None:
    result = canary("--help")
    assert result.returncode == 0
    for command in ("run", "serve", "judge", "analyze", "replay", "history", "show", "db"):
        assert f"    {command} " in result.stdout


def test_config_check_ok_and_broken(tmp_path: Path) -> None:
    # The example points to a webhook URL variable this machine does not set.
    example = str(ROOT / "config.example.toml")
    assert canary("config", "check", "--offline", example).returncode == 0
    broken = tmp_path / "broken.toml"
    broken.write_text(
        '[prometheus]\nurll = "x"\n[[canary]]\nname = "a"\nnamespace = "b"\n'
        "steps = [{weight = 0, duration = '1m'}]\n"
    )
    result = canary("config", "check", str(broken))
    assert result.returncode == 2
    assert "prometheus.urll: unknown key" in result.stdout
    assert "canary[0].steps[0].weight:" in result.stdout
    assert "canary[0].traffic: required key is missing" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_db_upgrade_creates_the_default_sqlite_schema(tmp_path: Path) -> None:
    env = {"CANARY_DATA_DIR": str(tmp_path / "data")}
    result = canary("db", "upgrade", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'data' / 'canary.db'}")
    assert {"analyses", "rounds", "observations", "actions", "leases"} <= set(
        sa.inspect(engine).get_table_names()
    )
    status = canary("db", "status", "--json", env=env)
    assert '"up_to_date": true' in status.stdout


@pytest.mark.postgres
def test_db_upgrade_on_postgres(postgres_url: str) -> None:
    result = canary("--database-url", postgres_url, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    tables = sa.inspect(sa.create_engine(postgres_url)).get_table_names()
    assert {"analyses", "rounds", "observations", "actions", "leases"} <= set(tables)


def test_unreachable_database_names_host_and_port() -> None:
    result = canary("--database-url", "postgresql+psycopg://u@127.0.0.1:1/x", "db", "status")
    assert result.returncode == 3
    assert "127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr


def test_malformed_config_file_exits_2_with_position(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server\nlisten=1\n")
    result = canary("--config", str(bad), "db", "status")
    assert result.returncode == 2
    assert "line 1" in result.stderr
