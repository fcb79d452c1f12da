"""Channel Access clients that say little when the pod's IOCs are down.

With no CA repeater listening (the pod's ``ca-repeater`` service is down with the rest
of the pod), libca forks a child at its first channel to start one of its own,
``caRepeater``. That executable is not installed (the pod runs its own repeater), and
the child prints four lines about it (``**** Unable to start "CA Repeater" process``)
into the session, some time later. :func:`start_channel_access_quietly` makes that
first channel with file descriptor 2 pointed at ``/dev/null``, so the child, which
inherits it, says nothing; nothing else is written there meanwhile.

:func:`why_not_connected` is the short reason for a device that did not connect:
ophyd's own names every signal, its PV and the device's pending subscriptions (a
motor's runs to ~1,500 characters). :func:`unconnected_devices` waits for a set of
devices with one deadline and names, each with that reason, the ones that did not.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any

#: A name no IOC serves: the channel only makes libca set up its search (and fork).
_NO_SUCH_PV = "beampod:ca-context"
_REASON_CHARS = 80


@contextlib.contextmanager
def _stderr_fd_discarded() -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def start_channel_access_quietly() -> None:
    """Create libca's context and its first channel now, without libca's repeater
    lines; the channel is cleared again."""
    from epics import ca

    ca.initialize_libca()
    with _stderr_fd_discarded():
        chid = ca.create_channel(_NO_SUCH_PV, connect=False, auto_cb=False)
    ca.clear_channel(chid)


def why_not_connected(device: Any, exc: BaseException) -> str:
    """One short reason: how many of the device's PVs are not connected and one of
    them; else the first line of ``exc``, cut at ``_REASON_CHARS``."""
    walk = getattr(device, "walk_signals", None)
    pvs: list[str] = []
    if callable(walk):
        pvs = [
            str(pv)
            for item in walk()
            if not getattr(item.item, "connected", True)
            and (pv := getattr(item.item, "pvname", None))
        ]
    elif not getattr(device, "connected", True) and getattr(device, "pvname", None):
        pvs = [str(device.pvname)]
    if len(pvs) == 1:
        return f"PV {pvs[0]}"
    if pvs:
        return f"{len(pvs)} PVs, e.g. {pvs[0]}"
    text = (str(exc).splitlines() or [type(exc).__name__])[0]
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


def unconnected_devices(devices: Iterable[Any], timeout: float) -> list[str]:
    """Wait (one shared deadline: ophyd connects all devices in parallel) until every
    device is connected; the ones that are not, each with the reason."""
    deadline = time.monotonic() + timeout
    missing: list[str] = []
    for device in devices:
        waiter = getattr(device, "wait_for_connection", None)
        if waiter is None:
            continue
        try:
            waiter(timeout=max(deadline - time.monotonic(), 0.1))
        except TimeoutError as exc:
            missing.append(f"{getattr(device, 'name', device)} ({why_not_connected(device, exc)})")
    return missing
