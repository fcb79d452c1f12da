"""The ``beampod`` command line."""

from __future__ import annotations

import sys

from beampod._lazy import without_pydantic_plugins
from beampod.cli._headstart import head_start_up


def main() -> None:
    without_pydantic_plugins()  # before the parser imports the config models
    # `up -d` may fork its supervisor before anything else loads (its parser included).
    head_start = head_start_up(sys.argv[1:])
    from beampod.cli._app import main as _main

    try:
        code = _main(head_start=head_start)
    finally:
        if head_start is not None:
            head_start.abandon_unless_taken()  # stopped before `up -d` took it over
    sys.exit(code)


def __getattr__(name: str) -> object:
    # The parser loads on first use (PEP 562): `up -d`'s head start comes first.
    if name == "build_parser":
        from beampod.cli._app import build_parser

        return build_parser
    raise AttributeError(f"module 'beampod.cli' has no attribute {name!r}")


__all__ = ["build_parser", "main"]
