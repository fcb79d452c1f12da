"""Import a service's heavy modules at low CPU priority, then run at normal priority.

Services that start early (ADR 0014) import for seconds while the slowest service, Tiled,
imports too; on two cores, fair scheduling would slow Tiled down by every process
importing next to it. On Linux a thread's nice value is its own (setpriority(2) on a
thread id), so the imports run in a thread at nice +10 while the main thread waits for
it: they use whatever CPU Tiled leaves, and the service then runs at the priority it
was given. Elsewhere the imports simply run in the main thread.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
from collections.abc import Sequence

NICE = 10


def preload(modules: Sequence[str]) -> None:
    """Import ``modules`` (at low priority where the OS allows it per thread). An import
    error is raised here, in the caller's thread, as if imported directly."""
    if not sys.platform.startswith("linux"):
        for name in modules:
            importlib.import_module(name)
        return
    errors: list[BaseException] = []

    def work() -> None:
        # Without permission to change it, the imports run at normal priority.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
        try:
            for name in modules:
                importlib.import_module(name)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=work, name="beampod-preload")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]


def early_argv(argv: Sequence[str]) -> tuple[str, ...]:
    """``python -m MODULE ARGS`` as ``python -m beampod._preload MODULE ARGS``: the same
    service, with the imports that run before its own ``main`` (its package's
    ``__init__``, its module's top level: the pod's config models, ~0.3-0.6 CPU-s) at
    low priority too (ADR 0031). Other argvs, and another interpreter's (an environment
    cycle's, whose beampod may predate this), are returned as they are."""
    if len(argv) >= 3 and argv[0] == sys.executable and argv[1] == "-m":
        return (argv[0], "-m", __name__, *argv[2:])
    return tuple(argv)


def run_early(argv: Sequence[str]) -> None:
    """Run module ``argv[0]`` as ``python -m`` would, with ``argv[1:]`` as its
    arguments, after importing it (not running it) at low priority: for a package its
    ``__main__``, whose top level imports what the service needs before it starts."""
    import importlib.util
    import runpy

    module = argv[0]
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise SystemExit(f"No module named {module}")
    target = module + ".__main__" if spec.submodule_search_locations is not None else module
    preload([target])
    # Its dependencies stay imported; the module itself runs once more as __main__, as
    # ``python -m`` runs it (runpy warns about a module already in sys.modules).
    sys.modules.pop(target, None)
    sys.argv = [module, *argv[1:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m beampod._preload MODULE [ARGS ...]")
    run_early(sys.argv[1:])
