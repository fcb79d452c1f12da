"""The Tiled server starts without the dataframe and array libraries it does not use
(store/_lean.py): a real server process stores with the writer's key, and has neither
numba, llvmlite nor scipy (behind dask.dataframe, dask.array and sparse) mapped. Reads
that use them load them then: every other test of tests/store reads through servers
started the same way."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
from pathlib import Path

import httpx

from beampod.store._health import TILED_HEALTH_BYTES, TILED_HEALTH_NODE, tiled_stores
from beampod.store._lean import PINNED_SOURCES, source_hash
from tests.store.conftest import make_pod, start_tiled, stop_process

HEAVY = {"numba", "llvmlite", "scipy"}


def mapped_packages(pid: int) -> set[str]:
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {part.split("/")[0] for part in maps.split("site-packages/")[1:] if "/" in part}


def test_pinned_to_the_locked_tiled() -> None:
    """Fails when tiled changes a module compiled with postponed annotations: read the
    new source (are its annotations still only annotations?), then move the pin."""
    for name, pinned in PINNED_SOURCES.items():
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        assert source_hash(spec.origin) == pinned, f"{name} changed in tiled: re-read it"


def test_the_policy_defers_what_the_annotations_named() -> None:
    code = (
        "from beampod.store._lean import lean_server_imports\n"
        "assert lean_server_imports()\n"
        "import tiled.catalog, tiled.server.app, bluesky_tiled_plugins\n"
        "from beampod.store._server import build_store_app\n"
        "from beampod._lazy import is_loaded\n"
        "from tiled.adapters.utils import force_reshape\n"
        "print(sorted(m for m in ('dask.dataframe', 'dask.array', 'sparse', 'numba',"
        " 'xarray', 'scipy', 'rich') if is_loaded(m)))\n"
        "print(force_reshape.__annotations__['arr'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    ).stdout.splitlines()
    # Nothing heavy loaded, and the annotation naming dask is a string, not evaluated.
    assert out == ["[]", "Union[np.array, dask.array.Array]"], out


def test_a_real_server_stores_without_them_and_reads_with_them(tmp_path: Path) -> None:
    server = start_tiled(make_pod(tmp_path))
    try:
        # The health write: a container, an array, its bytes (what every run's
        # appends and the supervisor's check do).
        assert asyncio.run(tiled_stores(server.url, server.key("writer")))
        packages = mapped_packages(server.proc.pid)
        assert {"sqlalchemy", "numpy", "pyarrow"} <= packages, sorted(packages)
        assert not packages & HEAVY, sorted(packages & HEAVY)
        # What was stored reads back, whatever that read loads.
        headers = {"Authorization": f"Apikey {server.key('writer')}"}
        url = f"{server.url}/api/v1/array/full/{TILED_HEALTH_NODE}"
        got = httpx.get(url, headers={**headers, "Accept": "application/octet-stream"})
        assert got.status_code == 200 and got.content == bytes(TILED_HEALTH_BYTES)
    finally:
        stop_process(server.proc)
