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
