"""Loading an instrument package: the ``devices()`` / ``plans()`` convention.

An instrument package (the demo, a facility's own, one made by ``beampod new
instrument``) exposes two functions at top level and creates nothing at import time:

- ``devices() -> dict[str, Device]``; it may accept an ``iocs`` keyword, then it gets the
  pod's IOCs of this instrument as ``[{"family": ..., "prefix": ...}, ...]`` to build PV
  names from;
- ``plans() -> dict[str, plan function]``.

Names become the names users type (``scan([pinhole], motor_ph, ...)``) so they must be
Python identifiers.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from beampod.errors import UsageError
from beampod.instrument._ca_waits import calm_ca_waits
from beampod.instrument._ophyd_lean import lean_ophyd

PlanFunction = Callable[..., Any]


@dataclass
class Instrument:
    package: str
    devices: dict[str, object] = field(default_factory=dict)
    plans: dict[str, PlanFunction] = field(default_factory=dict)


def load_instrument(
    import_path: str, iocs: Iterable[Mapping[str, str]] | None = None
) -> Instrument:
    """Import ``import_path`` and call its ``devices()`` and ``plans()``.

    Raises :class:`UsageError` if the import fails, a function is missing, or either
    returns something other than a dict of identifier -> object (callables for plans).
    """
    lean_ophyd()  # before the package imports ophyd: area detector support on first use
    calm_ca_waits()  # pyepics' blocking waits sleep in libca instead of spinning
    try:
        module = importlib.import_module(import_path)
    except ImportError as exc:
        raise UsageError(
            f"cannot import instrument package {import_path!r}: {exc} "
            f"(is it installed in this environment? `pip install -e <dir>`)"
        ) from exc
    missing = [n for n in ("devices", "plans") if not callable(getattr(module, n, None))]
    if missing:
        raise UsageError(
            f"instrument package {import_path!r} lacks {' and '.join(f'{m}()' for m in missing)}; "
            f"an instrument package exposes devices() -> dict[str, Device] and "
            f"plans() -> dict[str, plan] (see docs/instruments.md)"
        )
    devices_fn: Callable[..., Any] = module.devices
    if iocs is not None and _accepts(devices_fn, "iocs"):
        devices = devices_fn(iocs=[dict(i) for i in iocs])
    else:
        devices = devices_fn()
    plans = module.plans()
    _check_mapping(import_path, "devices()", devices, need_callable=False)
    _check_mapping(import_path, "plans()", plans, need_callable=True)
    clash = sorted(set(devices) & set(plans))
    if clash:
        raise UsageError(
            f"instrument package {import_path!r} uses these names for both a device and "
            f"a plan: {', '.join(clash)}"
        )
    return Instrument(package=import_path, devices=dict(devices), plans=dict(plans))


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _check_mapping(package: str, what: str, value: object, *, need_callable: bool) -> None:
    if not isinstance(value, Mapping):
        raise UsageError(
            f"{package}.{what} must return a dict of name -> object, got {type(value).__name__}"
        )
    bad_names = [repr(k) for k in value if not (isinstance(k, str) and k.isidentifier())]
    if bad_names:
        raise UsageError(
            f"{package}.{what} returned names that are not Python identifiers: "
            f"{', '.join(bad_names)}"
        )
    if need_callable:
        bad = [k for k, v in value.items() if not callable(v)]
        if bad:
            raise UsageError(f"{package}.{what} returned non-callable plans: {', '.join(bad)}")
