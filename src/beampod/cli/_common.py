"""Small helpers shared by the command modules."""

from __future__ import annotations

import argparse

from beampod.cli._lines import progress as progress  # where the commands find it
from beampod.config import LoadedPod, PodHome, load_pod


def home_of(args: argparse.Namespace) -> PodHome:
    return PodHome.resolve(args.home)


def pod_of(args: argparse.Namespace) -> LoadedPod:
    return load_pod(home_of(args))


def add_instrument_option(parser: argparse.ArgumentParser, dest: str = "instrument") -> None:
    """``-i/--instrument NAME`` of every per-instrument command (docs/facility.md).

    A command group (``queue``, ``dlq``) takes it before its action too, under another
    ``dest``: argparse lets a sub-command's default overwrite the group's value."""
    parser.add_argument(
        "-i",
        "--instrument",
        dest=dest,
        default=None,
        metavar="NAME",
        help="the instrument to act on (default: the pod's default instrument)",
    )


def instrument_arg(args: argparse.Namespace) -> str | None:
    """The ``-i`` given after the action, else the one given before it."""
    return getattr(args, "instrument", None) or getattr(args, "group_instrument", None)


def human_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(line.rstrip() for line in lines)
