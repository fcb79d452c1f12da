"""The supervisor loads only what supervising needs: no tiled, bluesky, pandas or web stack.

It builds every service definition and runs every probe (HTTP, Redis, NATS, Channel Access,
the queue's 0MQ) for as long as the pod runs; a package import in the wrong place pulled
~250 MB into it once. These tests run the supervisor's own code paths, in a fresh
interpreter, against the shared running pod.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest
from tests.datapath._helpers import wait_pod_ready

from beampod.config import LoadedPod
from beampod.services import HttpProbe, pod_services
from beampod.services._svc_redis import redis_answers

pytestmark = pytest.mark.pod

#: Packages the supervisor must never load: each is for the services it starts.
HEAVY = (
    "tiled",
    "bluesky",
    "ophyd",
    "event_model",
    "pandas",
    "pyarrow",
    "scipy",
    "xarray",
    "sqlalchemy",
    "starlette",
    "uvicorn",
    "bluesky_queueserver",
    "httpx",
    "redis",
    "numpy",
    "caproto",
    "bluesky_queueserver_api",
    "jsonschema",
    "IPython",
    "matplotlib",
)

_SUPERVISOR_PATHS = """
import asyncio, json, sys
from pathlib import Path
from beampod.config import PodHome, load_pod
import beampod.services.__main__
from beampod.services import pod_services

pod = load_pod(PodHome(Path(sys.argv[1])))
specs = pod_services(pod)

async def passes(probe):
    # The pod's supervisor replaces the same health node in Tiled every few seconds:
    # when both write it at once one of the two fails, so a failure is tried again.
    for _ in range(3):
        if await probe.ready():
            return True
        await asyncio.sleep(0.5)
    return False

async def probe_all():
    # Readiness and, where a service has one, its separate health check (a Tiled write,
    # the writer's progress): the supervisor runs both for as long as the pod runs.
    ready = {s.name: await passes(s.probe) for s in specs}
    health = {s.name: await s.health.ready() for s in specs if s.health is not None}
    described = {s.name: s.probe.description for s in specs}
    return {"probe": ready, "health": health, "described": described}

# The queue-http start-up steps (its config; opening the worker environment, idempotent:
# it is open).
http = next(s for s in specs if s.name == "queue-http")
http.prepare()
http.after_dependencies()
ready = asyncio.run(probe_all())
print(json.dumps({"ready": ready, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def test_supervisor_code_paths_import_nothing_heavy(pod: LoadedPod) -> None:
    wait_pod_ready(pod)
    # `python -m beampod.services` imports its entry, builds every service definition,
    # runs the queue's start-up step, probes every service: the same here, then the
    # interpreter says what it loaded.
    proc = subprocess.run(
        [sys.executable, "-c", _SUPERVISOR_PATHS, str(pod.home.root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    out = json.loads(proc.stdout.splitlines()[-1])
    # Every probe passed (so the light probes do talk to the real servers) ...
    probes, health = out["ready"]["probe"], out["ready"]["health"]
    assert probes and all(probes.values()), probes
    assert {"tiled", "redis", "queue-http", "web"} <= set(probes)
    # The Tiled write (part of tiled's probe) and the writer's progress check (its
    # health check) ran, and passed on a healthy pod.
    assert "stores a 64 KiB array" in out["ready"]["described"]["tiled"]
    assert "writer" in health and all(health.values()), health
    # ... without loading any of the services' libraries.
    loaded = set(out["modules"]) & set(HEAVY)
    assert not loaded, f"the supervisor's code paths import {sorted(loaded)}"


def test_running_supervisor_maps_no_heavy_library(pod: LoadedPod) -> None:
    # The real process: compiled extensions of numpy, pandas, pyarrow, sqlalchemy,
    # scipy, numba, orjson (tiled's) would be mapped if anything had imported them.
    wait_pod_ready(pod)
    pid = int(pod.home.supervisor_pid_file.read_text())
    maps = Path(f"/proc/{pid}/maps").read_text()
    packages = {part.split("/")[0] for part in maps.split("site-packages/")[1:] if "/" in part}
    unwanted = {"pandas", "pyarrow", "sqlalchemy", "scipy", "numba", "llvmlite", "orjson", "numpy"}
    assert not packages & unwanted, sorted(packages)
    # Nor aiohttp, which nats-py imports for websocket URLs only: its import made two
    # TLS contexts while Tiled was importing (ADR 0031). The supervisor probes the bus
    # with nats-py, so the check would see it.
    assert "pydantic_core" in packages, sorted(packages)
    assert "aiohttp" not in packages, sorted(packages)


def test_http_probe_speaks_http_to_the_real_servers(pod: LoadedPod) -> None:
    wait_pod_ready(pod)
    spec = {s.name: s for s in pod_services(pod)}["tiled"]
    url = spec.address
    reader = pod.secrets.tiled_reader_key.get_secret_value()
    meta = f"{url}/api/v1/metadata/{pod.config.instrument_name}"

    async def check() -> list[bool]:
        return [
            await HttpProbe(f"{url}/healthz").ready(),
            await HttpProbe(meta, headers={"Authorization": f"Apikey {reader}"}).ready(),
            # No key: 401, which is not ready.
            await HttpProbe(meta).ready(),
            await HttpProbe(meta, ok_statuses=(401,)).ready(),
            await HttpProbe(f"{url}/no/such/route").ready(),
        ]

    assert asyncio.run(check()) == [True, True, False, True, False]


def test_redis_probe_needs_the_pod_password(pod: LoadedPod) -> None:
    wait_pod_ready(pod)
    host, port = pod.config.pod.bind, pod.config.redis.port
    good = pod.secrets.redis_password.get_secret_value()
    assert asyncio.run(redis_answers(host, port, good))
    assert not asyncio.run(redis_answers(host, port, good + "x"))
