"""The data path seen from the command line: runs, tail, dead letters."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Filled in by the data-path work (runs, tail, dlq)."""
