"""A scaffolded facility's life in the facility benches: made on free ports with the
options a bench gives it (``make_and_start``), waited for until quiet (``settle``), its
status and memory read through ``beampod status --json``, its instruments' own services
stopped (``--instrument-services stop``), its readers' containers opened, its logs kept
when a run fails. Shared by bench_facility.py, bench_idle.py, bench_steady.py and
bench_soak.py."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from _facility_load import cpu_by_kind, cpu_seconds, memory_of
from _facility_options import POOL_SETTINGS
from tests.facility._facility import free_ports_config, run_cli


def status(root: Path) -> dict[str, Any]:
    return json.loads(run_cli(root, "status", "--json").stdout)


def memory(root: Path) -> dict[str, Any]:
    return memory_of(status(root))


def make(
    root: Path,
    n: int,
    pools: dict[str, int | bool | None],
    ioc_processes: str | None = None,
    event_page_ms: int | None = None,
) -> None:
    run_cli(root, "new", "facility", str(root), "--instruments", str(n), home=False)
    config = root / "config.yaml"
    cfg = yaml.safe_load(config.read_text())
    free_ports_config(cfg, slim=False)
    cfg.setdefault("pod", {}).update({k: v for k, v in pools.items() if v is not None})
    if ioc_processes is not None:
        cfg["channel_access"]["ioc_processes"] = ioc_processes
    if event_page_ms is not None:
        cfg["bus"]["event_page_ms"] = event_page_ms
    config.write_text(yaml.safe_dump(cfg, sort_keys=False))
    run_cli(root, "init")


def pod_settings(args: argparse.Namespace) -> dict[str, int | bool | None]:
    """The ``pod`` settings ``args`` give a scaffolded facility (None: the scaffold's)."""
    pods: dict[str, int | bool | None] = {k: getattr(args, k, None) for k in POOL_SETTINGS}
    if args.fork_services is not None:
        pods["fork_services"] = args.fork_services == "on"
    pods["background_nice"] = args.background_nice
    return pods


def make_and_start(root: Path, n: int, args: argparse.Namespace) -> float:
    """Scaffold a facility of ``n`` instruments at ``root`` as ``args`` say and bring it
    up (``up -d``): the seconds that took."""
    make(root, n, pod_settings(args), args.ioc_processes, args.event_page_ms)
    t0 = time.monotonic()
    run_cli(root, "up", "-d", timeout=1800)
    return time.monotonic() - t0


SETTLE_WINDOW_S = 5.0


def settle(root: Path, cpu_share: float, longest: float) -> float:
    """Wait until the facility's services together use less than ``cpu_share`` of a
    core over a 5 s window (its queue workers read their devices' metadata, the IOC
    host answers them, for a while after `up -d` returned), at most ``longest``
    seconds: the steady phase then measures the data path, not the start's tail.
    Returns the seconds waited."""
    t0 = time.monotonic()
    while True:
        before, t1 = cpu_seconds(status(root)), time.monotonic()
        time.sleep(SETTLE_WINDOW_S)  # a measurement window
        after, t2 = cpu_seconds(status(root)), time.monotonic()
        used = sum(cpu_by_kind(before, after, t2 - t1).values())
        waited = time.monotonic() - t0
        if used < cpu_share or waited >= longest:
            state = "settled" if used < cpu_share else "not settled"
            print(f"  {state} after {waited:.0f} s: {used:.0%} of a core", flush=True)
            return waited


def reader_containers(pod: Any) -> dict[str, Any]:
    """Each instrument's Tiled container, opened with its reader key: straight to the
    container, since an instrument's reader key may not read the root."""
    from beampod.store._client import connect
    from beampod.store._layout import tiled_url

    url = tiled_url(pod)
    return {
        i: connect(
            f"{url}/api/v1/metadata/{i}",
            pod.secrets.for_instrument(i).tiled_reader_key.get_secret_value(),
        )
        for i in pod.config.instruments
    }


#: The services of an instrument's own host in a facility (docs/facility.md "What
#: starts"): its IOCs, its queue server and its queue's HTTP server, its agent. The
#: central services, and the writers (the data path), stay.
INSTRUMENT_HOST_SERVICES = ("ioc-", "queue-", "agent-")


def stop_instrument_services(root: Path) -> list[str]:
    """Stop every instrument's own services (``--instrument-services stop``): in a
    facility they run on the instruments' hosts, as the RunEngines the emitters stand
    for do, not beside the central services. Returns the services stopped."""
    names = [
        name
        for name, svc in status(root)["services"].items()
        if name.startswith(INSTRUMENT_HOST_SERVICES) and svc["state"] != "stopped"
    ]
    for name in names:
        run_cli(root, "service", "stop", name)
    return names


def keep_logs(root: Path, n: int, why: str) -> None:
    """Copy the facility's logs out of its directory (removed at the end): ``why`` is
    in them."""
    if (root / "logs").exists():
        kept = Path(tempfile.mkdtemp(prefix=f"bench-facility-{n}-logs-"))
        shutil.copytree(root / "logs", kept, dirs_exist_ok=True)
        print(f"N={n}: {why}; the facility's logs are kept in {kept}", flush=True)
