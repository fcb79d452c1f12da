"""Import a service's heavy modules at low CPU priority, then run at normal priority.

Services that start early (ADR 0014) import for seconds while the slowest service, Tiled,
imports too; on two cores, fair scheduling would slow Tiled down by every process
importing next to it. On Linux a thread's nice value is its own (setpriority(2) on a
thread id), so the imports run in a thread at nice +10 while the main thread waits for
it: they use whatever CPU Tiled leaves, and the service then runs at the priority it
was given. Elsewhere the imports simply run in the main thread.

A thread's nice value only weighs against the threads of its own *autogroup*, though:
where the kernel groups CPU time by session (``kernel.sched_autogroup_enabled``, the
default of most distributions outside a CPU cgroup), each session gets an equal share
whatever its threads' nice values, and the supervisor starts every service in a session
of its own. So a service that leads its own session also lowers its session's
autogroup priority (``beampod._autogroup``) for the imports, to ``SESSION_NICE``, and
sets it back to 0 afterwards (ADR 0032).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
from collections.abc import Sequence

from beampod._autogroup import autogroup_nice, leads_session, set_autogroup_nice

NICE = 10
# The session's, where the kernel shares CPU per session first (autogroups). A session
# weighs against every other session of the machine, not only Tiled's: at +10 an early
# service's import starved on a busy machine until Tiled was ready, and the writer was
# ready 0.5-1.6 s after Tiled; at +5 (a third of a share) 0.03-0.18 s after it
# (docs/benchmarks.md). +6, not +5: a session still at this value once the imports are
# done is set back to 0, and +5 is what ADR 18 gives a background service once ready.
SESSION_NICE = 6


def preload(modules: Sequence[str]) -> None:
    """Import ``modules`` (at low priority where the OS allows it per thread). An import
    error is raised here, in the caller's thread, as if imported directly."""
    if not sys.platform.startswith("linux"):
        for name in modules:
            importlib.import_module(name)
        return
    errors: list[BaseException] = []

    def work() -> None:
        try:
            _import_at_low_priority(modules)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            errors.append(exc)

    _SESSION.lower()
    try:
        thread = threading.Thread(target=work, name="beampod-preload")
        thread.start()
        thread.join()
    finally:
        _SESSION.restore_soon()
    if errors:
        raise errors[0]


def _import_at_low_priority(modules: Sequence[str]) -> None:
    """Import ``modules`` in the calling thread, first lowered to nice ``NICE`` (its own
    thread id: Linux). Without permission to change it, at normal priority."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
    for name in modules:
        importlib.import_module(name)


class _Session:
    """This process's session at low priority while it preloads (autogroups).

    The session goes back to normal priority shortly after the last preload, not after
    each: a service preloads in steps (``python -m beampod._preload`` imports its
    module, its ``main`` the rest), and without privilege the kernel takes one
    autogroup change per 100 ms from the whole machine."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._low = False
        self._generation = 0
        self._depth = 0  # preloads running (one may run inside another's imports)

    def lower(self) -> None:
        with self._lock:
            self._generation += 1  # a restore still pending is void
            self._depth += 1
            if not self._low and leads_session():
                self._low = set_autogroup_nice(SESSION_NICE, wait_s=1.0)

    def restore_soon(self) -> None:
        with self._lock:
            self._depth -= 1
            if not self._low or self._depth:
                return
            timer = threading.Timer(RESTORE_AFTER_S, self._restore, args=(self._generation,))
        timer.daemon = True
        timer.start()

    def _restore(self, generation: int) -> None:
        with self._lock:
            if generation != self._generation or self._depth or not self._low:
                return  # another preload began: it restores when it ends
            self._low = False
            if autogroup_nice() != SESSION_NICE:
                return  # the supervisor has set it since (ADR 0032, ADR 18)
            if not set_autogroup_nice(0, wait_s=10.0):
                print("beampod: could not set the session's priority back", file=sys.stderr)


_SESSION = _Session()
# How long after a preload its session stays at low priority, in case another follows.
RESTORE_AFTER_S = 0.1


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
    from beampod._lazy import without_pydantic_plugins

    without_pydantic_plugins()
    # The module as imported (not this ``__main__`` copy of it), so that the service's
    # own preloads share its session state.
    from beampod._preload import run_early as _run_early

    _run_early(sys.argv[1:])
