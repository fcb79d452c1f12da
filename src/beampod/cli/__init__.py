"""The ``beampod`` command line."""

import sys

from beampod._lazy import without_pydantic_plugins
from beampod.cli._app import build_parser
from beampod.cli._app import main as _main


def main() -> None:
    without_pydantic_plugins()  # before the parser imports the config models
    sys.exit(_main())


__all__ = ["build_parser", "main"]
