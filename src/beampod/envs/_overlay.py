"""Per-instrument overlays: packages that shadow the read-only base on PYTHONPATH.

An overlay is a plain directory (``uv pip install --target``) owned by the
instrument's staff. A session or service of the instrument runs with
``PYTHONPATH=<overlay>:<base site-packages>``, so a package in the overlay wins over
the base's copy; other instruments never see it.
"""

from __future__ import annotations

import grp
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from beampod.config import LoadedPod
from beampod.envs._layout import EnvLayout, env_python, site_packages
from beampod.envs._tree import packages
from beampod.envs._uv import index_args, run_uv
from beampod.errors import CycleEnvError


@dataclass(frozen=True)
class Shadow:
    """One overlay package and what it hides in the base (``None``: the base lacks it)."""

    name: str
    overlay_version: str
    base_version: str | None


def _base(layout: EnvLayout, instrument: str, cycle: str | None) -> Path:
    name = layout.cycle_of(instrument, cycle)
    env = layout.env_dir(name)
    if not env_python(env).exists():
        raise CycleEnvError(f"cycle {name!r} is not built ({env}): run `beampod env build {name}`")
    return env


def _hand_to_staff(layout: EnvLayout, instrument: str, overlay: Path) -> None:
    """Give the overlay to the instrument's staff group: group-writable, setgid dirs."""
    group = layout.pod.config.environments.staff_groups.get(instrument)
    if group is None:
        return
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        raise CycleEnvError(f"staff group {group!r} of {instrument!r} does not exist") from None
    for dirpath, dirnames, filenames in os.walk(overlay):
        base = Path(dirpath)
        os.chown(base, -1, gid)
        base.chmod(0o2775)
        for f in filenames:
            path = base / f
            if not path.is_symlink():
                os.chown(path, -1, gid)
                path.chmod(path.stat().st_mode | 0o060)
        dirnames[:] = [d for d in dirnames if not (base / d).is_symlink()]


def overlay_install(
    layout: EnvLayout,
    instrument: str,
    requirements: list[str],
    cycle: str | None = None,
    no_deps: bool = False,
) -> dict[str, str]:
    base = _base(layout, instrument, cycle)
    settings = layout.cycle(layout.cycle_of(instrument, cycle))
    overlay = layout.overlay_dir(instrument)
    overlay.mkdir(parents=True, exist_ok=True)
    run_uv(
        [
            "pip",
            "install",
            "--target",
            str(overlay),
            "--python",
            str(env_python(base)),
            "--link-mode",
            "copy",
            "--no-config",
            *(["--no-deps"] if no_deps else []),
            *index_args(settings),
            *requirements,
        ],
        f"installing into the overlay of {instrument!r}",
    )
    lock = overlay / ".lock"  # uv's lock file is created world-writable
    if lock.exists():
        lock.chmod(0o644)
    _hand_to_staff(layout, instrument, overlay)
    return packages(overlay)


def overlay_remove(
    layout: EnvLayout, instrument: str, names: list[str], cycle: str | None = None
) -> dict[str, str]:
    overlay = layout.overlay_dir(instrument)
    installed = packages(overlay) if overlay.exists() else {}
    missing = [n for n in names if n.lower().replace("_", "-") not in installed]
    if missing:
        raise CycleEnvError(
            f"not in the overlay of {instrument!r}: {', '.join(missing)} "
            f"(have: {', '.join(installed) or 'nothing'})"
        )
    base = _base(layout, instrument, cycle)
    run_uv(
        [
            "pip",
            "uninstall",
            "--target",
            str(overlay),
            "--python",
            str(env_python(base)),
            "--no-config",
            *names,
        ],
        f"removing from the overlay of {instrument!r}",
    )
    return packages(overlay)


def overlay_packages(layout: EnvLayout, instrument: str) -> dict[str, str]:
    overlay = layout.overlay_dir(instrument)
    return packages(overlay) if overlay.exists() else {}


def overlay_diff(layout: EnvLayout, instrument: str, cycle: str | None = None) -> list[Shadow]:
    base = packages(site_packages(_base(layout, instrument, cycle)))
    return [
        Shadow(name, version, base.get(name))
        for name, version in overlay_packages(layout, instrument).items()
    ]


def instrument_pythonpath(layout: EnvLayout, instrument: str, cycle: str | None = None) -> str:
    """``<overlay>:<base site-packages>``: what a session of the instrument runs with."""
    base = layout.env_dir(layout.cycle_of(instrument, cycle))
    return os.pathsep.join([str(layout.overlay_dir(instrument)), str(site_packages(base))])


def _top_level_modules(overlay: Path) -> list[str]:
    names = set()
    for entry in overlay.iterdir():
        if entry.name.startswith((".", "_")) or entry.name.endswith((".dist-info", ".egg-info")):
            continue
        if entry.is_dir() and (entry / "__init__.py").exists():
            names.add(entry.name)
        elif entry.suffix == ".py" or entry.name.endswith(".so"):
            names.add(entry.name.split(".")[0])
    return sorted(names)


_IMPORT_ALL = """
import importlib, json, sys
failed = {}
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except BaseException as exc:  # report every failure by name, whatever it is
        failed[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(failed))
"""


def _distribution_of(overlay: Path, module: str) -> str:
    """The distribution in the overlay that installed top-level ``module`` (its name if none)."""
    from importlib.metadata import distributions

    for dist in distributions(path=[str(overlay)]):
        tops = (dist.read_text("top_level.txt") or "").split()
        files = [str(f).split("/")[0].split(".")[0] for f in (dist.files or [])]
        if module in tops or module in files:
            return str(dist.metadata["Name"] or module)
    return module


def check_overlay(pod: LoadedPod, instrument: str, timeout: float = 60.0) -> list[str]:
    """Import every top-level module of the instrument's overlay in a fresh interpreter
    with the instrument's runtime (its interpreter and PYTHONPATH, as its services get);
    one line per module that fails (empty: all good)."""
    from beampod.envs._runtime import instrument_runtime

    layout = EnvLayout(pod)
    overlay = layout.overlay_dir(instrument)
    if not overlay.is_dir():
        return []
    modules = _top_level_modules(overlay)
    if not modules:
        return []
    runtime = instrument_runtime(pod, instrument)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONHOME"}
    env["PYTHONPATH"] = runtime.pythonpath(os.environ.get("PYTHONPATH"))
    try:
        proc = subprocess.run(
            [runtime.python, "-c", _IMPORT_ALL, *modules],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        failed: dict[str, str] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as exc:
        return [f"overlay of {instrument!r}: the import check did not run ({exc})"]
    lines = []
    for name, why in sorted(failed.items()):
        dist = _distribution_of(overlay, name)
        what = name if dist.lower().replace("_", "-") == name.lower() else f"{name} (of {dist})"
        lines.append(f"overlay of {instrument!r}: {what} fails to import ({why})")
    return lines
