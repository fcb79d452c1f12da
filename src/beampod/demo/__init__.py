"""The demo instrument: a plain instrument package over the demo pod's simulated IOCs.

It follows the instrument convention (docs/instruments.md) and imports nothing from
beampod, like a facility's own package would:

- ``devices(iocs=None)``: ophyd devices; ``iocs`` is the pod's IOC list for this
  instrument (``[{"family": ..., "prefix": ...}]``), default the demo config's;
- ``plans()``: bluesky's standard plans, ``mv``/``mvr``, and ``align_peak``,
  ``thermo_ramp``, ``count_with_beam``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any


def devices(iocs: Iterable[Mapping[str, str]] | None = None) -> dict[str, Any]:
    from beampod.demo._devices import demo_devices

    return demo_devices(iocs)


def plans() -> dict[str, Callable[..., Any]]:
    from beampod.demo._plans import demo_plans

    return demo_plans()


__all__ = ["devices", "plans"]
