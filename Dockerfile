# canary: the daemon, the HTTP API (Argo Rollouts web metric provider) and the CLI.
#
#   scripts/build-image                      # buildah, no Docker engine (docs/deploy.md)
#   docker build -t canary .                 # or Docker 23+ (BuildKit)
#   docker run --rm --read-only --tmpfs /tmp -v canary-data:/var/lib/canary \
#     -p 8080:8080 -e CANARY_API_TOKEN=change-me canary
#
# The base is Debian's own: `debian:trixie-slim` (pin a digest with
# --build-arg BASE_IMAGE=debian:trixie-slim@sha256:...), which scripts/build-image
# can also make from Debian packages with mmdebstrap when no registry is reachable.
# Debian's python3 runs the application from a virtual environment in /opt/canary.
# NumPy and SciPy are Debian's too (the environment sees them through
# --system-site-packages): they share Debian's reference BLAS/LAPACK, where the PyPI
# wheels each bring their own OpenBLAS (about 50 MB together), and Debian's security
# updates reach them with the interpreter's. Their test suites are never unpacked.
#
# Two stages: `build` builds the project's wheel and installs it with every other
# dependency into the virtual environment (pip's cache is a build cache mount, never a
# layer); the runtime stage copies that environment, without pip, onto a base with the
# same Debian packages and tini: no compiler, no pip, no cache. Needs BuildKit
# (Docker 23+) or buildah for `RUN --mount`.
#
# The process runs as UID/GID 10001 with a read-only root filesystem: it writes only
# under /var/lib/canary (CANARY_DATA_DIR: the SQLite database, reports) and /tmp;
# /var/tmp is a link to /tmp and no other directory is writable by 10001.
#
# The image's version label is the package's own version: scripts/build-image reads it
# from the installed distribution's metadata and sets it after the build (a Dockerfile
# cannot compute a label), so nothing here names the distribution or its version.

ARG BASE_IMAGE=debian:trixie-slim

FROM ${BASE_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# Debian trixie's python3 (3.13), NumPy and SciPy, the versions the runtime stage installs;
# python3-venv brings ensurepip for the environment, binutils `strip`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3=3.13.5-1 python3-venv=3.13.5-1 \
      python3-numpy=1:2.2.4+ds-1 python3-scipy=1.15.3-1 binutils=2.44-3 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY canary ./canary
COPY queries ./queries
COPY migrations ./migrations
# The wheel of this source tree (whatever its distribution name and version), installed
# with its PostgreSQL extra into an environment that sees Debian's NumPy and SciPy, which
# meet the project's pins, so pip installs neither (checked: a copy from PyPI would
# bring its own OpenBLAS back); then pip and the dependencies' own test suites leave the
# environment, and the extension modules lose their symbol tables (as Debian strips its
# own; the libraries the wheels bundle under *.libs are stripped already). Behind a TLS-intercepting proxy, pass its CA bundle as the build secret
# `ca-certificates` (scripts/build-image passes the machine's own bundle); it never
# lands in a layer.
RUN --mount=type=cache,target=/root/.cache/pip \
    --mount=type=secret,id=ca-certificates,target=/run/secrets/ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then export PIP_CERT=/run/secrets/ca-certificates; fi \
 && python3 -m venv --system-site-packages /opt/canary \
 && /opt/canary/bin/pip wheel --no-deps --wheel-dir /dist . \
 && set -- /dist/*.whl \
 && test "$#" = 1 \
 && /opt/canary/bin/pip install "$1[postgres]" \
 && for copy in /opt/canary/lib/python3*/site-packages/numpy /opt/canary/lib/python3*/site-packages/scipy; do \
      if [ -e "$copy" ]; then echo "pip installed $copy: Debian's no longer meets the pins" >&2; exit 1; fi; \
    done \
 && /opt/canary/bin/pip uninstall --yes pip \
 && find /opt/canary/lib -depth -type d -name tests -path '*/site-packages/*/tests' \
      -exec rm -rf {} + \
 && find /opt/canary/lib -name '*.so' ! -path '*.libs/*' -exec strip --strip-unneeded {} +

FROM ${BASE_IMAGE} AS runtime
ARG BASE_IMAGE
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="canary" \
      org.opencontainers.image.description="Progressive-delivery canary analysis for Istio meshes: anytime-valid statistics against a concurrent baseline, safe traffic shifting, every decision stored." \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# Debian's python3, NumPy and SciPy (those the environment was built against) and tini
# as PID 1: the kernel gives PID 1 no default signal actions, so a SIGTERM that arrives
# before the daemon has installed its own handler (while it imports SciPy or migrates
# the database) would be ignored until the kill timeout. tini forwards SIGTERM/SIGINT
# to canary, where the default action or the daemon's handler applies, and reaps
# zombies. Versions are Debian trixie's. The Python packages' test suites (a third of
# NumPy and SciPy) go in the layer that installs them (dpkg cannot leave them out: the
# packages byte-compile them when configured), all but the one test module that
# numpy.testing, which SciPy imports, reads at import time; so do the SciPy subpackages
# that neither canary nor the ones it imports ever import (tests/test_image.py runs
# every judge in the image).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3=3.13.5-1 tini=0.19.0-3+b8 \
      python3-numpy=1:2.2.4+ds-1 python3-scipy=1.15.3-1 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log \
 && find /usr/lib/python3/dist-packages -path '*/tests/*' -type f \
      ! -path '*/numpy/_core/tests/_natype.py' ! -path '*/numpy/_core/tests/__pycache__/_natype.*' \
      -delete \
 && find /usr/lib/python3/dist-packages -path '*/tests*' -type d -empty -delete \
 && for unused in cluster datasets differentiate fftpack io misc odr signal; do \
      rm -r "/usr/lib/python3/dist-packages/scipy/$unused"; \
    done \
 && groupadd --gid 10001 canary \
 && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin canary \
 && mkdir -p /var/lib/canary /etc/canary \
 && chown 10001:10001 /var/lib/canary \
 && chmod 0750 /var/lib/canary \
 && rm -rf /var/tmp && ln -s /tmp /var/tmp \
 && chmod 0755 /run/lock

COPY --from=build /opt/canary /opt/canary

# The image's own configuration: listen on every interface (the embedded default is
# 127.0.0.1) with SQLite under CANARY_DATA_DIR. Kubernetes mounts its ConfigMap here.
COPY deploy/container/config.toml /etc/canary/config.toml

ENV PATH=/opt/canary/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CANARY_CONFIG=/etc/canary/config.toml \
    CANARY_DATA_DIR=/var/lib/canary \
    HOME=/nonexistent \
    TMPDIR=/tmp \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN canary --help > /dev/null

USER 10001:10001
WORKDIR /var/lib/canary
VOLUME ["/var/lib/canary"]
EXPOSE 8080

# Liveness of the HTTP API; the base has no curl, so the standard library does the
# request (`python` is the virtual environment's, first on PATH).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]

STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "canary"]
CMD ["run"]
