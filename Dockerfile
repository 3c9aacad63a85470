# canary: the daemon, the HTTP API (Argo Rollouts web metric provider) and the CLI.
#
#   docker build -t canary:0.1.0 .
#   docker run --rm --read-only --tmpfs /tmp -v canary-data:/var/lib/canary \
#     -p 8080:8080 -e CANARY_API_TOKEN=change-me canary:0.1.0
#
# Two stages: `build` turns the project and every dependency into wheels; the runtime
# stage installs those wheels (bind-mounted from `build`, so they never land in a layer)
# into a slim Python with no compiler and no pip cache. Needs BuildKit (the default
# builder since Docker 23) for `RUN --mount`.
#
# The process runs as UID/GID 10001 with a read-only root filesystem: it writes only
# under /var/lib/canary (CANARY_DATA_DIR: the SQLite database, reports) and /tmp.

FROM python:3.11.13-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY canary ./canary
COPY queries ./queries
COPY migrations ./migrations
# The project's wheel plus wheels of all its dependencies, PostgreSQL driver included.
RUN pip wheel --wheel-dir /wheels ".[postgres]"

FROM python:3.11.13-slim-bookworm AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="canary" \
      org.opencontainers.image.description="Progressive-delivery canary analysis for Istio meshes: anytime-valid statistics against a concurrent baseline, safe traffic shifting, every decision stored." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.13-slim-bookworm"

# tini as PID 1: the kernel gives PID 1 no default signal actions, so a SIGTERM that
# arrives before the daemon has installed its own handler (while it imports SciPy or
# migrates the database) would be ignored until the kill timeout. tini forwards
# SIGTERM/SIGINT to canary, where the default action or the daemon's handler applies,
# and reaps zombies. The version is Debian bookworm's.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --gid 10001 canary \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin canary \
 && mkdir -p /var/lib/canary /etc/canary \
 && chown 10001:10001 /var/lib/canary \
 && chmod 0750 /var/lib/canary

RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels "canary[postgres]==${VERSION}" \
 && canary --help > /dev/null

# The image's own configuration: listen on every interface (the embedded default is
# 127.0.0.1) with SQLite under CANARY_DATA_DIR. Kubernetes mounts its ConfigMap here.
COPY deploy/container/config.toml /etc/canary/config.toml

ENV CANARY_CONFIG=/etc/canary/config.toml \
    CANARY_DATA_DIR=/var/lib/canary \
    HOME=/nonexistent \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10001:10001
WORKDIR /var/lib/canary
VOLUME ["/var/lib/canary"]
EXPOSE 8080

# Liveness of the HTTP API; slim has no curl, so the standard library does the request.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "canary"]
CMD ["run"]
