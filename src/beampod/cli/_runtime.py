"""Each instrument's Python at the CLI edge: checked at ``up``, entered by a session."""

from __future__ import annotations

import argparse
import os
import sys

from beampod.config import LoadedPod
from beampod.errors import CycleEnvError

RUNTIME_VAR = "BEAMPOD_RUNTIME"


def check_instrument_runtimes(pod: LoadedPod) -> None:
    """Before ``up`` starts anything: warn about cycles that are not built, and refuse to
    start when an overlay package fails to import (every such package, by name)."""
    from beampod.envs import EnvLayout, check_overlay, instrument_runtime, overlay_packages

    layout = EnvLayout(pod)
    broken: list[str] = []
    for name in pod.config.instruments:
        runtime = instrument_runtime(pod, name)
        if runtime.note:
            print(f"warning: {runtime.note}", file=sys.stderr)
        if layout.overlay_dir(name).is_dir() and overlay_packages(layout, name):
            broken += check_overlay(pod, name)
    if broken:
        raise CycleEnvError(
            "; ".join(broken) + ". Nothing was started: fix the overlay "
            "(`beampod env overlay INSTRUMENT remove PACKAGE` restores the cycle's version)"
        )


def enter_instrument_runtime(args: argparse.Namespace, pod: LoadedPod, instrument: str) -> None:
    """Re-run this command under the instrument's runtime (its cycle's interpreter or
    site-packages, its overlay first on PYTHONPATH), unless it already runs there."""
    from beampod.envs import instrument_runtime

    runtime = instrument_runtime(pod, instrument)
    if not runtime.changes_anything or os.environ.get(RUNTIME_VAR) == runtime.marker():
        return
    env = dict(os.environ)
    env["PYTHONPATH"] = runtime.pythonpath(env.get("PYTHONPATH"))
    env[RUNTIME_VAR] = runtime.marker()
    argv = [runtime.python, "-m", "beampod", *getattr(args, "argv", sys.argv[1:])]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(runtime.python, argv, env)
