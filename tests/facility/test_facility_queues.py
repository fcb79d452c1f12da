"""Each instrument of a facility has its own queue server, keys and Redis user, and
its own agent.

One module-scoped facility of two instruments (slim, plus each instrument's queue
server and agent: tests/facility/_facility.py ``queues=True, agents=True``; bl02's agent
has its own name) serves every test here. The clients are the real ones: ``beampod
queue -i``, bluesky-queueserver-api over HTTP and 0MQ, the ``qserver`` command line,
redis-py, ``beampod agent -i``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from beampod.config import LoadedPod, PodHome, QueueServer, load_pod, queue_servers
from beampod.queue import QueueFiles, control_address, http_uri, read_journal
from beampod.store import tiled_url
from tests.datapath._helpers import wait_for
from tests.facility._facility import facility_up, make_facility, run_cli

pytestmark = pytest.mark.timeout(300)

INSTRUMENTS = ("bl01", "bl02")
BIN = Path(sys.executable).parent
B_AGENT = "scout"  # bl02's agent's own name (bl01's is the default, "agent")
REFUSED_S = 2.0  # a 0MQ request the server cannot decrypt gets no answer: the client times out


@dataclass(frozen=True)
class Facility:
    root: Path
    pod: LoadedPod

    def server(self, name: str) -> QueueServer:
        return queue_servers(self.pod)[name]


@pytest.fixture(scope="module")
def facility() -> Iterator[Facility]:
    def make(root: Path) -> None:
        make_facility(root, len(INSTRUMENTS), slim=True, queues=True, agents=True)
        config = root / "config.yaml"
        cfg = yaml.safe_load(config.read_text())
        cfg["instruments"]["bl02"]["agent"] = {
            "name": B_AGENT,
            "args": {"step": 1.5, "max_count": 3},
        }
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))

    with facility_up("beampod-facq-", make) as root:
        yield Facility(root, load_pod(PodHome(root)))


def _rm(fac: Facility, name: str, key: str) -> Any:
    from bluesky_queueserver_api.http import REManagerAPI

    rm = REManagerAPI(http_server_uri=http_uri(fac.pod, fac.server(name)), timeout=10)
    rm.set_authorization_key(api_key=key)
    return rm


def _stored_uids(fac: Facility, instrument: str) -> set[str]:
    staff = fac.pod.secrets.tiled_reader_key.get_secret_value()  # every container
    r = httpx.get(
        f"{tiled_url(fac.pod)}/api/v1/search/{instrument}?page[limit]=100",
        headers={"Authorization": f"Apikey {staff}"},
    )
    r.raise_for_status()
    return {entry["id"] for entry in r.json()["data"]}


def test_each_instrument_has_its_own_queue_services_and_keys(facility: Facility) -> None:
    servers = queue_servers(facility.pod)
    assert list(servers) == list(INSTRUMENTS)
    a, b = servers["bl01"], servers["bl02"]
    assert (b.manager_service, b.http_service) == ("queue-bl02", "queue-http-bl02")
    own = facility.pod.secrets.for_instrument("bl02")
    assert b.control_key == own.queue_control_key and b.zmq_public_key == own.queue_zmq_public_key
    for field in ("control_key", "observer_key", "zmq_public_key", "redis_password"):
        assert getattr(a, field) != getattr(b, field), field
    assert (facility.root / "secrets.yaml").stat().st_mode & 0o777 == 0o600
    out = run_cli(facility.root, "status").stdout
    sections = {block.splitlines()[0]: block for block in out.split("\n\n")[1:] if block.strip()}
    for inst in INSTRUMENTS:
        assert f"\nqueue-{inst} " in sections[f"instrument {inst}"]
        assert f"\nqueue-http-{inst} " in sections[f"instrument {inst}"]
    assert "queue" not in sections["central"]


def test_a_plan_queued_with_i_runs_on_that_instrument_and_is_stored_in_its_container(
    facility: Facility,
) -> None:
    root = facility.root
    before = {inst: _stored_uids(facility, inst) for inst in INSTRUMENTS}
    added = run_cli(root, "queue", "-i", "bl02", "add", "count([pinhole], 2)")
    assert "queued count" in added.stdout
    # bl02's queue holds it; bl01's is untouched.
    assert "count" in run_cli(root, "queue", "-i", "bl02", "list").stdout
    assert json.loads(run_cli(root, "queue", "-i", "bl01", "list", "--json").stdout)["items"] == []
    run_cli(root, "queue", "-i", "bl02", "start")
    rm = _rm(facility, "bl02", facility.server("bl02").control_key.get_secret_value())
    try:
        wait_for(
            lambda: rm.status()["items_in_history"] >= 1 and rm.status()["manager_state"] == "idle",
            120.0,
            "bl02's queue to run the plan",
        )
        result = rm.history_get()["items"][-1]["result"]
    finally:
        rm.close()
    assert result["exit_status"] == "completed", result
    (uid,) = result["run_uids"]
    journal = read_journal(QueueFiles.of(facility.pod.home, facility.server("bl02")).runs_log)
    assert [r["uid"] for r in journal] == [uid]
    wait_for(lambda: uid in _stored_uids(facility, "bl02"), 60.0, "the run stored in bl02")
    assert _stored_uids(facility, "bl02") == before["bl02"] | {uid}
    assert _stored_uids(facility, "bl01") == before["bl01"]  # nothing in bl01's container
    staff = facility.pod.secrets.tiled_reader_key.get_secret_value()
    meta = httpx.get(
        f"{tiled_url(facility.pod)}/api/v1/metadata/bl02/{uid}",
        headers={"Authorization": f"Apikey {staff}"},
    ).json()["data"]["attributes"]["metadata"]["start"]
    assert (meta["instrument"], meta["plan_name"]) == ("bl02", "count")
    history_a = json.loads(run_cli(root, "queue", "-i", "bl01", "history", "--json").stdout)
    assert history_a == []


def test_connect_i_gives_that_instruments_queue(facility: Facility) -> None:
    env = json.loads(
        run_cli(facility.root, "connect", "-i", "bl02", "--role", "control", "--json").stdout
    )
    b = facility.server("bl02")
    assert env["QSERVER_HTTP_SERVER_URI"] == http_uri(facility.pod, b)
    assert env["QSERVER_HTTP_SERVER_API_KEY"] == b.control_key.get_secret_value()
    assert env["QSERVER_ZMQ_CONTROL_ADDRESS"] == control_address(facility.pod, b)
    assert env["QSERVER_ZMQ_PUBLIC_KEY"] == b.zmq_public_key
    bad = run_cli(facility.root, "queue", "-i", "bl99", "status", check=False)
    assert bad.returncode == 2 and "no instrument 'bl99'" in bad.stderr


def test_an_instruments_queue_keys_are_refused_by_anothers_queue_server(
    facility: Facility,
) -> None:
    from bluesky_queueserver_api.comm_base import HTTPClientError, RequestTimeoutError
    from bluesky_queueserver_api.zmq import REManagerAPI as ZmqAPI

    a, b = facility.server("bl01"), facility.server("bl02")
    # HTTP, bluesky-queueserver-api: A's control and observer keys get 401 on B.
    for key in (a.control_key, a.observer_key):
        rm = _rm(facility, "bl02", key.get_secret_value())
        try:
            with pytest.raises(HTTPClientError, match="401"):
                rm.status()
            with pytest.raises(HTTPClientError, match="401"):
                rm.queue_clear()
        finally:
            rm.close()
        raw = httpx.post(
            f"{http_uri(facility.pod, b)}/api/queue/item/add",
            headers={"Authorization": f"ApiKey {key.get_secret_value()}"},
            json={"item": {"item_type": "plan", "name": "count", "args": [["pinhole"]]}},
        )
        assert raw.status_code == 401
    own = _rm(facility, "bl02", b.control_key.get_secret_value())
    try:
        assert own.status()["items_in_queue"] == 0  # B's own key works; nothing was added
    finally:
        own.close()

    # 0MQ, bluesky-queueserver-api: A's CURVE key does not open B's control channel.
    with_a = ZmqAPI(
        zmq_control_addr=control_address(facility.pod, b),
        zmq_public_key=a.zmq_public_key,
        timeout_recv=REFUSED_S,
        timeout_send=REFUSED_S,
    )
    try:
        with pytest.raises(RequestTimeoutError):
            with_a.status()
    finally:
        with_a.close()

    # The qserver command line: refused with A's key, answered with B's.
    def qserver(public_key: str, *args: str) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "QSERVER_ZMQ_CONTROL_ADDRESS": control_address(facility.pod, b),
            "QSERVER_ZMQ_PUBLIC_KEY": public_key,
        }
        return subprocess.run(
            [str(BIN / "qserver"), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    refused = qserver(
        a.zmq_public_key, "queue", "add", "plan", '{"name":"count","args":[["pinhole"]]}'
    )
    assert refused.returncode != 0, refused.stdout
    answered = qserver(b.zmq_public_key, "status")
    assert answered.returncode == 0 and "'manager_state'" in answered.stdout, answered.stderr
    assert "'items_in_queue': 0" in answered.stdout  # A's refused add enqueued nothing


def test_a_queue_managers_redis_user_cannot_touch_anothers_keys(facility: Facility) -> None:
    import redis

    cfg = facility.pod.config
    a, b = facility.server("bl01"), facility.server("bl02")
    admin = redis.Redis(
        host="127.0.0.1",
        port=cfg.redis.port,
        password=facility.pod.secrets.redis_password.get_secret_value(),
    )
    as_a = redis.Redis(
        host="127.0.0.1",
        port=cfg.redis.port,
        username=a.redis_user,
        password=a.redis_password.get_secret_value(),
    )
    try:
        b_keys = sorted(admin.keys(f"{b.redis_prefix}_*"))
        assert b_keys, "bl02's queue manager keeps its state in Redis"
        before = {k: admin.dump(k) for k in b_keys}
        assert as_a.exists(f"{a.redis_prefix}_user_group_permissions") == 1  # its own keys: yes
        for attempt in (
            lambda: as_a.get(f"{b.redis_prefix}_user_group_permissions"),
            lambda: as_a.lrange(f"{b.redis_prefix}_plan_history", 0, -1),
            lambda: as_a.set(f"{b.redis_prefix}_user_group_permissions", "x"),
            lambda: as_a.delete(*b_keys),
            lambda: as_a.rpush(f"{b.redis_prefix}_plan_queue", "{}"),
            lambda: as_a.keys("*"),
            lambda: as_a.scan(0),
            lambda: as_a.flushall(),
        ):
            with pytest.raises(redis.exceptions.NoPermissionError):
                attempt()
        assert {k: admin.dump(k) for k in b_keys} == before  # B's queue state unchanged
    finally:
        as_a.close()
        admin.close()


def test_each_instruments_agent_answers_on_its_own_subjects_with_its_settings(
    facility: Facility,
) -> None:
    root = facility.root

    def ping(inst: str) -> dict[str, Any]:
        return dict(json.loads(run_cli(root, "agent", "ping", "-i", inst).stdout))

    assert ping("bl01")["agent"] == "agent"
    assert ping("bl02")["agent"] == B_AGENT  # bl02's own agent block
    before = ping("bl01")["stats"]
    # The bluesky-pods adaptive demo against bl02's agent (bl02's publisher credential,
    # bl02's subjects): bl02's agent stops after its own max_count (3: 5 runs, where
    # the default's 15 makes the demo's 17).
    demo = run_cli(root, "agent", "demo", "-i", "bl02")
    assert "agent stopped" in demo.stdout, demo.stdout
    assert "\n5 runs at motor = 0, 1.5, 3, 4.5, 6\n" in f"\n{demo.stdout}", demo.stdout
    assert ping("bl02")["stats"] != ping("bl01")["stats"]
    assert ping("bl01")["stats"] == before  # bl01's agent saw none of it
