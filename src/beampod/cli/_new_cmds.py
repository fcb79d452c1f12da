"""``beampod new facility DIR --instruments N [--prefix bl]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(nsub: argparse._SubParsersAction) -> None:
    q = nsub.add_parser(
        "facility",
        help="a git-ready facility repository: one config for many instruments, a facility "
        "package and the instrument package",
    )
    q.add_argument("dir", help="directory to create (absent or empty)")
    q.add_argument(
        "--instruments", type=int, required=True, metavar="N", help="number of instruments"
    )
    q.add_argument(
        "--prefix", default="bl", help="instrument names are PREFIX01 … PREFIXNN (default: bl)"
    )
    q.set_defaults(func=cmd_new_facility)


def cmd_new_facility(args: argparse.Namespace) -> int:
    from beampod.instrument import scaffold_facility

    made = scaffold_facility(Path(args.dir), args.instruments, args.prefix)
    names = made.instruments
    shown = ", ".join(names) if len(names) <= 4 else f"{names[0]}, {names[1]}, …, {names[-1]}"
    print(f"created facility repository {made.root}")
    print(f"  instruments: {shown} ({len(names)})")
    print(f"  packages:    {made.facility_package} (shared), {made.instrument_package}")
    print(f"  git:         {made.git}")
    print(f"  next:        cd {made.root} && pip install -e . && beampod config check .")
    return 0
