"""ophyd devices over Channel Access for the simulated IOCs of the demo pod.

Device names are the bluesky-pods demo's (``pinhole``, ``motor_ph``, ...) and each device's main
reading is named after the device, as ophyd.sim does, so a LiveTable column and an event
data key read ``pinhole`` rather than ``pinhole_det``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from ophyd import Component as Cpt
from ophyd import Device, EpicsMotor, EpicsSignal, EpicsSignalRO, PVPositionerIsClose
from ophyd.status import StatusBase

DEFAULT_IOCS: tuple[dict[str, str], ...] = (
    {"family": "mini_beamline", "prefix": "mini:"},
    {"family": "random_walk", "prefix": "random_walk:horiz-"},
    {"family": "random_walk", "prefix": "random_walk:vert-"},
    {"family": "simple", "prefix": "simple:"},
    {"family": "thermo_sim", "prefix": "thermo:"},
)


class TriggeredDetector(Device):
    """A point detector of the mini beamline: ``trig`` (put with callback) acquires."""

    det = Cpt(EpicsSignalRO, ":det", kind="hinted")
    exp = Cpt(EpicsSignal, ":exp", kind="config")
    trig = Cpt(EpicsSignal, ":trig", kind="omitted", put_complete=True)

    def __init__(self, prefix: str = "", *, name: str, **kwargs: Any) -> None:
        super().__init__(prefix, name=name, **kwargs)
        self.det.name = self.name

    def trigger(self) -> StatusBase:
        # The IOC computes the reading from the motor's readback while serving this
        # put, and replies when the value is in place.
        return self.trig.set(1)


class MovingDot(Device):
    """The mini beamline's area detector; ``img_sum`` is the hinted reading."""

    img_sum = Cpt(EpicsSignalRO, ":img_sum", kind="hinted")
    image = Cpt(EpicsSignalRO, ":det", kind="omitted")
    exp = Cpt(EpicsSignal, ":exp", kind="config")
    shutter_open = Cpt(EpicsSignal, ":shutter_open", kind="config")
    trig = Cpt(EpicsSignal, ":trig", kind="omitted", put_complete=True)

    def __init__(self, prefix: str = "", *, name: str, **kwargs: Any) -> None:
        super().__init__(prefix, name=name, **kwargs)
        self.img_sum.name = self.name

    def trigger(self) -> StatusBase:
        return self.trig.set(1)


class RandomWalk(Device):
    """caproto's random walk: ``x`` takes a random step every ``dt`` seconds."""

    x = Cpt(EpicsSignalRO, "x", kind="hinted")
    dt = Cpt(EpicsSignal, "dt", kind="config")

    def __init__(self, prefix: str = "", *, name: str, **kwargs: Any) -> None:
        super().__init__(prefix, name=name, **kwargs)
        self.x.name = self.name


class SimpleIoc(Device):
    """caproto's simple IOC: three uncoupled read/write PVs."""

    A = Cpt(EpicsSignal, "A", kind="hinted")
    B = Cpt(EpicsSignal, "B", kind="hinted")
    C = Cpt(EpicsSignal, "C", kind="normal")


class Thermo(PVPositionerIsClose):
    """caproto's thermo sim as a positioner: a move is done when ``I`` is within ``atol``
    of ``SP``. The readback oscillates around the setpoint and decays with time constant
    ``K`` seconds, so settling within 1 degree takes about ``K * ln(Tvar)``."""

    setpoint = Cpt(EpicsSignal, "SP", kind="normal")
    readback = Cpt(EpicsSignalRO, "I", kind="hinted", auto_monitor=True)
    K = Cpt(EpicsSignal, "K", kind="config")
    omega = Cpt(EpicsSignal, "omega", kind="config")
    Tvar = Cpt(EpicsSignal, "Tvar", kind="config")

    def __init__(self, prefix: str = "", *, name: str, atol: float = 1.0, **kwargs: Any) -> None:
        super().__init__(prefix, name=name, atol=atol, **kwargs)
        self.readback.name = self.name


def demo_devices(iocs: Iterable[Mapping[str, str]] | None = None) -> dict[str, Any]:
    """Devices for the given IOCs (``[{"family", "prefix"}, ...]``; default: the demo's)."""
    out: dict[str, Any] = {}
    walks = 0
    for ioc in DEFAULT_IOCS if iocs is None else iocs:
        family, prefix = ioc["family"], ioc["prefix"]
        if family == "mini_beamline":
            out |= _mini_beamline(prefix)
        elif family == "random_walk":
            walks += 1
            name = _walk_name(prefix, walks)
            out[name] = RandomWalk(prefix, name=name)
        elif family == "simple":
            out["simple"] = SimpleIoc(prefix, name="simple")
        elif family == "thermo_sim":
            out["thermo"] = Thermo(prefix, name="thermo")
    return out


def _mini_beamline(prefix: str) -> dict[str, Any]:
    devices: dict[str, Any] = {
        "ring_current": EpicsSignalRO(f"{prefix}current", name="ring_current")
    }
    for det_name, motor_name, sub in (
        ("pinhole", "motor_ph", "ph"),
        ("edge", "motor_edge", "edge"),
        ("slit", "motor_slit", "slit"),
    ):
        devices[det_name] = TriggeredDetector(f"{prefix}{sub}", name=det_name)
        devices[motor_name] = EpicsMotor(f"{prefix}{sub}:mtr", name=motor_name)
    devices["dot"] = MovingDot(f"{prefix}dot", name="dot")
    devices["motor_dot_x"] = EpicsMotor(f"{prefix}dot:mtrx", name="motor_dot_x")
    devices["motor_dot_y"] = EpicsMotor(f"{prefix}dot:mtry", name="motor_dot_y")
    return devices


def _walk_name(prefix: str, index: int) -> str:
    """``random_walk:horiz-`` -> ``rw_horiz``; a prefix with no tail -> ``rw<index>``."""
    tail = prefix.rsplit(":", 1)[-1]
    slug = re.sub(r"[^a-z0-9]+", "_", tail.lower()).strip("_")
    return f"rw_{slug}" if slug else f"rw{index}"
