"""Kubernetes access: kubeconfig contexts, TLS, client certificates, in-cluster
service accounts with rotated tokens, exec plugins, and Leases."""

from __future__ import annotations

import base64
import os
import stat
import sys
from pathlib import Path

import pytest
from kubeapi import KubeApiServer, self_signed, virtual_service, write_kubeconfig

from canary.config import KubernetesConfig
from canary.errors import KubeApiError, KubeconfigError, ResourceNotFound, Unauthorized
from canary.traffic import kube as kube_module
from canary.traffic.kube import Connection, KubeClient, in_cluster_connection, kubeconfig_connection

VS_PATH = "/apis/networking.istio.io/v1/namespaces/shop/virtualservices/checkout"


async def read_vs(client: KubeClient) -> dict:
    return await client.request("GET", VS_PATH, verb="get", resource="vs")


# --------------------------------------------------------------------------- kubeconfig


async def test_current_and_named_contexts(tmp_path: Path) -> None:
    with KubeApiServer(tokens={"a"}) as one, KubeApiServer(tokens={"a"}) as two:
        one.create(virtual_service())
        two.create(virtual_service(name="other"))
        path = write_kubeconfig(
            tmp_path / "config", one.url, token="a", namespace="shop", other_contexts={"b": two.url}
        )
        current = kubeconfig_connection(str(path))
        assert current.server == one.url and current.namespace == "shop"
        named = kubeconfig_connection(str(path), "b")
        assert named.server == two.url and named.namespace == "default"
        async with KubeClient(named) as client:
            with pytest.raises(ResourceNotFound):
                await read_vs(client)  # 'checkout' only lives behind the current context
        async with KubeClient(current) as client:
            assert (await read_vs(client))["metadata"]["name"] == "checkout"


def test_kubeconfig_env_var_files_are_merged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = write_kubeconfig(tmp_path / "first", "http://127.0.0.1:1", token="x", context="one")
    second = write_kubeconfig(tmp_path / "second", "http://127.0.0.1:2", token="y", context="two")
    monkeypatch.setenv("KUBECONFIG", f"{first}{os.pathsep}{second}")
    assert kubeconfig_connection().server == "http://127.0.0.1:1"  # the first file's current
    assert kubeconfig_connection(context="two").server == "http://127.0.0.1:2"


def test_kubeconfig_mistakes_are_named(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "config", "http://127.0.0.1:1", token="x")
    with pytest.raises(KubeconfigError, match=r"no context named 'prod' \(known: test\)"):
        kubeconfig_connection(str(path), "prod")
    with pytest.raises(KubeconfigError, match="no such file"):
        kubeconfig_connection(str(tmp_path / "missing"))
    (tmp_path / "broken").write_text("clusters: [unclosed\n")
    with pytest.raises(KubeconfigError, match="cannot read kubeconfig"):
        kubeconfig_connection(str(tmp_path / "broken"))
    basic = write_kubeconfig(
        tmp_path / "basic", "http://127.0.0.1:1", extra_user={"username": "u", "password": "p"}
    )
    with pytest.raises(KubeconfigError, match="basic auth"):
        kubeconfig_connection(str(basic))


async def test_tls_with_ca_data_token_file_and_relative_paths(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "server")
    with KubeApiServer(tokens={"from-file"}, tls=(cert, key)) as api:
        api.create(virtual_service())
        (tmp_path / "token").write_text("from-file\n")
        ca_data = base64.b64encode(Path(cert).read_bytes()).decode()
        path = write_kubeconfig(
            tmp_path / "config",
            api.url,
            extra_cluster={"certificate-authority-data": ca_data},
            extra_user={"tokenFile": "token"},  # relative to the kubeconfig's directory
        )
        async with KubeClient(kubeconfig_connection(str(path))) as client:
            assert (await read_vs(client))["metadata"]["name"] == "checkout"

        # without the CA the server is not trusted; insecure-skip-tls-verify opts out
        plain = write_kubeconfig(tmp_path / "plain", api.url, token="from-file")
        async with KubeClient(kubeconfig_connection(str(plain)), retries=0) as client:
            with pytest.raises(KubeApiError, match="CERTIFICATE_VERIFY_FAILED"):
                await read_vs(client)
        insecure = write_kubeconfig(
            tmp_path / "insecure",
            api.url,
            token="from-file",
            extra_cluster={"insecure-skip-tls-verify": True},
        )
        async with KubeClient(kubeconfig_connection(str(insecure))) as client:
            assert (await read_vs(client))["metadata"]["name"] == "checkout"


