"""The ``beampod`` command line."""

import sys

from beampod.cli._app import build_parser
from beampod.cli._app import main as _main


def main() -> None:
    sys.exit(_main())


__all__ = ["build_parser", "main"]
