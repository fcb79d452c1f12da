"""The ``beampod`` command: argument parsing, dispatch, and the error edge.

Inside beampod errors are typed (``beampod.errors``); here they become one readable
line on stderr and an exit code. Only with ``--debug`` does a traceback appear.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable, Sequence

from beampod.errors import BeampodError


def build_parser() -> argparse.ArgumentParser:
    from beampod.cli import (
        _agent_cmds,
        _connect_cmds,
        _data_cmds,
        _deploy_cmds,
        _env_cmds,
        _plot_cmds,
        _pod_cmds,
        _queue_cmds,
        _session_cmds,
    )

    parser = argparse.ArgumentParser(
        prog="beampod",
        description="A whole Bluesky instrument pod: IOCs, bus, store, queue server, session.",
    )
    parser.add_argument("--home", help="pod home (default: $BEAMPOD_HOME or ~/.beampod/default)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _pod_cmds.register(sub)
    _session_cmds.register(sub)
    _data_cmds.register(sub)
    _plot_cmds.register(sub)
    _queue_cmds.register(sub)
    _agent_cmds.register(sub)
    _connect_cmds.register(sub)
    _env_cmds.register(sub)
    _deploy_cmds.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # What a session re-runs under its instrument's Python (cli/_runtime.py).
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    # The process is this one command (not a caller's Python): it may import lean.
    args.whole_process = argv is None
    return run_at_edge(lambda: int(args.func(args) or 0), debug=args.debug)


def run_at_edge(command: Callable[[], int], *, debug: bool) -> int:
    """Run ``command``; its errors become one readable line and an exit code (a
    traceback only with ``--debug``)."""
    try:
        code = command()
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader went away (`beampod runs | head -2`): stop quietly, as other Unix
        # tools do, and keep Python from complaining when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except BeampodError as exc:
        if debug:
            traceback.print_exc()
        print(f"beampod: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("beampod: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the program's edge: no raw tracebacks for users
        if debug:
            traceback.print_exc()
        print(
            f"beampod: internal error: {type(exc).__name__}: {exc} "
            f"(re-run with --debug for the traceback, and please report it)",
            file=sys.stderr,
        )
        return 1
