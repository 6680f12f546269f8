"""mtai: a multi-tenant AI platform."""

import functools


def __getattr__(name: str) -> str:
    # `__version__` on first use: importlib.metadata takes tens of milliseconds to import, which
    # every document's parse process (mtai.rag.parsing.child) would pay without needing it.
    if name == "__version__":
        return _version()
    raise AttributeError(f"module 'mtai' has no attribute {name!r}")


@functools.cache
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mtai")
    except PackageNotFoundError:  # running from a source tree without an install
        return "0.0.0"
