"""The interactive session and one-shot plans: shell, run, new instrument."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from beampod.cli import _new_cmds
from beampod.cli._common import add_instrument_option, pod_of
from beampod.cli._runtime import enter_instrument_runtime
from beampod.config import LoadedPod


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("shell", help="IPython session with RE, db, devices and plans (bsui)")
    p.add_argument("-c", dest="code", help="run CODE non-interactively and exit")
    add_instrument_option(p)
    p.set_defaults(func=cmd_shell)

    p = sub.add_parser("run", help="run one plan expression headless, print the run uid(s)")
    p.add_argument("expression", help='e.g. "scan([pinhole], motor_ph, -10, 10, 25)"')
    add_instrument_option(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("new", help="scaffold new things")
    nsub = p.add_subparsers(dest="new_what", required=True, metavar="WHAT")
    q = nsub.add_parser("instrument", help="an instrument package (devices, plans, a test)")
    q.add_argument("name")
    q.add_argument("dir", nargs="?", default=".")
    q.set_defaults(func=cmd_new_instrument)
    _new_cmds.register(nsub)


def _session_pod(args: argparse.Namespace) -> LoadedPod:
    """The pod, with the named instrument as its default, running under that
    instrument's Python (its cycle and overlay: docs/environments.md)."""
    pod = pod_of(args)
    if args.instrument:
        pod.config.instrument(args.instrument)  # unknown: one clear line
        config = pod.config.model_copy(update={"default_instrument": args.instrument})
        pod = dataclasses.replace(pod, config=config)
    enter_instrument_runtime(args, pod, pod.config.instrument_name)
    return pod


def cmd_shell(args: argparse.Namespace) -> int:
    from beampod.services import session_extras
    from beampod.session import run_shell

    return run_shell(_session_pod(args), args.code, extras=session_extras)


def cmd_run(args: argparse.Namespace) -> int:
    from beampod.errors import BeampodError
    from beampod.session import REFUSED_BEFORE_RUN, run_plan_expression

    try:
        pod = _session_pod(args)
        uids = run_plan_expression(pod, args.expression, instrument=pod.config.instrument_name)
    except BeampodError as exc:
        if REFUSED_BEFORE_RUN not in getattr(exc, "__notes__", ()) or args.debug:
            raise
        # Refused before any document existed: nothing to deliver or clean up. Leave at
        # once -- the interpreter's exit would tear down the devices' half-connected
        # Channel Access channels, which prints tracebacks and can crash libca.
        print(f"beampod: error: {exc}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(exc.exit_code)
    for uid in uids:
        print(uid)
    return 0


def cmd_new_instrument(args: argparse.Namespace) -> int:
    from beampod.instrument import scaffold

    path = scaffold(args.name, Path(args.dir))
    print(f"created instrument package {args.name} in {path}")
    print(f"  install it:  pip install -e {path}")
    print(f"  test it:     pytest {path}")
    print(f"  use it:      set `package: {args.name}` under instruments in the pod config")
    return 0
