"""What one live table append costs: CPU of the Tiled server and of the writer's side
per append of ``--rows`` events, measured against a running pod (``--home``).

A RunSink (the writer's own code, the writer's key) stores one run of ophyd's ``det``: the start and
descriptor, then ``--appends`` batches of ``--rows`` events, each batch one
``write_batch`` (one table append), as the writer does during a live run. CPU seconds
are what a loaded machine distorts least, so this compares two versions of Tiled's or
the writer's request path where wall-clock ratios cannot.

    python bench/bench_append.py --home POD [--rows 10] [--appends 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, process_cpu_s


def _docs(rows: int, appends: int) -> list[list[tuple[str, dict]]]:
    """One run as ``count([det], rows * appends)`` emits it (made without a RunEngine,
    so that making it costs nothing next to the appends), in batches of ``rows``."""
    from event_model import compose_run

    run = compose_run(metadata={"plan_name": "count", "detectors": ["det"]})
    key = {"dtype": "number", "shape": [], "source": "SIM:det", "precision": 3}
    desc = run.compose_descriptor(
        name="primary", data_keys={"det": key}, object_keys={"det": ["det"]}
    )
    batches: list[list[tuple[str, dict]]] = [
        [("start", dict(run.start_doc)), ("descriptor", dict(desc.descriptor_doc))]
    ]
    for a in range(appends):
        batch = []
        for i in range(rows):
            t = time.time()
            ev = desc.compose_event(
                data={"det": float(a * rows + i)}, timestamps={"det": t}, seq_num=a * rows + i + 1
            )
            batch.append(("event", dict(ev)))
        batches.append(batch)
    batches.append([("stop", dict(run.compose_stop()))])
    return batches


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", required=True)
    ap.add_argument("--rows", type=int, default=10)
    ap.add_argument("--appends", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from beampod.config import PodHome, load_pod
    from beampod.store import RunSink, items_from
    from beampod.store._layout import tiled_url

    home = Path(args.home)
    pod = load_pod(PodHome.resolve(home))
    state = json.loads((home / "run" / "state.json").read_text())["services"]
    tiled_pid = int(state["tiled"]["pid"])
    sink = RunSink.from_uri(
        tiled_url(pod),
        pod.secrets.tiled_writer_key.get_secret_value(),
        pod.config.instrument_name,
    )
    print(f"load average at start: {load_average()}")
    tiled_ms, client_ms, wall_ms = [], [], []
    for rep in range(args.repeat):
        batches = [items_from(b) for b in _docs(args.rows, args.appends)]
        sink.write_batch(batches[0])
        t0, c0, s0 = time.perf_counter(), process_cpu_s(tiled_pid), time.process_time()
        for b in batches[1:-1]:
            sink.write_batch(b)
        wall = time.perf_counter() - t0
        tiled = process_cpu_s(tiled_pid) - c0
        client = time.process_time() - s0
        sink.write_batch(batches[-1])
        n = len(batches) - 2
        tiled_ms.append(tiled / n * 1e3)
        client_ms.append(client / n * 1e3)
        wall_ms.append(wall / n * 1e3)
        print(
            f"rep {rep + 1}: {n} appends of {args.rows} rows: Tiled CPU "
            f"{tiled_ms[-1]:.2f} ms/append, writer side {client_ms[-1]:.2f} ms/append, "
            f"wall {wall_ms[-1]:.2f} ms/append",
            flush=True,
        )
    out = {
        "tiled_cpu_ms_per_append": statistics.median(tiled_ms),
        "writer_cpu_ms_per_append": statistics.median(client_ms),
        "wall_ms_per_append": statistics.median(wall_ms),
    }
    print(
        f"median: Tiled {out['tiled_cpu_ms_per_append']:.2f} ms, writer "
        f"{out['writer_cpu_ms_per_append']:.2f} ms CPU per append; load average at end: "
        f"{load_average()}"
    )
    if args.json:
        args.json.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
