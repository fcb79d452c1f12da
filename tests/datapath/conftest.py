"""Fixtures of the data-path fault tests.

They run against real pods (``beampod up -d`` from temporary homes on free ports), once
with the store on SQLite (the session's ``pod``, ``tests/conftest.py``) and once on
PostgreSQL (``pg_pod``, here: only these tests use it, so it stops after them).
Every test ends with the pod whole again (every service ready) and with no process of
the pod's home outside the supervisor's tree: a session process or a stray service left
behind fails the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from beampod.config import LoadedPod
from tests.conftest import call_passed, processes_using
from tests.datapath._helpers import Emitter, stop_emitters, wait_for, wait_pod_ready


def _outside_supervisor(pod: LoadedPod) -> list[psutil.Process]:
    try:
        sup = psutil.Process(int(pod.home.supervisor_pid_file.read_text()))
        tree = {sup.pid} | {p.pid for p in sup.children(recursive=True)}
    except (OSError, ValueError, psutil.NoSuchProcess):
        tree = set()
    return [p for p in processes_using(pod.home.root) if p.pid not in tree]


@pytest.fixture(scope="package")
def pg_pod() -> Iterator[LoadedPod]:
    """A whole demo pod with its store on the embedded PostgreSQL (``beampod up -d``)."""
    from tests._pods import (
        mini_beamline_only,
        postgres_config,
        started_pod,
        without_queue_agent_web,
    )

    def config(cfg: dict[str, Any]) -> None:
        postgres_config(cfg)
        without_queue_agent_web(cfg)
        mini_beamline_only(cfg)  # `beampod run "count([pinhole])"` needs its IOC
        cfg["instruments"]["demo"]["writer"]["hold_early_s"] = 3  # as the session pod

    yield from started_pod(config, prefix="beampod-pgpod-")


@pytest.fixture
def emitters(
    pod: LoadedPod, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[list[Emitter]]:
    """Session processes made by a test (``emitters.append(Emitter(...).start())``); none
    may outlive a test that passed (this teardown kills them either way)."""
    made: list[Emitter] = []
    yield made
    stop_emitters(made, call_passed(request))


@pytest.fixture(params=["sqlite", "postgres"])
def healthy_pod(request: pytest.FixtureRequest, emitters: list[Emitter]) -> Iterator[LoadedPod]:
    """A shared pod on each store backend (SQLite: ``pod``; PostgreSQL: ``pg_pod``),
    checked whole before and after the test (nothing failed, nothing leaked)."""
    pod: LoadedPod = request.getfixturevalue("pod" if request.param == "sqlite" else "pg_pod")
    wait_pod_ready(pod)
    yield pod
    # Whatever the test stopped must be back, and nothing may run outside the pod's tree.
    wait_pod_ready(pod)
    for e in emitters:
        e.kill()
    wait_for(lambda: not _outside_supervisor(pod), 20.0, "no stray processes of the pod home")


@pytest.fixture
def healthy_pods(
    emitters: list[Emitter], pod: LoadedPod, pg_pod: LoadedPod
) -> Iterator[list[LoadedPod]]:
    """Both pods at once (SQLite, PostgreSQL), for a fault that is mostly waiting (one
    outage window for both instead of one after the other); checked as ``healthy_pod``."""
    pods = [pod, pg_pod]
    for each in pods:
        wait_pod_ready(each)
    yield pods
    for each in pods:
        wait_pod_ready(each)
    for e in emitters:
        e.kill()
    wait_for(
        lambda: not any(_outside_supervisor(each) for each in pods),
        20.0,
        "no stray processes of the pod homes",
    )
