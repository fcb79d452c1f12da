"""beampod: a whole Bluesky instrument pod, one command, no containers."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    # No `typing` import here: `up -d`'s head start (beampod._headstart) spawns Tiled
    # before it loads.
    # The version is read on first use (PEP 562), not on import: every process of a pod
    # imports ``beampod``, and importlib.metadata (with the email package it parses
    # metadata with) plus the search through sys.path for the distribution cost each
    # of them ~0.05-0.15 CPU-s while the pod starts (docs/benchmarks.md, 2026-12-03).
    if name != "__version__":
        raise AttributeError(f"module 'beampod' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        value = version("beampod")
    except PackageNotFoundError:  # running from a source tree without install
        value = "0+unknown"
    globals()["__version__"] = value
    return value


__all__ = ["__version__"]
