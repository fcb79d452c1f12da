"""What a session sees: RE, db, bp/bps/bpp, the BestEffortCallback, devices and plans."""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import IO, Any

from beampod.config import LoadedPod
from beampod.instrument import Instrument, apply_ca_client_env, load_instrument, silent_iocs
from beampod.session._db import LazyCatalog
from beampod.session._plots import saving_best_effort_callback


def has_display() -> bool:
    """Whether plots can be shown: macOS/Windows always, elsewhere an X11/Wayland display."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def prepare_instrument(pod: LoadedPod, instrument: str | None = None) -> Instrument:
    """Set the pod's CA client environment, then load the instrument package.

    The order matters: importing ophyd creates pyepics' CA context, which reads the
    ``EPICS_CA_*`` variables once; the instrument package imports ophyd.
    """
    apply_ca_client_env(pod.config)
    settings = pod.config.instrument(instrument)
    iocs = [{"family": i.family, "prefix": i.prefix} for i in settings.iocs]
    inst = load_instrument(settings.package, iocs=iocs)
    # Registered after pyepics registered finalize_libca (at ophyd import), so it runs
    # before it: ophyd signals otherwise release their PVs from weakref finalizers
    # *after* libca is gone, which segfaults the exiting process now and then.
    name = instrument or pod.config.instrument_name
    atexit.register(
        _release_devices,
        list(inst.devices.values()),
        lambda: silent_iocs(pod.config, name) is None,
    )
    return inst


_EXIT_SETTLE_S = 2.0


def _release_devices(devices: list[Any], iocs_listen: Callable[[], bool]) -> None:
    """Release the devices' CA channels while libca is still alive (at exit).

    First let connections that are under way finish: ophyd fetches each new channel's
    metadata in a helper thread, and clearing a channel under that fetch makes it hang
    until its timeout (or crash). Devices whose IOC is down simply stay unconnected;
    when no IOC of the instrument listens (the pod is down) none can be connecting,
    and nothing is waited for.
    """
    unconnected = [d for d in devices if not getattr(d, "connected", True)]
    if unconnected and not iocs_listen():
        unconnected = []  # nothing can be connecting
    deadline = time.monotonic() + _EXIT_SETTLE_S
    for device in unconnected:
        waiter = getattr(device, "wait_for_connection", None)
        if callable(waiter) and time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                waiter(timeout=max(deadline - time.monotonic(), 0.01))
    for device in devices:
        destroy = getattr(device, "destroy", None)
        if callable(destroy):
            destroy()


def make_best_effort_callback(
    *, headless: bool, pod: LoadedPod | None = None, out: IO[str] | None = None
) -> Any:
    """bluesky's BestEffortCallback: a LiveTable always, and plots -- on screen with a
    display; headless, drawn with Agg and saved per run as a PNG under the pod home
    (``bec.peaks`` needs the plots). Headless without a pod: tables only."""
    if headless:
        if pod is not None:
            return saving_best_effort_callback(pod, out=out)
        # BestEffortCallback imports pyplot at import time; never pick a GUI backend
        # when nothing can show it.
        os.environ.setdefault("MPLBACKEND", "Agg")
    from bluesky.callbacks.best_effort import BestEffortCallback

    bec = BestEffortCallback()
    if headless:
        bec.disable_plots()
    return bec


def build_namespace(
    pod: LoadedPod,
    *,
    headless: bool,
    instrument: str | None = None,
    extras: Callable[[LoadedPod], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The user namespace of a session (``beampod shell``), like bsui's.

    ``extras`` adds names from components the session may not import itself (the
    adaptive ``to_brains``/``from_brains``, ``queue_server_plan``): the services layer
    composes them, see ``beampod.services.session_extras``.
    """
    from beampod.session._engine import make_run_engine

    inst = prepare_instrument(pod, instrument)
    import bluesky.plan_stubs as bps
    import bluesky.plans as bp
    import bluesky.preprocessors as bpp
    import numpy as np
    from bluesky import SupplementalData

    RE = make_run_engine(pod, instrument)
    bec = make_best_effort_callback(headless=headless, pod=pod)
    RE.subscribe(bec)
    db = LazyCatalog(pod, instrument)
    RE.subscribe(db.observe)  # db[-1] waits for this session's newest run to be stored
    sd = SupplementalData()  # sd.baseline / sd.monitors, as in bsui profiles
    RE.preprocessors.append(sd)
    ns: dict[str, Any] = {
        "RE": RE,
        "db": db,
        "bp": bp,
        "bps": bps,
        "bpp": bpp,
        "bec": bec,
        "peaks": bec.peaks,
        "sd": sd,
        "np": np,
        "pod": pod,
        "instrument": inst,
    }
    # Plans first, then devices: load_instrument guarantees the names do not clash.
    ns.update(inst.plans)
    ns.update(inst.devices)
    if extras is not None:
        ns.update(extras(pod))
    return ns
