"""`canary traffic show/set` from the command line against the local API server,
reached through a generated kubeconfig file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kubeapi import ISTIO, KubeApiServer, virtual_service

from canary.cli import main

CONFIG = """
[kubernetes]
mode = "kubeconfig"
kubeconfig = "{kubeconfig}"
retries = 1

[[canary]]
name = "checkout"
namespace = "shop"

[canary.traffic]
virtual_service = "checkout"
route = "primary"
canary = {{ host = "checkout", subset = "canary" }}
stable = {{ host = "checkout", subset = "stable" }}

[canary.arms.canary]
match = {{ destination_workload = "checkout-canary" }}
[canary.arms.baseline]
match = {{ destination_workload = "checkout-primary" }}
"""


@pytest.fixture
def config_file(tmp_path: Path, kube_api: KubeApiServer, kubeconfig_file: Path) -> Path:
    kube_api.create(virtual_service())
    path = tmp_path / "canary.toml"
    path.write_text(CONFIG.format(kubeconfig=kubeconfig_file))
    return path


def run(config: Path, *args: str) -> int:
    return main(["--config", str(config), "traffic", *args])


def weights(api: KubeApiServer) -> list[int]:
    return [
        d["weight"] for d in api.virtual_service("shop", "checkout")["spec"]["http"][1]["route"]
    ]


def test_show_and_set_as_json(
    config_file: Path, kube_api: KubeApiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config_file, "show", "checkout", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["weights"] == {"canary": 10, "stable": 90}
    assert shown["route"] == "primary"
    assert shown["apiVersion"] == f"{ISTIO}/v1"
    assert shown["drift"] is False and shown["lastWrite"] is None

    assert run(config_file, "set", "checkout", "--weight", "25", "--json") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["before"] == {"canary": 10, "stable": 90}
    assert result["after"] == {"canary": 25, "stable": 75}
    assert result["changed"] is True
    assert result["record"]["by"].startswith("operator ")
    assert weights(kube_api) == [75, 25]

    assert run(config_file, "show", "checkout", "--json") == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["lastWrite"]["canary"] == 25 and shown["drift"] is False


def test_set_refuses_drift_unless_forced(
    config_file: Path, kube_api: KubeApiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config_file, "set", "checkout", "--weight", "20") == 0
    assert "canary weight 10 -> 20 (stable 80)" in capsys.readouterr().out

    def human(vs: dict) -> None:
        vs["spec"]["http"][1]["route"][0]["weight"] = 60
        vs["spec"]["http"][1]["route"][1]["weight"] = 40

    kube_api.modify(ISTIO, "virtualservices", "shop", "checkout", human)
    assert run(config_file, "show", "checkout") == 0
    out = capsys.readouterr().out
    assert "40%  checkout subset canary" in out and "drift        YES" in out

    assert run(config_file, "set", "checkout", "--weight", "50") == 3
    err = capsys.readouterr().err
    assert err.startswith("canary: error: drift on virtualservices.networking.istio.io/checkout")
    assert weights(kube_api) == [60, 40]

    assert run(config_file, "set", "checkout", "--weight", "50", "--force") == 0
    assert weights(kube_api) == [50, 50]


def test_set_dry_run_prints_the_patch_and_sends_nothing(
    config_file: Path, kube_api: KubeApiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config_file, "set", "checkout", "--weight", "30", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "dry run: would set canary weight 10 -> 30" in out
    assert '"path": "/spec/http/1/route/1/weight"' in out
    assert kube_api.writes() == [] and weights(kube_api) == [90, 10]


def test_clear_errors(
    config_file: Path, kube_api: KubeApiServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(config_file, "set", "checkout", "--weight", "120") == 2
    assert "canary weight must be within 0..100, got 120" in capsys.readouterr().err
    assert run(config_file, "show", "nope") == 2
    assert "no canary named 'nope'" in capsys.readouterr().err
    kube_api.deny("patch", "virtualservices")
    assert run(config_file, "set", "checkout", "--weight", "20") == 3
    assert "forbidden to patch virtualservices.networking.istio.io/checkout" in (
        capsys.readouterr().err
    )
    assert run(config_file, "show", "checkout", "--context", "prod") == 2
    assert "no context named 'prod'" in capsys.readouterr().err


def test_installed_command_through_kubeconfig_env(
    tmp_path: Path, kube_api: KubeApiServer, kubeconfig_file: Path
) -> None:
    """The real `canary` entry point in a subprocess, kubeconfig from $KUBECONFIG."""
    kube_api.create(virtual_service())
    config = tmp_path / "canary.toml"
    config.write_text(CONFIG.format(kubeconfig="").replace('kubeconfig = ""\n', ""))
    env = {**os.environ, "KUBECONFIG": str(kubeconfig_file), "CANARY_CONFIG": str(config)}
    done = subprocess.run(
        [sys.executable, "-m", "canary", "traffic", "set", "checkout", "--weight", "40"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "canary weight 10 -> 40 (stable 60)" in done.stdout
    assert weights(kube_api) == [60, 40]


def test_two_canaries_on_two_routes_set_and_show_without_drift(
    tmp_path: Path,
    kube_api: KubeApiServer,
    kubeconfig_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    vs = virtual_service()
    vs["spec"]["http"][0] = {
        "name": "search",
        "route": [
            {"destination": {"host": "search", "subset": "stable"}, "weight": 100},
            {"destination": {"host": "search", "subset": "canary"}, "weight": 0},
        ],
    }
    kube_api.create(vs)
    second = (
        CONFIG.split("[[canary]]")[1]
        .replace('name = "checkout"', 'name = "search"')
        .replace('route = "primary"', 'route = "search"')
        .replace('{ host = "checkout", subset', '{ host = "search", subset')
    )
    path = tmp_path / "canary.toml"
    path.write_text((CONFIG + "[[canary]]" + second).format(kubeconfig=kubeconfig_file))
    assert run(path, "set", "checkout", "--weight", "20") == 0
    assert run(path, "set", "search", "--weight", "30") == 0
    assert run(path, "set", "checkout", "--weight", "40") == 0
    capsys.readouterr()
    for name, weight in (("checkout", 40), ("search", 30)):
        assert run(path, "show", name) == 0
        out = capsys.readouterr().out
        assert "drift        no" in out and f"canary        {weight}%" in out


def test_show_prints_declared_proportional_weights(
    tmp_path: Path,
    kube_api: KubeApiServer,
    kubeconfig_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    vs = virtual_service()
    route = vs["spec"]["http"][1]["route"]
    route[0]["weight"], route[1]["weight"] = 3, 1  # Istio: 75/25
    kube_api.create(vs)
    path = tmp_path / "canary.toml"
    path.write_text(CONFIG.format(kubeconfig=kubeconfig_file))
    assert run(path, "show", "checkout") == 0
    out = capsys.readouterr().out
    assert "canary        25%" in out and "stable        75%" in out
    assert "declared     canary=1 stable=3" in out
    assert run(path, "set", "checkout", "--weight", "30") == 0
    assert weights(kube_api) == [70, 30]
