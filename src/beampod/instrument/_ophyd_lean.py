"""ophyd without its area detector support until something asks for it (ADR 0013).

``import ophyd`` runs ``from .areadetector import *`` and imports the multichannel
analyzer and quad electrometer classes built on it: ~0.25 CPU-s and ~13 MB resident in
every process that loads an instrument (the queue worker, at each environment open
and so at the pod's start, and every session), most of it class creation for area
detector plugins an instrument of motors and signals never uses.

:func:`lean_ophyd` imports ophyd from its own ``__init__`` with those three import
lines left out, and gives the package a module ``__getattr__`` and ``__dir__``
(PEP 562) that run them, as written, the first time a name the package does not have
yet is asked for (``ophyd.AreaDetector``, ``from ophyd import EpicsMCA``, ``from
ophyd import *``, ``dir(ophyd)``). ``import ophyd.areadetector`` and its submodules
import as usual. Pinned: when the installed ``ophyd/__init__.py`` is not the one of
:data:`PINNED_INIT_SHA256`, ophyd is imported as it ships (logged), and
``tests/instrument/test_ophyd_lean.py`` fails until the change is read.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import sys
import types
from typing import Any

from beampod._lazy import run_on_first_lookup

log = logging.getLogger("beampod.instrument")

#: sha256 of ``ophyd/__init__.py`` of the locked ophyd (1.11.2).
PINNED_INIT_SHA256 = "758cf2c0b967605199fcd88133e04b421dba7d5e4a93df2149cc7eab1d63abf0"
#: The lines of that file run on first use instead of at import.
DEFERRED_LINES = (
    "from .areadetector import *  # noqa: F401, F402, E402, F403\n",
    "from .mca import EpicsDXP, EpicsMCA  # noqa: F401, F402, E402\n",
    "from .quadem import APS_EM, NSLS_EM, QuadEM, TetrAMM  # noqa: F401, F402, E402\n",
)


def lean_ophyd() -> bool:
    """Import ophyd with :data:`DEFERRED_LINES` deferred. False (and nothing done) when
    ophyd is imported already, not installed, or not the pinned source."""
    if "ophyd" in sys.modules:
        return False
    spec = importlib.util.find_spec("ophyd")
    if spec is None or spec.origin is None:
        return False
    with open(spec.origin, "rb") as fh:
        source = fh.read()
    if hashlib.sha256(source).hexdigest() != PINNED_INIT_SHA256:
        log.info("ophyd's __init__ differs from the pinned source: imported as ophyd ships it")
        return False
    text = source.decode()
    for line in DEFERRED_LINES:
        text = text.replace(line, "", 1)
    # Through the import system (its per-module lock: another thread importing ophyd
    # meanwhile waits for the whole module), with this finder first for this one import.
    finder = _LeanOphyd(text, spec.origin, spec.submodule_search_locations)
    sys.meta_path.insert(0, finder)
    try:
        importlib.import_module("ophyd")
    finally:
        sys.meta_path.remove(finder)
    return True


class _LeanOphyd:
    """Finds ``ophyd`` and loads it from ``text``, its ``__init__`` less the deferred
    lines (a finder and loader by protocol, as in ``beampod._lazy``)."""

    def __init__(self, text: str, origin: str, locations: list[str] | None) -> None:
        self.text, self.origin, self.locations = text, origin, locations

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "ophyd":
            return None
        loader: Any = self
        return importlib.util.spec_from_file_location(
            fullname, self.origin, loader=loader, submodule_search_locations=self.locations
        )

    def create_module(self, spec: Any) -> None:
        return None  # the default module object

    def exec_module(self, module: types.ModuleType) -> None:
        exec(compile(self.text, self.origin, "exec", dont_inherit=True), module.__dict__)
        _install_deferred(module, self.origin)


def _install_deferred(module: types.ModuleType, origin: str) -> None:
    deferred = compile("".join(DEFERRED_LINES), origin, "exec", dont_inherit=True)
    # Dunder lookups too (``__wrapped__``, ``__all__`` of a star import, which then takes
    # every public name, as for the real ophyd) run the deferred lines first.
    load = run_on_first_lookup(module, lambda: exec(deferred, module.__dict__))

    def __dir__() -> list[str]:
        load()
        return sorted(module.__dict__)

    module.__dir__ = __dir__  # type: ignore[method-assign]
