"""``python -m beampod.deploy prepare|wait --home DIR SERVICE`` and ``python -m
beampod.deploy rotate-logs --home DIR``: run by rendered units."""

from __future__ import annotations

import argparse
import sys

from beampod.config import PodHome
from beampod.deploy._hostside import prepare, rotate_logs, wait
from beampod.errors import BeampodError


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m beampod.deploy")
    parser.add_argument("action", choices=["prepare", "wait", "rotate-logs"])
    parser.add_argument("--home", required=True)
    parser.add_argument("service", nargs="?", help="the service (prepare, wait)")
    args = parser.parse_intermixed_args()
    if args.action != "rotate-logs" and not args.service:
        parser.error(f"{args.action} needs the service's name")
    try:
        home = PodHome.resolve(args.home)
        if args.action == "rotate-logs":
            failed = rotate_logs(home, print)
            for problem in failed:  # the next round tries again
                print(f"beampod-deploy: error: {problem}", file=sys.stderr)
            return 1 if failed else 0
        (prepare if args.action == "prepare" else wait)(home, args.service)
    except BeampodError as exc:
        print(f"beampod-deploy: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
