"""Errors that end a command with a clear one-line message and a defined exit code.

Exit codes (README): 0 ok, 1 a judged verdict of fail, 2 usage or configuration
error, 3 runtime error (database, Prometheus, Kubernetes unreachable ...).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAIL_VERDICT = 1
EXIT_USAGE = 2
EXIT_RUNTIME = 3


class CanaryError(Exception):
    """Base of every expected error; `exit_code` is what the CLI exits with."""

    exit_code = EXIT_RUNTIME


class UsageError(CanaryError):
    """Bad arguments or input given by the user."""

    exit_code = EXIT_USAGE


class NotFoundError(UsageError):
    """An id or name that does not exist."""


class TrafficError(CanaryError):
    """Base of every error moving traffic (`canary.traffic`); exits 3 from the CLI."""


class DriftError(TrafficError):
    """The weights differ from our last recorded write: someone else moved traffic.

    Raised by the routers as `canary.traffic.base.Drift`, which names the weights and
    the write; the round pipeline catches this base without importing the edge.
    """
