"""`beampod status --json` / `--resources` report what the kernel says each process costs."""

from __future__ import annotations

import json
from typing import Any

import psutil
import pytest
from tests.conftest import beampod_cli
from tests.datapath._helpers import wait_pod_ready

from beampod.config import LoadedPod

pytestmark = pytest.mark.pod

MB = 2**20


def _tree_rss(pid: int) -> tuple[int, int]:
    """Resident bytes and process count of ``pid`` and its live descendants, per psutil
    (a zombie, an exited child not reaped yet, has no memory and is not counted, as
    ``beampod status`` does not count it)."""
    root = psutil.Process(pid)
    total, count = 0, 0
    for p in [root, *root.children(recursive=True)]:
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            total += p.memory_info().rss
            count += 1
        except psutil.NoSuchProcess:
            continue
    return total, count


def _close(reported: int, actual: int) -> bool:
    # Memory moves between the two reads (allocations, a GC): 10 % or 8 MB.
    return abs(reported - actual) <= max(8 * MB, actual // 10)


def test_status_json_reports_real_resident_memory(pod: LoadedPod) -> None:
    wait_pod_ready(pod)
    out: dict[str, Any] = json.loads(beampod_cli(pod.home.root, "status", "--json").stdout)
    res = out["resources"]
    services = out["services"]
    assert set(res["services"]) == {n for n, s in services.items() if s["pid"]}
    for name, usage in res["services"].items():
        assert usage["pid"] == services[name]["pid"], name
        actual, count = _tree_rss(usage["pid"])
        assert _close(usage["rss_bytes"], actual), (name, usage, actual)
        assert usage["processes"] == count, (name, usage, count)
        assert usage["uptime_s"] > 0 and usage["cpu_time_s"] >= 0, (name, usage)
    # The queue service is three processes (watchdog, manager, worker): all counted.
    assert res["services"]["queue"]["processes"] >= 2
    sup = res["supervisor"]
    assert sup["pid"] == out["supervisor_pid"]
    own = psutil.Process(sup["pid"]).memory_info().rss
    assert sup["processes"] == 1 and _close(sup["rss_bytes"], own), (sup, own)
    # The fork server is counted on its own too, not with the services it forked.
    fork = res["forkserver"]
    assert fork["pid"] == out["forkserver_pid"] and fork["processes"] == 1, fork
    assert _close(fork["rss_bytes"], psutil.Process(fork["pid"]).memory_info().rss), fork
    parts = sum(u["rss_bytes"] for u in (sup, fork, *res["services"].values()))
    assert res["total_rss_bytes"] == parts
    assert res["total_rss_mb"] == round(parts / MB, 1)


def test_status_resources_table(pod: LoadedPod) -> None:
    wait_pod_ready(pod)
    state = json.loads(beampod_cli(pod.home.root, "status", "--json").stdout)
    text = beampod_cli(pod.home.root, "status", "--resources").stdout
    lines = text.splitlines()
    assert lines[0].split() == ["SERVICE", "PID", "RSS", "MB", "CPU", "%", "UPTIME"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"(supervisor)", "(forkserver)", "total", *state["services"]}
    assert rows["(supervisor)"][1] == str(state["supervisor_pid"])
    assert rows["(forkserver)"][1] == str(state["forkserver_pid"])
    mem = {}
    for name, svc in state["services"].items():
        cols = rows[name]
        assert cols[1] == str(svc["pid"]), (name, cols)
        rss_mb = float(cols[-3])
        actual, _ = _tree_rss(svc["pid"])
        assert _close(int(rss_mb * MB), actual), (name, cols, actual)
        assert float(cols[-2]) >= 0.0
        mem[name] = rss_mb
    total = float(rows["total"][1])
    parts = float(rows["(supervisor)"][2]) + float(rows["(forkserver)"][2]) + sum(mem.values())
    assert abs(total - parts) <= 0.1 * (len(mem) + 2)  # each row is rounded to 0.1 MB


def test_supervisor_threads_do_not_grow_with_its_services(pod: LoadedPod) -> None:
    """A thread per child (CPython 3.11's default child watcher) would be one per
    service; the supervisor watches its children's exits by pidfd instead."""
    wait_pod_ready(pod)
    out: dict[str, Any] = json.loads(beampod_cli(pod.home.root, "status", "--json").stdout)
    children = sum(1 for s in out["services"].values() if s["pid"])
    threads = psutil.Process(out["supervisor_pid"]).num_threads()
    # The main thread and asyncio's default executor (at most min(32, CPUs + 4)).
    assert threads <= 1 + min(32, (psutil.cpu_count() or 1) + 4) < children + 1, (
        threads,
        children,
    )
