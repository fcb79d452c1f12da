"""A supervisor that judges services by their own CPU alone.

The machine running the tests is often saturated (CI's two cores under two workers): with
its real CPU pressure, the supervisor would give failing starts more time and not restart
a failing service for ``busy_restart_s``, which is right for a facility but not what the
tests of the plain rules assert. Tests of the saturation rules inject a pressure instead."""

from __future__ import annotations

from typing import Any

from beampod.services import Supervisor


def no_pressure_information() -> None:
    """What a machine without /proc/pressure/cpu says: nothing."""
    return None


def calm_supervisor(*args: Any, **kwargs: Any) -> Supervisor:
    return Supervisor(*args, cpu_pressure=no_pressure_information, **kwargs)
