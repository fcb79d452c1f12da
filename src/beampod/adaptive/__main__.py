"""The agent service: ``python -m beampod.adaptive [--instrument NAME ...]``.

The pod home comes from ``BEAMPOD_HOME`` (set by the supervisor) or ``--home``;
credentials are read from its 0600 secrets file, never from argv.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from beampod.config import PodHome, load_pod
from beampod.errors import BeampodError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m beampod.adaptive")
    parser.add_argument("--home", default=None, help="pod home (default: $BEAMPOD_HOME)")
    parser.add_argument(
        "--instrument",
        action="append",
        default=None,
        help="serve only this instrument (repeatable; default: all)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stdout,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from beampod.adaptive._service import serve

    try:
        pod = load_pod(PodHome.resolve(args.home))
        asyncio.run(serve(pod, args.instrument))
    except BeampodError as exc:
        print(f"agent: error: {exc}", flush=True)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
