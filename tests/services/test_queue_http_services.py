"""The queue HTTP servers of a facility: a process per instrument, or several
instruments' in one pool (``pod.queue_http_pool_size``, ADR 0034). The service specs
only (no pod running); the running pool: tests/facility/test_facility_queues.py."""

from __future__ import annotations

from pathlib import Path

from tests.web._homes import pod_home, three_queue_instruments

from beampod.config import (
    QUEUE_INSTRUMENT_ENV,
    LoadedPod,
    queue_http_services,
    queue_servers,
)
from beampod.queue import http_uri
from beampod.services import pod_services, service_instrument
from beampod.services._probes import AllProbes, HttpProbe


def _three(root: Path, pool: int) -> LoadedPod:
    return three_queue_instruments(root, pool)


def test_a_queue_http_pool_serves_its_members_each_on_its_own_port(tmp_path: Path) -> None:
    pod = _three(tmp_path / "f", pool=2)
    assert queue_http_services(pod.config) == {
        "queue-http-pool-1": ["bl01", "bl02"],  # config order, 2 at a time
        "queue-http-bl03": ["bl03"],
    }
    servers = queue_servers(pod)
    assert [servers[i].http_service for i in ("bl01", "bl02", "bl03")] == [
        "queue-http-pool-1",
        "queue-http-pool-1",
        "queue-http-bl03",
    ]
    specs = {s.name: s for s in pod_services(pod)}
    assert sorted(n for n in specs if n.startswith("queue-http")) == [
        "queue-http-bl03",
        "queue-http-pool-1",
    ]
    pool = specs["queue-http-pool-1"]
    assert pool.argv[-4:] == ("--instrument", "bl01", "--instrument", "bl02")
    assert pool.env == {}  # no key: the process reads them itself, never from argv or env
    assert pool.instrument is None  # shared: central in `beampod status`
    assert service_instrument(pod.config, "queue-http-pool-1") == "bl01"  # placed as bl01's
    assert pool.depends_on == ("queue-bl01", "queue-bl02")
    assert [c.port for c in pool.ports] == [servers[i].settings.http_port for i in ("bl01", "bl02")]
    # Ready when each member answers on its own port with its own control key.
    assert isinstance(pool.probe, AllProbes)
    probes = pool.probe.probes
    assert all(isinstance(p, HttpProbe) for p in probes)
    assert [p.url for p in probes if isinstance(p, HttpProbe)] == [
        f"{http_uri(pod, servers[i])}/api/status" for i in ("bl01", "bl02")
    ]
    assert [p.headers for p in probes if isinstance(p, HttpProbe)] == [
        {"Authorization": f"ApiKey {servers[i].control_key.get_secret_value()}"}
        for i in ("bl01", "bl02")
    ]
    assert pool.address == "; ".join(http_uri(pod, servers[i]) for i in ("bl01", "bl02"))
    alone = specs["queue-http-bl03"]
    assert alone.env == {QUEUE_INSTRUMENT_ENV: "bl03"} and "--instrument" not in alone.argv
    assert alone.instrument == "bl03"
    # The web console waits for the default instrument's (bl01's) queue API: the pool.
    assert "queue-http-pool-1" in specs["web"].depends_on


def test_queue_http_pool_size_one_keeps_a_process_per_instrument(tmp_path: Path) -> None:
    pod = _three(tmp_path / "f", pool=1)
    names = sorted(s.name for s in pod_services(pod) if s.name.startswith("queue-http"))
    assert names == ["queue-http-bl01", "queue-http-bl02", "queue-http-bl03"]


def test_a_pod_of_one_instrument_keeps_its_queue_http_service(tmp_path: Path) -> None:
    pod = pod_home(tmp_path / "one", queue={"enabled": True}, pod={"queue_http_pool_size": 4})
    specs = {s.name: s for s in pod_services(pod)}
    assert [n for n in specs if n.startswith("queue-http")] == ["queue-http"]


def test_a_deployed_queue_http_pool_runs_on_its_first_members_host(tmp_path: Path) -> None:
    from beampod.deploy._plan import DeployOptions, place

    pod = _three(tmp_path / "f", pool=2)
    placed = {p.spec.name: p for p in place(pod.config, DeployOptions().for_config(pod.config))}
    pool = placed["queue-http-pool-1"]
    assert (pool.host, pool.instrument) == ("localhost", "bl01")
    assert pool.spec.argv[-4:] == ("--instrument", "bl01", "--instrument", "bl02")
