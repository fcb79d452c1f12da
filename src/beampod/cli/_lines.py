"""What `up -d` says and does to the home before it waits, in the standard library only:
the head start (cli/_headstart.py) says it without loading the configuration models."""

from __future__ import annotations

import os
import sys
import time

from beampod._podhome import POD_UMASK, PodHome


def progress(msg: str) -> None:
    print(f"  {time.strftime('%H:%M:%S')}  {msg}", flush=True)


def owner_only(home: PodHome) -> None:
    """Everything this command and the pod create is the owner's alone; an existing
    home that others can read is fixed, and the user is told (docs/running.md)."""
    os.umask(POD_UMASK)
    for line in home.secure_report():
        print(line, file=sys.stderr)


def starting(home: PodHome) -> None:
    print(f"starting pod from {home.root} ...", flush=True)


def pod_ready(services: int, seconds: float) -> None:
    print(
        f"pod ready: {services} services in {seconds:.1f} s"
        "  (`beampod status`, `beampod shell`, `beampod down`)"
    )
