"""What Python an instrument's services and sessions run: its cycle, then its overlay.

Two cases, decided by the built cycle's manifest (docs/environments.md, "What runs
where"):

- the cycle contains beampod (a facility's cycle, as on the hosts that ``beampod deploy``
  renders for): the instrument runs ``<cycle>/bin/python`` with
  ``PYTHONPATH=<overlay>``;
- the cycle does not (it holds the instrument's science packages only): the instrument
  runs beampod's own interpreter with ``PYTHONPATH=<overlay>:<cycle site-packages>``, so
  the overlay wins over the cycle and the cycle wins over beampod's own environment.

An instrument whose cycle is not built runs as if it had none (with its overlay, if
one exists); ``up`` says so in a warning.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from beampod.config import LoadedPod
from beampod.envs._build import read_manifest
from beampod.envs._layout import EnvLayout, env_python, site_packages
from beampod.errors import CycleEnvError


@dataclass(frozen=True)
class InstrumentRuntime:
    """The interpreter and the path entries of one instrument's processes."""

    instrument: str
    cycle: str | None  # the cycle in use (built), or None
    python: str  # the interpreter: the cycle's, or beampod's own
    path: tuple[str, ...]  # put first on PYTHONPATH, in this order
    note: str | None = None  # why the configured cycle is not in use

    @property
    def changes_anything(self) -> bool:
        return bool(self.path) or self.python != sys.executable

    def pythonpath(self, inherited: str | None) -> str:
        """``PYTHONPATH``: this runtime's entries, then what the caller already had."""
        parts = [*self.path, *(p for p in (inherited or "").split(os.pathsep) if p)]
        return os.pathsep.join(parts)

    def marker(self) -> str:
        """Names this runtime in ``BEAMPOD_RUNTIME`` (a session re-executes only once)."""
        return f"{self.instrument}:{self.python}:{os.pathsep.join(self.path)}"


def _configured_cycle(layout: EnvLayout, instrument: str) -> str | None:
    if not layout.pod.config.environments.cycles:
        return None
    try:
        return layout.cycle_of(instrument)
    except CycleEnvError:  # several cycles and the instrument names none
        return None


def cycle_provides_beampod(env: Path) -> bool:
    try:
        return "beampod" in read_manifest(env).get("packages", {})
    except CycleEnvError:
        return False


def instrument_runtime(pod: LoadedPod, instrument: str) -> InstrumentRuntime:
    layout = EnvLayout(pod)
    overlay = layout.overlay_dir(instrument)
    path: list[str] = [str(overlay)] if overlay.is_dir() else []
    cycle = _configured_cycle(layout, instrument)
    if cycle is None:
        return InstrumentRuntime(instrument, None, sys.executable, tuple(path))
    env = layout.env_dir(cycle)
    if not env_python(env).exists():
        note = (
            f"cycle {cycle!r} of {instrument!r} is not built ({env}): its services and "
            f"sessions run with beampod's own environment (`beampod env build {cycle}`)"
        )
        return InstrumentRuntime(instrument, None, sys.executable, tuple(path), note)
    if cycle_provides_beampod(env):
        return InstrumentRuntime(instrument, cycle, str(env_python(env)), tuple(path))
    return InstrumentRuntime(instrument, cycle, sys.executable, (*path, str(site_packages(env))))


def host_runtime(
    instrument: str, cycle: str, environments_root: str, overlays_root: str
) -> InstrumentRuntime:
    """What an instrument runs on a facility host (``beampod deploy``): the cycle contains
    beampod, so its interpreter, with the instrument's overlay first on PYTHONPATH."""
    return InstrumentRuntime(
        instrument,
        cycle,
        f"{environments_root}/{cycle}/bin/python",
        (f"{overlays_root}/{instrument}",),
    )
