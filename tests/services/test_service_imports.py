"""Each instrument's services load only the libraries they use (ADR 0013).

A facility runs one queue server (watchdog, manager, worker), queue HTTP server, agent
and writer per instrument, so a library one of them loads for nothing is paid once per
instrument. Their entry points defer or skip such imports; these tests look at the
real processes of the shared running pod -- the compiled extensions each has mapped, so
nothing in the process has to cooperate -- after the pod came up (the queue's worker
environment is open and the manager has checked the instrument's plans).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tests.conftest import beampod_cli
from tests.datapath._helpers import wait_pod_ready
from tests.queue.conftest import queue_processes

from beampod.config import LoadedPod

pytestmark = pytest.mark.pod


def mapped_packages(pid: int) -> set[str]:
    """Top-level packages under site-packages with a file mapped into the process."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return {part.split("/")[0] for part in maps.split("site-packages/")[1:] if "/" in part}


def service_pids(pod: LoadedPod) -> dict[str, int]:
    state = wait_pod_ready(pod)
    return {name: int(s["pid"]) for name, s in state["services"].items() if s.get("pid")}


def test_queue_http_server_maps_no_dataframe_or_array_library(pod: LoadedPod) -> None:
    # bluesky-httpserver imports pandas (with numpy, pyarrow, numexpr) for spreadsheet
    # uploads only: deferred, they load on the first upload.
    packages = mapped_packages(service_pids(pod)["queue-http"])
    assert "zmq" in packages, sorted(packages)  # the check sees what is loaded
    assert not packages & {"pandas", "pyarrow", "numpy", "numexpr"}, sorted(packages)
    # Nor its authentication database (SQLAlchemy's compiled extensions; the gate
    # authenticates, ADR 0022), nor uvicorn's --reload watcher.
    assert not packages & {"sqlalchemy", "watchfiles"}, sorted(packages)
    # Nor python-jose's JWT with cryptography (tokens single-user mode never issues).
    assert "cryptography" not in packages, sorted(packages)


def test_queue_manager_and_worker_load_only_their_own(pod: LoadedPod) -> None:
    pids = service_pids(pod)
    # The manager checks a submitted plan against the instrument's plans and their
    # parameters (which is where it used to import bluesky); the item is then removed.
    added = beampod_cli(pod.home.root, "queue", "add", "count([pinhole], 1)")
    assert "queued" in added.stdout, added.stdout
    beampod_cli(pod.home.root, "queue", "clear")
    # start-re-manager's watchdog forks the manager and (on the manager's request, when
    # the environment opens) the worker, and no other process: the manager is the one
    # listening on the queue's control port (a manager the watchdog restarted is
    # younger than the worker; the killed one must not be left as a zombie).
    watchdog, manager, worker = queue_processes(pids["queue"], pod.config.queue.control_port)
    on_manager, on_worker = mapped_packages(manager.pid), mapped_packages(worker.pid)
    # The worker runs plans: bluesky's numpy and pyepics are there ...
    assert {"numpy", "epics", "zmq"} <= on_worker, sorted(on_worker)
    # ... but not nats-py's websocket transport (aiohttp), nor ophyd-async, which the
    # RunEngine imports only to record its version (with it compress-pickle's lz4 and
    # tenacity's tornado; ADR 0022): the demo instrument does not use it.
    assert not on_worker & {"aiohttp", "lz4", "tornado"}, sorted(on_worker)
    # Nor pyepics's fallback decoder, until a string is not valid UTF-8 (ADR 0025).
    assert "charset_normalizer" not in on_worker, sorted(on_worker)
    # The manager checks plans against their parameters without importing bluesky,
    # and with it numpy.
    assert "zmq" in on_manager and "numpy" not in on_manager, sorted(on_manager)
    # redis-py (hiredis its compiled part) is the manager's, loaded when it opened its
    # queue; the watchdog, which both processes are forked from, never loads it (ADR
    # 0025). (The worker is not checked: a plan of the shared pod may use Redis.)
    assert "hiredis" in on_manager, sorted(on_manager)
    assert "hiredis" not in mapped_packages(watchdog.pid)


def test_writer_and_agent_map_only_what_they_use(pod: LoadedPod) -> None:
    pids = service_pids(pod)
    writer, agent = mapped_packages(pids["writer"]), mapped_packages(pids["agent"])
    # The writer keeps pyarrow (it writes Arrow tables) ...
    assert "pyarrow" in writer, sorted(writer)
    # ... not nats-py's websocket transport, nor the optional libraries marked absent
    # (sparse's numba and llvmlite, scipy, SQLAlchemy, pandas). blosc2 is deferred, not
    # absent: this shared pod's writer may have decoded a compressed array answer by now
    # (a run with array data), so it is checked where the runs are known, as is the
    # write path without pandas (tests/store/test_writer_imports.py).
    unwanted = {"aiohttp", "numba", "llvmlite", "scipy", "sqlalchemy", "pandas"}
    assert not writer & unwanted, sorted(writer & unwanted)
    # The pod's agent is the default step recommender: no numpy (only the peak finder
    # uses it), no aiohttp.
    assert "pydantic_core" in agent, sorted(agent)
    assert not agent & {"numpy", "aiohttp"}, sorted(agent)
    # Nor the web console's: its live view reads the bus over nats://.
    web = mapped_packages(pids["web"])
    assert "pydantic_core" in web and "aiohttp" not in web, sorted(web)


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().partition("=")[::2] for item in raw if b"=" in item)


def test_services_that_do_no_linear_algebra_run_one_blas_thread(pod: LoadedPod) -> None:
    # numpy's OpenBLAS would start a thread per core in each of them, spinning at import
    # next to Tiled's start (services/_spec.py NO_BLAS_THREADS).
    pids = service_pids(pod)
    quiet = ["tiled", "writer", "web", *(n for n in pids if n.startswith("ioc"))]
    assert "numpy" in mapped_packages(pids["tiled"])  # the setting has something to act on
    for name in quiet:
        assert _environ(pids[name]).get("OPENBLAS_NUM_THREADS") == "1", name
    # The queue's worker runs the user's plans: OpenBLAS's default, as the user set it.
    _, _, worker = queue_processes(pids["queue"], pod.config.queue.control_port)
    assert _environ(worker.pid).get("OPENBLAS_NUM_THREADS") == os.environ.get(
        "OPENBLAS_NUM_THREADS"
    )
