"""pyepics' blocking waits sleep in Channel Access, longer the longer they wait.

pyepics waits for a blocking ``get``, a connection or a ``put`` with ``wait`` in a loop
of ``ca.poll()``, whose ``ca_pend_event`` turn is 10 µs by default: with ophyd's
preemptive callbacks the replies come on libca's own threads, so each turn of that loop
sleeps ~60 µs and takes the GIL back, thousands of times a second per waiting thread.
ophyd reads every signal's metadata that way (``PyepicsShimPV.get_all_metadata_blocking``,
four util threads per process).

Seen on two cores (docs/facility.md, "Queue workers and a slow IOC host"): ten idle
queue workers' util threads spun at 1.6 to 2.5 cores while waiting for metadata from
the one simulated IOC host, which, one thread among forty spinning ones at the same
priority, answered 5 to 12 s late; the gets timed out and were asked again, and the
facility never settled. A fixed 1 ms turn cut that tenfold, but a reply does not end
a turn (libca sleeps it out: a get took ~1.2 ms instead of ~0.5), and at 25 instruments
125 waiting threads still spun 1.4 cores and starved the IOC host the same way.

:func:`calm_ca_waits` replaces ``epics.ca.poll`` (which pyepics' own loops look up at
each call) by :func:`paced_poll`: a turn of one of pyepics' waiting loops lasts a
quarter of how long that loop has waited so far (read from its ``t0`` or
``start_time``), between pyepics' 10 µs and ``MAX_TURN_S``. A reply is seen at most a
quarter of its wait late (a 1 ms get: ~1.1 ms), and a 1.5 s wait takes ~50 turns instead of
~16,800. Every other call, and every explicit argument, is pyepics' own.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

log = logging.getLogger("beampod.instrument")

#: A waiting loop's turn, as a share of how long it has waited so far.
TURN_FRACTION = 0.25
#: The longest turn: what a reply to a long wait can be seen late.
MAX_TURN_S = 0.05
# pyepics 3.5's defaults of ``ca.poll(evt, iot)``.
_PYEPICS_DEFAULTS = (1e-5, 1.0)
# Where pyepics 3.5's waiting loops keep when they began (``time.time()``), by module.
_LOOP_STARTS = ("t0", "start_time")
_PYEPICS_MODULES = frozenset({"epics.ca", "epics.pv"})


def turn_for(frame: FrameType | None, now: float) -> float:
    """The ``ca_pend_event`` turn for a ``poll()`` called from ``frame``: paced when it
    is one of pyepics' waiting loops, pyepics' own 10 µs otherwise."""
    if frame is None or frame.f_globals.get("__name__") not in _PYEPICS_MODULES:
        return _PYEPICS_DEFAULTS[0]
    local = frame.f_locals
    for name in _LOOP_STARTS:
        start = local.get(name)
        if isinstance(start, float):
            # A clock stepped back (now < start) gets the shortest turn too.
            return min(MAX_TURN_S, max(_PYEPICS_DEFAULTS[0], (now - start) * TURN_FRACTION))
    return _PYEPICS_DEFAULTS[0]


def paced_poll(poll: Callable[..., Any]) -> Callable[..., Any]:
    """``poll`` (pyepics' ``ca.poll``) with its default turn paced by :func:`turn_for`."""

    @functools.wraps(poll)
    def paced(evt: float | None = None, iot: float = _PYEPICS_DEFAULTS[1]) -> Any:
        if evt is None:
            evt = turn_for(sys._getframe(1), time.time())
        return poll(evt, iot)

    paced.beampod_paced = True  # type: ignore[attr-defined]
    return paced


def _locals_of(function: Any) -> tuple[str, ...]:
    return tuple(inspect.unwrap(function).__code__.co_varnames)


def calm_ca_waits() -> bool:
    """Install :func:`paced_poll` as ``epics.ca.poll``; True if it is installed (False:
    pyepics is not installed, or is not the version this was written for)."""
    try:
        from epics import ca
    except ImportError:
        return False
    if getattr(ca.poll, "beampod_paced", False):
        return True
    inner: Any = getattr(ca.poll, "__wrapped__", ca.poll)
    loops_known = "t0" in _locals_of(ca.get_complete_with_metadata) and (
        "start_time" in _locals_of(ca.connect_channel)
    )
    if inner.__defaults__ != _PYEPICS_DEFAULTS or not loops_known:
        log.info("pyepics' ca.poll is not the one beampod paces: left as it is")
        return False
    ca.poll = paced_poll(ca.poll)
    return True
