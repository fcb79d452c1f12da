"""Plans of the demo instrument: bluesky's standard plans plus a few instrument plans.

Instrument plans take their devices as arguments (never module globals), so they run
from the session (``RE(align_peak([pinhole], motor_ph, -10, 10, 21))``) and from the
queue, where device names are resolved to devices by the server.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp
import bluesky.preprocessors as bpp
from bluesky.callbacks.fitting import PeakStats
from bluesky.utils import Msg

Plan = Generator[Msg, Any, Any]

STANDARD_PLANS = (
    "count",
    "scan",
    "rel_scan",
    "list_scan",
    "rel_list_scan",
    "grid_scan",
    "rel_grid_scan",
    "list_grid_scan",
    "rel_list_grid_scan",
    "log_scan",
    "rel_log_scan",
    "scan_nd",
    "adaptive_scan",
    "rel_adaptive_scan",
    "tune_centroid",
    "spiral",
    "spiral_fermat",
    "rel_spiral",
    "ramp_plan",
)


def _hinted_field(device: Any) -> str:
    fields = getattr(device, "hints", {}).get("fields", [])
    if not fields:
        raise ValueError(f"{getattr(device, 'name', device)!r} has no hinted field to fit")
    return str(fields[0])


def align_peak(
    detectors: Sequence[Any],
    motor: Any,
    start: float,
    stop: float,
    num: int = 21,
    *,
    md: dict[str, Any] | None = None,
) -> Plan:
    """Scan ``motor``, find the peak of the first detector's hinted field, move there.

    Moves to the centroid of the scan (robust to Poisson noise) and returns it; the run
    metadata records the plan. With the mini beamline, ``align_peak([pinhole], motor_ph,
    -10, 10, 21)`` ends with ``motor_ph`` near 0.
    """
    x_field = _hinted_field(motor)
    y_field = _hinted_field(detectors[0])
    stats = PeakStats(x_field, y_field)
    _md = {"plan_name": "align_peak", **(md or {})}

    @bpp.subs_decorator(stats)
    def inner() -> Plan:
        return (yield from bp.scan(list(detectors), motor, start, stop, num, md=_md))

    uid = yield from inner()
    # PeakStats sets its results as attributes at the stop document; .stats holds them.
    result: Any = stats.stats
    centre = getattr(result, "cen", None)
    peak = getattr(result, "max", None)
    if centre is None and peak:
        centre = peak[0]
    if centre is None:
        raise ValueError(f"no peak found in {y_field!r} between {start} and {stop}")
    yield from bps.mv(motor, float(centre))
    return uid


def thermo_ramp(
    detectors: Sequence[Any],
    thermo: Any,
    temperatures: Sequence[float],
    *,
    settle_time: float = 0.0,
    md: dict[str, Any] | None = None,
) -> Plan:
    """Step the temperature controller through ``temperatures``, reading ``detectors`` at
    each once the readback is within the controller's tolerance (``thermo.atol``)."""
    readables = [*detectors, thermo]
    _md = {
        "plan_name": "thermo_ramp",
        "detectors": [d.name for d in detectors],
        "motors": [thermo.name],
        "temperatures": list(temperatures),
        "num_points": len(temperatures),
        "hints": {"dimensions": [([_hinted_field(thermo)], "primary")]},
        **(md or {}),
    }

    @bpp.stage_decorator(readables)
    @bpp.run_decorator(md=_md)
    def inner() -> Plan:
        for temperature in temperatures:
            yield from bps.mv(thermo, temperature)
            if settle_time:
                yield from bps.sleep(settle_time)
            yield from bps.trigger_and_read(readables)

    return (yield from inner())


def count_with_beam(
    detectors: Sequence[Any],
    ring_current: Any,
    num: int = 1,
    delay: float = 0.0,
    *,
    md: dict[str, Any] | None = None,
) -> Plan:
    """Count ``detectors`` together with the ring current, for normalising afterwards."""
    _md = {"plan_name": "count_with_beam", **(md or {})}
    return (yield from bp.count([*detectors, ring_current], num=num, delay=delay, md=_md))


def demo_plans() -> dict[str, Callable[..., Any]]:
    plans: dict[str, Callable[..., Any]] = {name: getattr(bp, name) for name in STANDARD_PLANS}
    plans |= {"mv": bps.mv, "mvr": bps.mvr}
    plans |= {
        "align_peak": align_peak,
        "thermo_ramp": thermo_ramp,
        "count_with_beam": count_with_beam,
    }
    return plans
