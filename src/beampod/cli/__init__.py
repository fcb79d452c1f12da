"""The ``beampod`` command line."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from beampod._lazy import without_pydantic_plugins
from beampod.cli._headstart import head_start_up, wait_for_pod

if TYPE_CHECKING:
    from beampod.cli._app import build_parser


def main() -> None:
    without_pydantic_plugins()  # before the parser imports the config models
    # `up -d` with a head start forks its supervisor and waits for it without the parser
    # and the config models (cli/_headstart.py).
    head_started = head_start_up(sys.argv[1:])
    if head_started is not None:
        from beampod.cli._app import run_at_edge

        request, forked = head_started
        sys.exit(run_at_edge(lambda: wait_for_pod(request, forked), debug=request.debug))
    from beampod.cli._app import main as _main

    sys.exit(_main())


def __getattr__(name: str) -> object:
    # The parser loads on first use (PEP 562): `up -d`'s head start comes first.
    if name == "build_parser":
        from beampod.cli._app import build_parser

        return build_parser
    raise AttributeError(f"module 'beampod.cli' has no attribute {name!r}")


__all__ = ["build_parser", "main"]
