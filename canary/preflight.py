"""What a valid configuration still needs from this machine before canary can run.

`parse_config` checks the file alone. This checks what the file points to, here and
now: secret files exist, are UTF-8 and not world-writable; environment variables the
file chooses (other than the optional defaults) are set; the CA file, the templates
directory and the kubeconfig exist; every metric's query template exists; the
database URL (wherever it comes from) has a scheme canary can use. `canary config
check`, `canary run` and `canary serve` all call `check` and refuse to start (exit 2)
with one line per problem, each naming its key.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from canary.config import Config, database_scheme_problem
from canary.errors import ConfigError

__all__ = ["check", "problems"]

Problem = tuple[str, str]


def _file(path: str, key: str, *, secret: bool = False) -> list[Problem]:
    """A readable UTF-8 file; a secret must not be writable by everyone."""
    target = Path(path).expanduser()
    try:
        info = target.stat()
        data = target.read_bytes()
    except OSError as exc:
        return [(key, f"cannot read {path}: {exc.strerror}")]
    if not stat.S_ISREG(info.st_mode):
        return [(key, f"{path} is not a file")]
    found = []
    if secret and info.st_mode & stat.S_IWOTH:
        found.append((key, f"{path} is world-writable; anyone could replace the secret"))
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        found.append((key, f"{path} is not UTF-8 text (byte {exc.start})"))
    return found


def _env(name: str, key: str) -> list[Problem]:
    if not os.environ.get(name):
        return [(key, f"environment variable {name} is not set (or empty)")]
    return []


def _chosen(model: object, field: str) -> bool:
    """Whether the file names its own variable in `field` (not the default name).

    The default names (`CANARY_DATABASE_URL`, `CANARY_API_TOKEN`) are optional by
    design — SQLite, or an API without tokens, when unset — also when the file spells
    them out; a variable of the file's own choosing is there to be used.
    """
    default = type(model).model_fields[field].default  # type: ignore[attr-defined]
    return getattr(model, field) != default


def problems(config: Config, database_url: str | None = None) -> list[Problem]:
    """Every problem found, as (key path, message); `database_url` overrides the file's."""
    found: list[Problem] = []
    prometheus = config.prometheus
    if prometheus.bearer_token_file:
        found += _file(prometheus.bearer_token_file, "prometheus.bearer_token_file", secret=True)
    if prometheus.bearer_token_env:
        found += _env(prometheus.bearer_token_env, "prometheus.bearer_token_env")
    auth = prometheus.basic_auth
    if auth is not None and auth.password_file:
        found += _file(auth.password_file, "prometheus.basic_auth.password_file", secret=True)
    if auth is not None and auth.password_env:
        found += _env(auth.password_env, "prometheus.basic_auth.password_env")
    if prometheus.ca_file:
        found += _file(prometheus.ca_file, "prometheus.ca_file")
    found += _templates(config)

    database = config.database
    if database.url_file:
        found += _file(database.url_file, "database.url_file", secret=True)
    if database.url_env and _chosen(database, "url_env") and database_url is None:
        found += _env(database.url_env, "database.url_env")
    if not found:
        try:
            url = database_url or database.resolved_url()
        except ConfigError as exc:
            found += exc.problems
        else:
            if problem := database_scheme_problem(url):
                found.append(("--database-url" if database_url else "database.url", problem))

    server = config.server
    if server.api_token_file:
        found += _file(server.api_token_file, "server.api_token_file", secret=True)
    if server.api_token_env and _chosen(server, "api_token_env"):
        found += _env(server.api_token_env, "server.api_token_env")

    kubernetes = config.kubernetes
    if kubernetes.mode != "memory":
        if kubernetes.kubeconfig:
            found += _file(kubernetes.kubeconfig, "kubernetes.kubeconfig", secret=True)
        elif kubernetes.mode == "kubeconfig":
            paths = os.environ.get("KUBECONFIG", "").split(os.pathsep)
            paths = [p for p in paths if p] or [str(Path.home() / ".kube" / "config")]
            if not any(Path(p).expanduser().is_file() for p in paths):
                found.append(
                    ("kubernetes.kubeconfig", f"no kubeconfig at {os.pathsep.join(paths)}")
                )

    for index, hook in enumerate(config.webhook):
        if hook.url_file:
            found += _file(hook.url_file, f"webhook[{index}].url_file", secret=True)
        if hook.url_env:
            found += _env(hook.url_env, f"webhook[{index}].url_env")
    return found


def _templates(config: Config) -> list[Problem]:
    """The templates directory loads, and every metric's template is in it."""
    from canary.errors import TemplateError
    from canary.metrics.queries import load_templates, template_for

    directory = config.prometheus.templates_dir
    if directory and not Path(directory).expanduser().is_dir():
        return [("prometheus.templates_dir", f"{directory} is not a directory")]
    try:
        templates = load_templates(directory)
    except TemplateError as exc:
        message = str(exc).removeprefix("prometheus.templates_dir: ")
        return [("prometheus.templates_dir", message)]
    found = []
    for index, canary in enumerate(config.canary):
        for number, metric in enumerate(canary.metrics):
            try:
                templates.get(template_for(metric))
            except TemplateError as exc:
                found.append((f"canary[{index}].metrics[{number}].query", str(exc)))
    return found


def check(config: Config, source: str = "configuration", database_url: str | None = None) -> None:
    """Raise ConfigError (exit 2, one line per problem with its key) if anything is missing."""
    found = problems(config, database_url)
    if found:
        raise ConfigError(found, source)
