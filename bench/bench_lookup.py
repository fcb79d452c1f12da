"""What finding a node costs Tiled and PostgreSQL: tiled's own lookup against beampod's.

Every request to Tiled names a node by its path; a table append then also asks for the
node's data sources with their assets. This times that pair, ``lookup_adapter(path)``
and ``data_sources(include_assets=True)``, in this process on the catalog of a running
PostgreSQL pod (``--home``), with tiled's own methods and with beampod's
(``store/_tiled_fast.py``), alternated ``--repeat`` times: CPU of this process (the
server's side of the work), CPU of the PostgreSQL processes, and wall time, per pair.

The path is a run's stream table, as the writers append to it:
``<instrument>/<probe run>/primary/internal``; the probe run is made for the
benchmark and deleted after it. The PostgreSQL CPU is that of the pod's embedded
server and all its backends: run it on a pod with nothing else going on.

    python bench/bench_idle.py --sizes 1 --keep        # a PostgreSQL pod to measure on
    python bench/bench_lookup.py --home /tmp/bench-idle-1-.../facility
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine, tree_cpu_s

VARIANTS = ("tiled", "beampod")


async def make_probe(catalog: Any, instrument: str) -> list[str]:
    """A run container with a stream and its SQL table, as a writer makes them."""
    import pandas as pd
    from tiled.server.schemas import DataSource
    from tiled.structures.core import StructureFamily
    from tiled.structures.data_source import Management
    from tiled.structures.table import TableStructure

    run_key = f"bench-lookup-{uuid.uuid4().hex}"
    parent = await catalog.lookup_adapter([instrument])
    run = await parent.create_node(StructureFamily.container, metadata={}, key=run_key)
    stream = await run.create_node(StructureFamily.container, metadata={}, key="primary")
    table = TableStructure.from_pandas(pd.DataFrame({"seq_num": [1], "det": [1.0]}))
    source = DataSource(
        structure_family=StructureFamily.table,
        structure=table,
        management=Management.writable,
        mimetype="application/x-tiled-sql-table",
    )
    await stream.create_node(
        StructureFamily.table, metadata={}, key="internal", data_sources=[source]
    )
    return [instrument, run_key, "primary", "internal"]


async def measure(catalog: Any, path: list[str], n: int, postgres_pid: int) -> dict[str, float]:
    cpu0, pg0, t0 = time.process_time(), tree_cpu_s(postgres_pid), time.perf_counter()
    for _ in range(n):
        node = await catalog.lookup_adapter(path)
        await node.data_sources(include_assets=True)
    return {
        "client_ms": (time.process_time() - cpu0) / n * 1e3,
        "postgres_ms": (tree_cpu_s(postgres_pid) - pg0) / n * 1e3,
        "wall_ms": (time.perf_counter() - t0) / n * 1e3,
    }


async def run(
    catalog: Any, instrument: str, n: int, repeat: int, postgres_pid: int
) -> dict[str, list[dict]]:
    from tiled.catalog.adapter import CatalogNodeAdapter

    from beampod.store._tiled_fast import fast_data_sources, fast_lookup

    methods = {
        "tiled": (CatalogNodeAdapter.lookup_adapter, CatalogNodeAdapter.data_sources),
        "beampod": (
            fast_lookup(CatalogNodeAdapter.lookup_adapter),
            fast_data_sources(CatalogNodeAdapter.data_sources),
        ),
    }
    await catalog.startup()
    results: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    path: list[str] = []
    try:
        path = await make_probe(catalog, instrument)
        for variant in VARIANTS:  # warm up: each connection's statements prepared
            CatalogNodeAdapter.lookup_adapter, CatalogNodeAdapter.data_sources = methods[variant]
            await measure(catalog, path, 50, postgres_pid)
        for rep in range(repeat):
            for variant in VARIANTS if rep % 2 == 0 else VARIANTS[::-1]:
                lookup, data_sources = methods[variant]
                CatalogNodeAdapter.lookup_adapter = lookup
                CatalogNodeAdapter.data_sources = data_sources
                got = await measure(catalog, path, n, postgres_pid)
                results[variant].append(got)
                print(
                    f"rep {rep + 1} {variant:8s} per lookup + data sources: "
                    f"this process {got['client_ms']:.3f} ms, PostgreSQL "
                    f"{got['postgres_ms']:.3f} ms CPU, wall {got['wall_ms']:.3f} ms",
                    flush=True,
                )
    finally:
        CatalogNodeAdapter.lookup_adapter, CatalogNodeAdapter.data_sources = methods["tiled"]
        if path:
            probe = await catalog.lookup_adapter(path[:2])
            await probe.delete(recursive=True, external_only=False)
        await catalog.shutdown()
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--home", required=True, help="a running pod whose store is PostgreSQL")
    ap.add_argument("--lookups", type=int, default=500, help="pairs per repetition")
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from beampod.config import PodHome, PostgresStore, load_pod
    from beampod.store._server import build_catalog

    pod = load_pod(PodHome.resolve(Path(args.home)))
    if not isinstance(pod.config.store, PostgresStore):
        print(f"bench_lookup: {args.home} does not store in PostgreSQL", file=sys.stderr)
        return 2
    state = Path(args.home) / "run" / "state.json"
    services = json.loads(state.read_text())["services"] if state.exists() else {}
    postgres_pid = services.get("postgres", {}).get("pid")
    if not postgres_pid:
        print(f"bench_lookup: no running embedded PostgreSQL at {args.home}", file=sys.stderr)
        return 2
    print(f"machine: {machine()}; load average at start: {load_average()}")
    catalog = build_catalog(pod)
    results = asyncio.run(
        run(catalog, pod.config.instrument_name, args.lookups, args.repeat, int(postgres_pid))
    )
    medians = {
        v: {k: statistics.median(r[k] for r in results[v]) for k in results[v][0]} for v in VARIANTS
    }
    labels = {"client_ms": "this process", "postgres_ms": "PostgreSQL", "wall_ms": "wall"}
    for key, label in labels.items():
        t, b = medians["tiled"][key], medians["beampod"][key]
        print(
            f"median {label:12s} tiled {t:.3f} ms, beampod {b:.3f} ms, beampod / tiled {b / t:.2f}"
        )
    print(f"load average at end: {load_average()}")
    if args.json:
        args.json.write_text(json.dumps({"medians": medians, "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
