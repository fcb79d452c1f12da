"""``beampod plot [RUN] [X] [Y] -o FILE``: a PNG of a stored run."""

from __future__ import annotations

import argparse
from pathlib import Path

from beampod.cli._common import add_instrument_option, pod_of
from beampod.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="plot a stored run to a PNG file",
        description="Plot Y against X from a stored run's primary stream into a PNG file.",
    )
    p.add_argument(
        "run", nargs="?", default="-1", help="-N (latest: -1), a scan_id or a uid prefix"
    )
    p.add_argument("x", nargs="?", help="x column (default: the run's hinted motor)")
    p.add_argument("y", nargs="?", help="y column (default: the run's hinted detector)")
    p.add_argument("-o", "--output", required=True, type=Path, help="PNG file to write")
    add_instrument_option(p)
    p.set_defaults(func=cmd_plot)


def cmd_plot(args: argparse.Namespace) -> int:
    from beampod.session import plot_run
    from beampod.store import RunNotFoundError, open_catalog

    out: Path = args.output
    if out.suffix.lower() != ".png":
        raise UsageError(f"{out}: the output is a PNG file (name it *.png)")
    if not out.parent.is_dir():
        raise UsageError(f"{out}: no such directory {out.parent}")
    try:
        run = open_catalog(pod_of(args), args.instrument).find(args.run)
    except RunNotFoundError as exc:  # a RUN that names no run is a bad argument
        raise UsageError(str(exc)) from None
    plot_run(run, args.x, args.y, out)
    print(out)
    return 0
