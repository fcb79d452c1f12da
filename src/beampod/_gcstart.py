"""No cyclic garbage collection while a service starts (ADR 0031).

A service's start is mostly imports, and imports allocate millions of objects that live
as long as the process (modules, classes, pydantic and SQLAlchemy models, FastAPI
routes). CPython's collector is triggered by allocations, so it runs many times during
the imports, and every older-generation run walks everything imported so far, to free
almost nothing. Measured in fresh processes (CPU-s of each service's imports, collector
on → off): Tiled 2.0-2.3 → 1.4-1.55, the writer 0.56-0.63 → 0.47-0.48, the queue's
worker 0.44-0.45 → 0.34-0.36, the queue's HTTP server 0.52-0.54 → 0.46-0.47, its
watchdog 0.34-0.35 → 0.27-0.31.

So a service calls :func:`pause_gc` first thing and :func:`resume_gc` once it has
started: what the start allocated moves to the permanent generation (``gc.freeze``,
never scanned; as Tiled and the queue's watchdog already did, ADR 0025), and the
collector runs again for what the service allocates from then on. Import garbage is not
collected first (a full collection of everything imported: ~0.3 s for Tiled); it is
small and stays. If a start fails or hangs before :func:`resume_gc`, a timer turns the
collector back on after :data:`LONGEST_PAUSE_S` anyway, so a process never runs long
without it.
"""

from __future__ import annotations

import gc
import threading

#: The longest a service runs without the collector if it never calls resume_gc.
LONGEST_PAUSE_S = 120.0

_lock = threading.Lock()
_timer: list[threading.Timer] = []


def pause_gc(longest_s: float = LONGEST_PAUSE_S) -> None:
    """Turn the cyclic collector off until :func:`resume_gc`, or ``longest_s``."""
    with _lock:
        gc.disable()
        if not _timer:
            timer = threading.Timer(longest_s, resume_gc)
            timer.daemon = True
            timer.name = "beampod-gc-resume"
            timer.start()
            _timer.append(timer)


def resume_gc() -> None:
    """Freeze what the start allocated and turn the collector back on (idempotent)."""
    with _lock:
        for timer in _timer:
            timer.cancel()
        _timer.clear()
        gc.freeze()
        gc.enable()
