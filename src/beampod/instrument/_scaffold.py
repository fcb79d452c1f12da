"""``beampod new instrument NAME [DIR]``: write a new, installable instrument package.

The package follows the convention of :mod:`beampod.instrument._load` and starts with
``ophyd.sim`` devices, so its own test passes before any IOC exists; replace them with
the instrument's real devices. It does not depend on beampod: a facility can test and
ship it on its own.
"""

from __future__ import annotations

import keyword
import re
import sys
from pathlib import Path

from beampod.errors import UsageError

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=68", "wheel"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "Bluesky instrument package {name}: devices and plans"
requires-python = ">=3.11"
dependencies = ["bluesky>=1.14", "ophyd>=1.10"]

[project.optional-dependencies]
test = ["pytest>=8"]

[tool.setuptools]
packages = ["{name}"]

[tool.pytest.ini_options]
# Lets `pytest` find the package before it is installed.
pythonpath = ["."]
testpaths = ["tests"]
"""

_INIT = '''\
"""Instrument package {name}: ``devices()`` and ``plans()``.

Convention (see beampod's docs/instruments.md): nothing is created at import time;
``devices()`` returns name -> ophyd device, ``plans()`` returns name -> plan function.
The names are what users type: ``RE(scan([det], motor, -1, 1, 11))`` in the session, or
``scan([det], motor, -1, 1, 11)`` in the queue.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import bluesky.plan_stubs as bps
import bluesky.plans as bp


def devices() -> dict[str, Any]:
    """Create this instrument's devices.

    These are ophyd.sim devices so everything runs without IOCs. Replace them with the
    real ones, e.g. ``EpicsMotor("XF:01ID-OP{{Mtr:1}}", name="motor")``; keep each
    device's ``name`` equal to its key.
    """
    from ophyd.sim import SynAxis, SynGauss

    motor = SynAxis(name="motor")
    det = SynGauss("det", motor, "motor", center=0.0, Imax=1000.0, sigma=1.0)
    return {{"motor": motor, "det": det}}


def move_and_count(detectors: list[Any], motor: Any, position: float, num: int = 1):
    """An instrument plan: move ``motor`` to ``position``, then count ``detectors``."""
    yield from bps.mv(motor, position)
    return (yield from bp.count(detectors, num=num))


def plans() -> dict[str, Callable[..., Any]]:
    """The plans users may run by name."""
    return {{
        "count": bp.count,
        "scan": bp.scan,
        "rel_scan": bp.rel_scan,
        "list_scan": bp.list_scan,
        "grid_scan": bp.grid_scan,
        "move_and_count": move_and_count,
    }}
'''

_TEST = '''\
"""The package follows the instrument convention and its plans run."""

from __future__ import annotations

import {name}


def test_convention() -> None:
    devices = {name}.devices()
    plans = {name}.plans()
    assert devices and plans
    for key, device in devices.items():
        assert key.isidentifier() and device.name == key
    assert all(callable(p) for p in plans.values())
    assert not set(devices) & set(plans)


def test_scan_runs() -> None:
    from bluesky import RunEngine

    RE = RunEngine({{}})
    devices = {name}.devices()
    plans = {name}.plans()
    docs: list[tuple[str, dict]] = []
    (uid,) = RE(plans["scan"]([devices["det"]], devices["motor"], -2, 2, 5),
                lambda name, doc: docs.append((name, doc)))
    events = [d for n, d in docs if n == "event"]
    assert len(events) == 5
    values = [e["data"]["det"] for e in events]
    assert values.index(max(values)) == 2  # the peak is at the centre


def test_instrument_plan_runs() -> None:
    from bluesky import RunEngine

    RE = RunEngine({{}})
    devices = {name}.devices()
    uids = RE({name}.plans()["move_and_count"]([devices["det"]], devices["motor"], 0.5))
    assert len(uids) == 1
    assert devices["motor"].position == 0.5
'''

_README = """\
# {name}

A Bluesky instrument package: `devices()` and `plans()` in `{name}/__init__.py`.

    pip install -e .        # make it importable
    pytest                  # its own tests (ophyd.sim devices, no IOCs needed)

Use it in a beampod pod by setting `package: {name}` under `instruments:` in the pod's
`config.yaml`.
"""


def scaffold(name: str, dest: Path) -> Path:
    """Create ``dest/name/`` with an installable package ``name``; return that directory."""
    _check_name(name)
    project = Path(dest).expanduser().resolve() / name
    if project.exists() and any(project.iterdir()):
        raise UsageError(f"{project} already exists and is not empty; choose another DIR")
    files = {
        project / "pyproject.toml": _PYPROJECT.format(name=name, dist=name.replace("_", "-")),
        project / name / "__init__.py": _INIT.format(name=name),
        project / "tests" / f"test_{name}.py": _TEST.format(name=name),
        project / "README.md": _README.format(name=name),
    }
    try:
        for path, text in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    except OSError as exc:
        raise UsageError(f"cannot write the instrument package into {project}: {exc}") from exc
    return project


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name) or keyword.iskeyword(name):
        raise UsageError(
            f"instrument package name {name!r} must be a lower-case Python identifier "
            f"(letters, digits, underscores; starting with a letter)"
        )
    if name in sys.stdlib_module_names or name in {"beampod", "bluesky", "ophyd", "tests"}:
        raise UsageError(f"{name!r} would shadow an existing module; choose another name")