@pytest.mark.parametrize("as_data", [True, False])
async def test_client_certificate_authentication(tmp_path: Path, as_data: bool) -> None:
    server_cert, server_key = self_signed(tmp_path, "server")
    client_cert, client_key = self_signed(tmp_path, "client", cn="canary")
    with KubeApiServer(tokens=set(), tls=(server_cert, server_key), client_ca=client_cert) as api:
        api.create(virtual_service())
        if as_data:
            user = {
                "client-certificate-data": base64.b64encode(
                    Path(client_cert).read_bytes()
                ).decode(),
                "client-key-data": base64.b64encode(Path(client_key).read_bytes()).decode(),
            }
        else:
            user = {"client-certificate": client_cert, "client-key": client_key}
        path = write_kubeconfig(
            tmp_path / "config",
            api.url,
            extra_cluster={"certificate-authority": server_cert},
            extra_user=user,
        )
        async with KubeClient(kubeconfig_connection(str(path))) as client:
            assert (await read_vs(client))["metadata"]["name"] == "checkout"
        # the same server refuses a client without a certificate or token
        anonymous = write_kubeconfig(
            tmp_path / "anon", api.url, extra_cluster={"certificate-authority": server_cert}
        )
        async with KubeClient(kubeconfig_connection(str(anonymous))) as client:
            with pytest.raises(Unauthorized, match="unauthorized to get vs"):
                await read_vs(client)


async def test_exec_credential_plugin(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, os\n"
        "assert json.loads(os.environ['KUBERNETES_EXEC_INFO'])['kind'] == 'ExecCredential'\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1',"
        " 'kind': 'ExecCredential', 'status': {'token': os.environ['TOKEN']}}))\n"
    )
    with KubeApiServer(tokens={"exec-token"}) as api:
        api.create(virtual_service())
        exec_config = {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": sys.executable,
            "args": [str(plugin)],
            "env": [{"name": "TOKEN", "value": "exec-token"}],
        }
        path = write_kubeconfig(tmp_path / "config", api.url, extra_user={"exec": exec_config})
        async with KubeClient(kubeconfig_connection(str(path))) as client:
            assert (await read_vs(client))["metadata"]["name"] == "checkout"
        assert api.requests[-1].token == "exec-token"


async def test_wrong_token_is_unauthorized_naming_verb(kube_api: KubeApiServer) -> None:
    async with KubeClient(Connection(server=kube_api.url, token="wrong")) as client:
        with pytest.raises(Unauthorized, match="unauthorized to get vs"):
            await read_vs(client)


# --------------------------------------------------------------------------- in-cluster


def service_account(directory: Path, token: str, ca: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(token)
    (directory / "namespace").write_text("canary-system")
    if ca:
        (directory / "ca.crt").write_bytes(Path(ca).read_bytes())
    return directory


async def test_in_cluster_over_tls_and_token_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed(tmp_path, "server")
    with KubeApiServer(tokens={"token-1"}, tls=(cert, key)) as api:
        api.create(virtual_service())
        sa = service_account(tmp_path / "sa", "token-1", ca=cert)
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(api.port))
        monkeypatch.setattr(kube_module, "SERVICEACCOUNT_DIR", str(sa))
        connection = in_cluster_connection()
        assert connection.server == f"https://127.0.0.1:{api.port}"
        assert connection.namespace == "canary-system"

        # auto mode picks in-cluster when the environment and service account are there
        async with KubeClient.from_config(KubernetesConfig(mode="auto")) as client:
            await read_vs(client)
            assert api.requests[-1].token == "token-1"

            # the kubelet rotates the projected token: the next request uses the new one
            api.tokens = {"token-2"}
            (sa / "token").write_text("token-2")
            await read_vs(client)
            assert api.requests[-1].token == "token-2"

            # rotated with an unchanged stamp (same size, same mtime): a 401 re-reads it
            stamp = os.stat(sa / "token")
            api.tokens = {"token-3"}
            (sa / "token").write_text("token-3")
            os.utime(sa / "token", ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
            await read_vs(client)
            assert [r.token for r in api.requests[-2:]] == ["token-2", "token-3"]


def test_in_cluster_needs_its_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeconfigError, match="KUBERNETES_SERVICE_HOST is not set"):
        in_cluster_connection(str(tmp_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    with pytest.raises(KubeconfigError, match="no service-account token"):
        in_cluster_connection(str(tmp_path))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    service_account(tmp_path, "t")
    assert in_cluster_connection(str(tmp_path)).server == "https://[fd00::1]:443"


def test_memory_mode_has_no_client() -> None:
    with pytest.raises(KubeconfigError, match="memory"):
        KubeClient.from_config(KubernetesConfig(mode="memory"))


def test_client_key_data_is_written_privately_and_removed(tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path, "client")
    seen: list[tuple[str, int]] = []
    original = kube_module._write_private

    def spy(path: str, data: bytes) -> None:
        original(path, data)
        seen.append((path, stat.S_IMODE(os.stat(path).st_mode)))

    kube_module._write_private = spy  # type: ignore[assignment]
    try:
        Connection(
            server="https://127.0.0.1:1",
            cert_data=Path(cert).read_bytes(),
            key_data=Path(key).read_bytes(),
        ).ssl_context()
    finally:
        kube_module._write_private = original  # type: ignore[assignment]
    assert [mode for _, mode in seen] == [0o600, 0o600]
    assert not any(os.path.exists(path) for path, _ in seen)


async def test_transport_errors_are_retried_then_typed() -> None:
    # a port nobody listens on
    with KubeApiServer() as api:
        url = api.url
    async with KubeClient(Connection(server=url), retries=2, backoff=0.01) as client:
        with pytest.raises(
            KubeApiError, match=r"cannot get vs: no answer after 3 attempts: Connect"
        ):
            await read_vs(client)
