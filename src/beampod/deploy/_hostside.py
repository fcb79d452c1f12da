"""What a unit runs on its host around the service: ``prepare`` before, ``wait`` after.

Both build the same ServiceSpec that ``beampod up`` would (``pod_services`` of the
host's pod home, with its real secrets) and run its ``prepare`` or its readiness probe.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from beampod.config import PodHome, load_config, load_pod
from beampod.errors import ServiceStartError, UsageError
from beampod.services import (
    LogLimits,
    Probe,
    ServiceSpec,
    from_log_offset,
    log_of,
    pod_services,
    rotate_if_large,
)

# A start noted longer ago than this has given up (the longest readiness deadline of a
# service plus the unit's own 60 s is well under it).
GIVEN_UP_S = 600.0


def _spec(home: PodHome, name: str) -> tuple[ServiceSpec, PodHome]:
    pod = load_pod(home)
    for spec in pod_services(pod):
        if spec.name == name:
            return spec, home
    raise UsageError(f"no service {name!r} in the pod at {home.root}")


def secret_env_text(spec: ServiceSpec, names: tuple[str, ...]) -> str:
    return "".join(f"{k}={spec.env[k]}\n" for k in names if k in spec.env)


def _offset_file(home: PodHome, name: str) -> Path:
    return home.run_dir / f"{name}.log-offset"


def _log_size(probe: Probe) -> int:
    log = log_of(probe)
    try:
        return 0 if log is None else log.stat().st_size
    except FileNotFoundError:
        return 0


def prepare(home: PodHome, name: str) -> None:
    """Run the service's preparation and write its 0600 environment file of secrets.

    Also notes how long the service's log is now, before this start writes to it: a
    readiness line from an earlier run (the log is appended to) must not make ``wait``
    pass, as ``beampod up`` reads only what a start wrote."""
    from beampod.deploy._plan import SECRET_NAME, secret_values

    spec, _ = _spec(home, name)
    home.make_dirs()
    _offset_file(home, name).write_text(f"{_log_size(spec.probe)}\n")
    if spec.prepare is not None:
        spec.prepare()
    pod = load_pod(home)
    hidden = secret_values(pod.secrets)
    names = tuple(sorted(k for k, v in spec.env.items() if v in hidden or SECRET_NAME.search(k)))
    if names:
        env_dir = home.run_dir / "env"
        env_dir.mkdir(mode=0o700, exist_ok=True)
        path = env_dir / f"{name}.env"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secret_env_text(spec, names))
        path.chmod(0o600)


def wait(home: PodHome, name: str) -> None:
    """Return once the service's readiness probe passes; fail after its ready_timeout."""
    spec, _ = _spec(home, name)
    probe = _from_recorded_offset(home, spec)
    deadline = time.monotonic() + spec.ready_timeout

    async def poll() -> bool:
        while time.monotonic() < deadline:
            if await probe.ready():
                return True
            await asyncio.sleep(0.5)
        return False

    if not asyncio.run(poll()):
        raise ServiceStartError(name, f"not ready within {spec.ready_timeout:.0f} s")
    # Started: its log may be rotated again (rotate_logs leaves a starting one alone).
    _offset_file(home, name).unlink(missing_ok=True)


def rotate_logs(home: PodHome, report: Callable[[str], None]) -> list[str]:
    """One round of what the supervisor does every ``pod.logs.check_every_s`` under
    ``beampod up``: rotate each log of the pod home over ``pod.logs.max_mb``. A log whose
    service is starting (``prepare`` noted its offset, ``wait`` has not yet seen it ready)
    is left alone, unless that start began so long ago that it has given up. Returns
    what could not be rotated (a full disk, say), each with why; the rest still is."""
    logs = load_config(home.config_file).pod.logs
    limits = LogLimits.of(logs)
    now = time.time()
    failed = []
    for path in sorted(home.logs_dir.glob("*.log")):
        try:
            noted = _offset_file(home, path.stem).stat().st_mtime
        except FileNotFoundError:
            noted = None
        if noted is not None and now - noted < GIVEN_UP_S:
            continue
        try:
            if rotate_if_large(path, limits):
                report(f"log {path.name} rotated (over {logs.max_mb} MB)")
        except OSError as exc:
            failed.append(f"could not rotate log {path.name}: {exc}")
    return failed


def readiness_probe(home: PodHome, name: str) -> Probe:
    """What ``wait`` polls: the service's probe, reading its log only from where it was
    when ``prepare`` ran (the whole log when it did not)."""
    spec, _ = _spec(home, name)
    return _from_recorded_offset(home, spec)


def _from_recorded_offset(home: PodHome, spec: ServiceSpec) -> Probe:
    try:
        offset = int(_offset_file(home, spec.name).read_text().strip())
    except (FileNotFoundError, ValueError):
        offset = 0
    return from_log_offset(spec.probe, offset)
