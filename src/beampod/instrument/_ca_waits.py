"""pyepics' blocking waits sleep in Channel Access instead of spinning the GIL.

pyepics waits for a blocking ``get`` (and for a connection) in a loop of ``ca.poll()``,
whose default ``ca_pend_event`` timeout is 10 µs: with ophyd's preemptive callbacks the
replies come on libca's own threads, so each turn of that loop only sleeps ~60 µs and
takes the GIL back, thousands of times a second per waiting thread. ophyd reads every
signal's metadata that way (``PyepicsShimPV.get_all_metadata_blocking``, four util
threads per process).

Seen at N = 10 instruments on two cores (docs/benchmarks.md, 2026-12-05): the ten idle
queue workers' util threads spun at 1.6 to 2.5 cores in total while waiting for metadata
from the one simulated IOC host, which, at the same priority but one thread among
forty spinning ones, answered 5 to 12 s late ("High load" in its log, "Virtual circuit
unresponsive" in the workers'); the gets timed out and were asked again, and the
facility never settled. At N = 5 the same reads end within seconds.

:func:`calm_ca_waits` makes each turn wait up to ``POLL_EVENT_S`` in ``ca_pend_event``
(in C, without the GIL): a reply still ends the wait at once (libca wakes it), so a get
is at most that much later. It changes the default of ``epics.ca.poll`` only; every
explicit argument is kept.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("beampod.instrument")

#: How long one turn of pyepics' waiting loop sleeps in Channel Access.
POLL_EVENT_S = 1e-3
# pyepics 3.5's defaults of ``ca.poll(evt, iot)``; anything else is left as it is.
_PYEPICS_DEFAULTS = (1e-5, 1.0)


def calm_ca_waits() -> bool:
    """Set pyepics' default ``ca.poll`` wait to ``POLL_EVENT_S``; True if it did (False:
    pyepics is not installed, or its ``poll`` is not the one this was written for)."""
    try:
        from epics import ca
    except ImportError:
        return False
    poll: Any = getattr(ca.poll, "__wrapped__", ca.poll)
    if poll.__defaults__ == (POLL_EVENT_S, _PYEPICS_DEFAULTS[1]):
        return True
    if poll.__defaults__ != _PYEPICS_DEFAULTS:
        log.info("pyepics' ca.poll defaults are %r: left as they are", poll.__defaults__)
        return False
    poll.__defaults__ = (POLL_EVENT_S, _PYEPICS_DEFAULTS[1])
    return True
