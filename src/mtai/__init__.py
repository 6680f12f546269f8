"""mtai: a multi-tenant AI platform."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mtai")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"
