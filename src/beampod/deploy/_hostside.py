"""What a unit runs on its host around the service: ``prepare`` before, ``wait`` after.

Both build the same ServiceSpec that ``beampod up`` would (``pod_services`` of the
host's pod home, with its real secrets) and run its ``prepare`` or its readiness probe.
"""

from __future__ import annotations

import asyncio
import os
import time

from beampod.config import PodHome, load_pod
from beampod.errors import ServiceStartError, UsageError
from beampod.services import ServiceSpec, pod_services


def _spec(home: PodHome, name: str) -> tuple[ServiceSpec, PodHome]:
    pod = load_pod(home)
    for spec in pod_services(pod):
        if spec.name == name:
            return spec, home
    raise UsageError(f"no service {name!r} in the pod at {home.root}")


def secret_env_text(spec: ServiceSpec, names: tuple[str, ...]) -> str:
    return "".join(f"{k}={spec.env[k]}\n" for k in names if k in spec.env)


def prepare(home: PodHome, name: str) -> None:
    """Run the service's preparation and write its 0600 environment file of secrets."""
    from beampod.deploy._plan import SECRET_NAME, secret_values

    spec, _ = _spec(home, name)
    home.make_dirs()
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
    deadline = time.monotonic() + spec.ready_timeout

    async def poll() -> bool:
        while time.monotonic() < deadline:
            if await spec.probe.ready():
                return True
            await asyncio.sleep(0.5)
        return False

    if not asyncio.run(poll()):
        raise ServiceStartError(name, f"not ready within {spec.ready_timeout:.0f} s")
