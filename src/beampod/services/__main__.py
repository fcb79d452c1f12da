"""Entry point of the detached supervisor: ``python -m beampod.services --home DIR``
(``beampod up -d`` forks one instead where it can: ``_detach.py``)."""

from __future__ import annotations

import argparse
import sys

from beampod._lazy import defer_imports
from beampod.services._defer import SUPERVISOR_DEFERRED_IMPORTS


def main() -> int:
    defer_imports(SUPERVISOR_DEFERRED_IMPORTS)  # before anything imports nats-py
    from beampod.config import PodHome
    from beampod.services._control import supervise_detached

    parser = argparse.ArgumentParser(prog="python -m beampod.services")
    parser.add_argument("--home", required=True)
    args = parser.parse_args()
    return supervise_detached(PodHome.resolve(args.home))


if __name__ == "__main__":
    sys.exit(main())
