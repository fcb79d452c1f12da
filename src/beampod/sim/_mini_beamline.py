"""The mini beamline IOC, modelled on caproto's ``mini_beamline`` example but built for scans.

Differences from the example, and why:

- Motors are motor records (:class:`~beampod.sim._motor.SimMotor`): ``ophyd.EpicsMotor``
  drives them, and a put with callback completes when the motion does.
- Detectors are *triggered*: a put to ``<det>:trig`` (with callback) computes ``<det>:det``
  from the motor's current **readback** and the ring current, then completes. A scan's
  readings therefore follow the physics at the positions the motor actually reached,
  instead of whatever a 0.5 s free-running update last saw.
- The moving-dot image is 120x160 rather than 480x640 so it fits comfortably in a CA
  message without raising ``EPICS_CA_MAX_ARRAY_BYTES`` to megabytes.

PVs (prefix ``mini:``): ``current``; ``ph:mtr`` ``ph:det`` ``ph:trig`` ``ph:exp`` (pinhole,
centre 0, sigma 5); the same for ``edge:`` (erfc edge at 5) and ``slit:`` (slit of half
width 7.5); ``dot:mtrx`` ``dot:mtry`` ``dot:det`` ``dot:img_sum`` ``dot:trig`` ``dot:exp``
``dot:shutter_open``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from caproto.server import PVGroup, SubGroup, pvproperty

from beampod.sim._motor import SimMotor
from beampod.sim._quiet import has_subscribers

# Counts per unit of ring current per unit of exposure, as in caproto's example.
N_PER_I_PER_S = 200.0
# Monitors of the ring current get a new value this often (it oscillates with a 4 s
# period: eight samples a period). caproto's example scans every 0.1 s.
CURRENT_SCAN_S = 0.5


def pinhole_profile(x: float, center: float = 0.0, sigma: float = 5.0) -> float:
    """Transmission of the pinhole at motor position ``x`` (1 at the centre)."""
    return math.exp(-((x - center) ** 2) / (2 * sigma * sigma))


def edge_profile(x: float, center: float = 5.0, sigma: float = 2.5) -> float:
    """Transmission past a knife edge: 0 far below ``center``, 1 far above."""
    return math.erfc((center - x) / sigma) / 2


def slit_profile(x: float, half_width: float = 7.5, sigma: float = 2.5) -> float:
    """Transmission through a slit of half-width ``half_width`` centred on 0."""
    return (math.erfc((x - half_width) / sigma) - math.erfc((x + half_width) / sigma)) / 2


def ring_current(t: float) -> float:
    """The ring current oscillates 500 +- 25 with a 4 s period (as in caproto's example)."""
    return 500.0 + 25.0 * math.sin(t * 2 * math.pi / 4)


class _TriggeredDetector(PVGroup):
    """A point detector behind a motor; subclasses give the transmission profile."""

    mtr = SubGroup(SimMotor, prefix="mtr", doc="The motor in front of this detector")
    det = pvproperty(value=0.0, dtype=float, read_only=True, doc="Counts of the last trigger")
    exp = pvproperty(value=1.0, dtype=float, doc="Exposure (multiplies the counts)")
    trig = pvproperty(value=0, dtype=int, doc="Put 1 (with callback) to acquire one reading")

    def profile(self, x: float) -> float:
        raise NotImplementedError

    def expected(self, x: float) -> float:
        """Mean counts at motor position ``x`` with the current beam and exposure."""
        beamline: MiniBeamline = self.parent
        return N_PER_I_PER_S * beamline.current_now() * float(self.exp.value) * self.profile(x)

    @exp.putter  # type: ignore[no-redef]
    async def exp(self, instance: Any, value: float) -> float:
        return max(float(value), 0.0)

    @trig.putter  # type: ignore[no-redef]
    async def trig(self, instance: Any, value: int) -> int:
        mean = self.expected(self.mtr.readback)
        counts = float(self.parent.rng.poisson(mean)) if mean > 0 else 0.0
        await self.det.write(counts)
        return 0


class PinHole(_TriggeredDetector):
    """Gaussian pinhole: centre 0, sigma 5."""

    def profile(self, x: float) -> float:
        return pinhole_profile(x)


class Edge(_TriggeredDetector):
    """Knife edge at 5 (erfc, sigma 2.5)."""

    def profile(self, x: float) -> float:
        return edge_profile(x)


class Slit(_TriggeredDetector):
    """Slit of half-width 7.5 centred on 0 (erfc edges, sigma 2.5)."""

    def profile(self, x: float) -> float:
        return slit_profile(x)


class MovingDot(PVGroup):
    """A Gaussian spot on an area detector that moves with two motors."""

    N = 120
    M = 160
    sigmax = 12.5
    sigmay = 6.25
    background = 1000

    mtrx = SubGroup(SimMotor, prefix="mtrx", doc="Spot position X")
    mtry = SubGroup(SimMotor, prefix="mtry", doc="Spot position Y")
    det = pvproperty(
        value=[0.0] * (N * M),
        dtype=float,
        read_only=True,
        max_subscription_backlog=50,  # images are big; caproto warns otherwise
        doc=f"Detector image ({N}x{M}), row-major",
    )
    img_sum = pvproperty(value=0.0, read_only=True, dtype=float, doc="Image sum")
    exp = pvproperty(value=1.0, dtype=float, doc="Exposure (multiplies the signal)")
    shutter_open = pvproperty(value=1, dtype=int, doc="Shutter open (1) / closed (0)")
    trig = pvproperty(value=0, dtype=int, doc="Put 1 (with callback) to acquire one image")
    ArraySizeY_RBV = pvproperty(value=N, dtype=int, read_only=True)
    ArraySizeX_RBV = pvproperty(value=M, dtype=int, read_only=True)

    @trig.putter  # type: ignore[no-redef]
    async def trig(self, instance: Any, value: int) -> int:
        image = self.image(self.mtrx.readback, self.mtry.readback)
        await self.img_sum.write(float(image.sum()))
        await self.det.write(image.ravel())
        return 0

    def image(self, x: float, y: float) -> np.ndarray:
        rng: np.random.Generator = self.parent.rng
        back = rng.poisson(self.background / 100, (self.N, self.M)).astype(float)
        if not self.shutter_open.value:
            return back
        yy, xx = np.ogrid[: self.N, : self.M]
        # Scale motor units so +-10 moves the spot across a good part of the frame.
        dx = (xx - self.M / 2 + 4 * x) / self.sigmax
        dy = (yy - self.N / 2 + 4 * y) / self.sigmay
        dot = np.exp(-(dx**2 + dy**2) / 2) * math.exp(-(x**2 + y**2) / 25**2)
        signal = N_PER_I_PER_S * self.parent.current_now() * float(self.exp.value) * dot / 100
        return back + rng.poisson(signal)


class MiniBeamline(PVGroup):
    """Pinhole, edge and slit detectors behind motors, a moving dot, and a ring current."""

    current = pvproperty(
        value=500.0,
        dtype=float,
        read_only=True,
        units="mA",
        doc="Ring current (oscillates 500 +- 25, period 4 s)",
    )

    @current.getter  # type: ignore[no-redef]
    async def current(self, instance: Any) -> float:
        # A read (``caget``, ophyd's ``ring_current.read()``) gets the current now.
        return self.current_now()

    @current.scan(period=CURRENT_SCAN_S)  # type: ignore[no-redef]
    async def current(self, instance: Any, async_lib: Any) -> None:
        await self.publish_current(instance)

    ph = SubGroup(PinHole, doc="Simulated pinhole")
    edge = SubGroup(Edge, doc="Simulated edge")
    slit = SubGroup(Slit, doc="Simulated slit")
    dot = SubGroup(MovingDot, doc="Simulated area detector with a moving spot")

    def __init__(self, *args: Any, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rng = np.random.default_rng(seed)

    def current_now(self) -> float:
        return ring_current(time.monotonic())

    async def publish_current(self, instance: Any) -> bool:
        """Push the ring current now to its monitors; with none (the demo's devices
        read it, an idle facility has 25 of these IOCs), do nothing. Whether it did."""
        if not has_subscribers(instance):
            return False
        await instance.write(value=self.current_now())
        return True
