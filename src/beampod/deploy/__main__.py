"""``python -m beampod.deploy prepare|wait --home DIR SERVICE``: run by rendered units."""

from __future__ import annotations

import argparse
import sys

from beampod.config import PodHome
from beampod.deploy._hostside import prepare, wait
from beampod.errors import BeampodError


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m beampod.deploy")
    parser.add_argument("action", choices=["prepare", "wait"])
    parser.add_argument("--home", required=True)
    parser.add_argument("service")
    args = parser.parse_args()
    try:
        (prepare if args.action == "prepare" else wait)(PodHome.resolve(args.home), args.service)
    except BeampodError as exc:
        print(f"beampod-deploy: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
