"""canary: progressive-delivery canary analysis (distribution `canary-verdict`)."""

from importlib.metadata import PackageNotFoundError, version

DISTRIBUTION = "canary-verdict"

try:  # the one source of the version: the installed distribution's metadata
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["DISTRIBUTION", "__version__"]
