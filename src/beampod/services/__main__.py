"""Entry point of the detached supervisor: ``python -m beampod.services --home DIR``."""

from __future__ import annotations

import argparse
import sys
import time

from beampod._lazy import defer_imports
from beampod.services._defer import SUPERVISOR_DEFERRED_IMPORTS


def main() -> int:
    defer_imports(SUPERVISOR_DEFERRED_IMPORTS)  # before anything imports nats-py
    from beampod.config import PodHome
    from beampod.errors import BeampodError
    from beampod.services._control import run_supervisor

    parser = argparse.ArgumentParser(prog="python -m beampod.services")
    parser.add_argument("--home", required=True)
    args = parser.parse_args()

    def progress(msg: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)

    try:
        return run_supervisor(PodHome.resolve(args.home), progress)
    except BeampodError as exc:
        progress(f"error: {exc}")
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
