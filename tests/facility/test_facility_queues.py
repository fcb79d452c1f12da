"""Each instrument of a facility has its own queue server, keys and Redis user, its
own agent process, and its own pages on the web console.

One module-scoped facility of two instruments (slim, plus each instrument's queue
server and agent: tests/facility/_facility.py ``queues=True, agents=True``; bl02's agent
has its own name; the web console; both instruments' simulated IOCs in one process,
``channel_access.ioc_processes: per_host``; and both instruments' queue HTTP servers in
one process, ``pod.queue_http_pool_size: 2``, so every HTTP test here goes through the
pool; tests/facility/test_two_hosts.py runs a process per instrument) serves every test
here. The clients are the real
ones: ``beampod queue -i``, bluesky-queueserver-api over HTTP and 0MQ, the ``qserver``
command line, redis-py, ``beampod agent -i``, httpx against the console.
"""

from __future__ import annotations

import contextlib
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
from tests.datapath._helpers import STORE_POLL_S, wait_for
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
        cfg["web"]["enabled"] = True  # its port is already a free one
        # One process for both instruments' simulated IOCs (docs/facility.md): every
        # plan and move below goes through it.
        cfg["channel_access"]["ioc_processes"] = "per_host"
        # One process for both instruments' queue HTTP servers (ADR 0034).
        cfg["pod"]["queue_http_pool_size"] = 2
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
    assert (a.manager_service, a.http_service) == ("queue-bl01", "queue-http-pool-1")
    assert (b.manager_service, b.http_service) == ("queue-bl02", "queue-http-pool-1")
    own = facility.pod.secrets.for_instrument("bl02")
    assert b.control_key == own.queue_control_key and b.zmq_public_key == own.queue_zmq_public_key
    for field in ("control_key", "observer_key", "zmq_public_key", "redis_password"):
        assert getattr(a, field) != getattr(b, field), field
    assert (facility.root / "secrets.yaml").stat().st_mode & 0o777 == 0o600
    out = run_cli(facility.root, "status").stdout
    sections = {block.splitlines()[0]: block for block in out.split("\n\n")[1:] if block.strip()}
    for inst in INSTRUMENTS:
        assert f"\nqueue-{inst} " in sections[f"instrument {inst}"]
        assert "queue-http" not in sections[f"instrument {inst}"]
    # The pool serves both: listed with the central services, each instrument's address.
    (pool_line,) = [ln for ln in sections["central"].splitlines() if "queue-http" in ln]
    assert pool_line.startswith("queue-http-pool-1 ")
    assert http_uri(facility.pod, a) in pool_line and http_uri(facility.pod, b) in pool_line


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
    wait_for(
        lambda: uid in _stored_uids(facility, "bl02"),
        60.0,
        "the run stored in bl02",
        interval=STORE_POLL_S,
    )
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


def test_one_process_serves_both_instruments_iocs_to_a_real_client(
    facility: Facility, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``per_host``: one supervised process, each instrument's IOC on its own port under
    its own prefix; caproto's client, with the pod's CA client environment (unchanged by
    the setting), moves each instrument's motor with put-completion and reads it back."""
    import asyncio

    import psutil
    from caproto.asyncio.client import Context

    from beampod.instrument import ca_client_env

    services = _state(facility)
    assert [n for n in services if n.startswith("ioc-")] == ["ioc-host-localhost"]
    pid = services["ioc-host-localhost"]["pid"]
    assert psutil.Process(pid).children() == []  # one process, not a launcher
    out = run_cli(facility.root, "status").stdout
    sections = {block.splitlines()[0]: block for block in out.split("\n\n")[1:] if block.strip()}
    assert "\nioc-host-localhost " in sections["central"]  # shared: with the central ones
    for name, value in ca_client_env(facility.pod.config).items():
        monkeypatch.setenv(name, value)

    async def move_and_read() -> dict[str, tuple[float, float]]:
        ctx = Context()
        out: dict[str, tuple[float, float]] = {}
        try:
            for i, inst in enumerate(INSTRUMENTS):
                motor, rbv, current = await ctx.get_pvs(
                    f"{inst}:mini:ph:mtr", f"{inst}:mini:ph:mtr.RBV", f"{inst}:mini:current"
                )
                for pv in (motor, rbv, current):
                    await pv.wait_for_connection(timeout=20)
                await motor.write([2.5 + i], wait=True, timeout=20)
                out[inst] = (
                    float((await rbv.read()).data[0]),
                    float((await current.read()).data[0]),
                )
                await motor.write([0.0], wait=True, timeout=20)
        finally:
            await ctx.disconnect()
        return out

    got = asyncio.run(move_and_read())
    assert {inst: rbv for inst, (rbv, _) in got.items()} == {"bl01": 2.5, "bl02": 3.5}
    assert all(475 <= current <= 525 for _, current in got.values())
    assert _state(facility)["ioc-host-localhost"]["pid"] == pid


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


def _listening_pids(port: int) -> set[int]:
    import psutil

    return {
        c.pid
        for c in psutil.net_connections("tcp")
        if c.laddr and c.laddr.port == port and c.status == psutil.CONN_LISTEN and c.pid
    }


def _console_output(fac: Facility, inst: str, route: str) -> dict[str, Any]:
    server = fac.server(inst)
    r = httpx.get(
        f"{http_uri(fac.pod, server)}/api/console_output{route}",
        headers={"Authorization": f"ApiKey {server.control_key.get_secret_value()}"},
        timeout=10,
    )
    r.raise_for_status()
    got: dict[str, Any] = r.json()
    return got


def test_one_process_serves_both_queue_http_servers_each_with_its_own_manager(
    facility: Facility,
) -> None:
    """The pool (ADR 0034): one process listens on both instruments' ports; what is
    sent to one instrument's port reaches that instrument's RE Manager only, and each
    port's console output is its own manager's."""
    a, b = facility.server("bl01"), facility.server("bl02")
    pid = _state(facility)["queue-http-pool-1"]["pid"]
    for server in (a, b):
        assert _listening_pids(server.settings.http_port) == {pid}
    assert not [n for n in _state(facility) if n.startswith("queue-http-bl")]
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    for server in (a, b):  # no key in its environment or its command line
        for key in (server.control_key, server.observer_key):
            assert key.get_secret_value().encode() not in environ
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    assert cmdline[-4:] == [b"--instrument", b"bl01", b"--instrument", b"bl02"]

    rm_a = _rm(facility, "bl01", a.control_key.get_secret_value())
    rm_b = _rm(facility, "bl02", b.control_key.get_secret_value())
    try:
        added = rm_a.item_add({"item_type": "plan", "name": "count", "args": [["pinhole"]]})
        assert added["success"], added
        try:
            assert [i["item_uid"] for i in rm_a.queue_get()["items"]] == [added["item"]["item_uid"]]
            assert rm_b.queue_get()["items"] == []
            assert rm_b.status()["items_in_queue"] == 0
        finally:
            rm_a.queue_clear()
        # Each port's console output is its own manager's (its own stream and client;
        # the uid route runs in a worker thread, the text route in the event loop).
        uid = {
            inst: _console_output(facility, inst, "/uid")["console_output_uid"]
            for inst in INSTRUMENTS
        }
        text = {inst: _console_output(facility, inst, "")["text"] for inst in INSTRUMENTS}
        assert uid["bl01"] != uid["bl02"]
        assert text["bl01"] != text["bl02"], text
    finally:
        rm_a.close()
        rm_b.close()


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


# -- one agent process per instrument -------------------------------------------------


def _state(fac: Facility) -> dict[str, Any]:
    services: dict[str, Any] = json.loads(fac.pod.home.state_file.read_text())["services"]
    return services


def _secret_values(fac: Facility) -> set[str]:
    from pydantic import SecretStr

    out = set()
    for model in (fac.pod.secrets, *fac.pod.secrets.instruments.values()):
        for name in type(model).model_fields:
            value = getattr(model, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                out.add(value.get_secret_value())
    return out


def test_each_instruments_agent_is_its_own_process_with_its_own_password_only(
    facility: Facility,
) -> None:
    services = _state(facility)
    assert "agent" not in services
    out = run_cli(facility.root, "status").stdout
    sections = {block.splitlines()[0]: block for block in out.split("\n\n")[1:] if block.strip()}
    every_secret = _secret_values(facility)
    for inst in INSTRUMENTS:
        assert f"\nagent-{inst} " in sections[f"instrument {inst}"]
        pid = services[f"agent-{inst}"]["pid"]
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        env = dict(e.decode().partition("=")[::2] for e in environ if b"=" in e)
        own = facility.pod.secrets.for_instrument(inst).agent_password.get_secret_value()
        assert env["BEAMPOD_AGENT_PASSWORD"] == own
        held = {v for v in env.values() if v in every_secret}
        assert held == {own}, f"agent-{inst} holds more than its own agent password"
        # Forked (ADR 39): its command line is followed by blank room, not one NUL.
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        assert [a.decode() for a in argv[-2:]] == ["--instrument", inst]
    assert "agent" not in sections["central"]


def test_a_crash_of_one_agent_restarts_only_that_one(facility: Facility) -> None:
    import signal

    before = _state(facility)
    a_pid, b_pid = before["agent-bl01"]["pid"], before["agent-bl02"]["pid"]
    os.kill(a_pid, signal.SIGKILL)

    def a_back() -> bool:
        a = _state(facility)["agent-bl01"]
        return a["pid"] not in (None, a_pid) and a["state"] == "ready"

    wait_for(a_back, 90.0, "the supervisor to restart bl01's agent")
    after = _state(facility)
    assert after["agent-bl02"]["pid"] == b_pid and after["agent-bl02"]["state"] == "ready"
    assert after["agent-bl02"]["restarts"] == before["agent-bl02"]["restarts"]
    assert after["agent-bl01"]["restarts"] == before["agent-bl01"]["restarts"] + 1
    ping = json.loads(run_cli(facility.root, "agent", "ping", "-i", "bl01").stdout)
    assert ping["agent"] == "agent"


#: GET each ``[url, key]`` (no key: ``""``) as a plain client; prints the statuses.
_STATUS_AS_CLIENT = """
import json, sys, urllib.error, urllib.request
out = []
for url, key in json.loads(sys.argv[1]):
    req = urllib.request.Request(url, headers={"Authorization": f"ApiKey {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            out.append(resp.status)
    except urllib.error.HTTPError as exc:
        out.append(exc.code)
print(json.dumps(out))
"""


def test_another_local_user_gets_from_the_pool_only_what_its_key_grants(
    facility: Facility,
) -> None:
    """As the unprivileged local user ``nobody`` (its own uid, real sockets): each of the
    pool's ports refuses a request without a key and one with the other instrument's
    key, and answers one with its own instrument's key."""
    from tests.queue.conftest import as_nobody

    a, b = facility.server("bl01"), facility.server("bl02")
    key_a, key_b = a.control_key.get_secret_value(), b.control_key.get_secret_value()
    url_a = f"{http_uri(facility.pod, a)}/api/status"
    url_b = f"{http_uri(facility.pod, b)}/api/status"
    calls = [
        [url, key]
        for url, own, other in ((url_a, key_a, key_b), (url_b, key_b, key_a))
        for key in ("", other, own)
    ]
    out = as_nobody(_STATUS_AS_CLIENT, json.dumps(calls))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [401, 401, 200, 401, 401, 200]


def test_a_killed_queue_http_pool_is_restarted_and_serves_both_instruments_again(
    facility: Facility,
) -> None:
    import signal

    before = _state(facility)["queue-http-pool-1"]
    os.kill(before["pid"], signal.SIGKILL)

    def back() -> bool:
        now = _state(facility)["queue-http-pool-1"]
        return now["pid"] not in (None, before["pid"]) and now["state"] == "ready"

    wait_for(back, 120.0, "the supervisor to restart the queue HTTP pool")
    assert _state(facility)["queue-http-pool-1"]["restarts"] == before["restarts"] + 1
    for inst in INSTRUMENTS:
        server = facility.server(inst)
        rm = _rm(facility, inst, server.control_key.get_secret_value())
        try:
            assert rm.status()["worker_environment_exists"] is True
            assert "count" in rm.plans_allowed()["plans_allowed"]
        finally:
            rm.close()
        # And each port still refuses the other instrument's key.
        other = facility.server("bl02" if inst == "bl01" else "bl01")
        refused = httpx.get(
            f"{http_uri(facility.pod, server)}/api/status",
            headers={"Authorization": f"ApiKey {other.control_key.get_secret_value()}"},
        )
        assert refused.status_code == 401


# -- the web console: each instrument's pages, with that instrument's key -------------


@contextlib.contextmanager
def _console(fac: Facility, key: str) -> Iterator[httpx.Client]:
    """A browser-like client of the facility's console, logged in with ``key``."""
    import re

    from beampod.web import web_url

    with httpx.Client(
        base_url=web_url(fac.pod), follow_redirects=False, trust_env=False, timeout=30
    ) as client:
        page = client.get("/login")
        token = re.search(r'id="login-csrf" value="([^"]+)"', page.text)
        assert token, page.text
        resp = client.post("/login", data={"csrf": token.group(1), "key": key, "next": "/"})
        assert resp.status_code == 303, resp.text
        yield client


def _csrf(client: httpx.Client, path: str) -> str:
    import re

    found = re.search(r'name="csrf-token" content="([^"]+)"', client.get(path).text)
    assert found
    return found.group(1)


def test_the_console_gives_an_instruments_key_that_instruments_pages_only(
    facility: Facility,
) -> None:
    a, b = facility.server("bl01"), facility.server("bl02")
    html = {"accept": "text/html"}
    with _console(facility, a.control_key.get_secret_value()) as as_a:
        assert as_a.get("/queue").status_code == 200  # bl01 is the default instrument
        assert as_a.get("/i/bl01/queue").status_code == 200
        for path in ("/i/bl02/queue", "/i/bl02/runs", "/i/bl02/live", "/i/bl02/devices"):
            refused = as_a.get(path, headers=html)
            assert refused.status_code == 403, path
            assert "logged in with instrument bl01&#39;s key" in refused.text
        token = _csrf(as_a, "/queue")
        add = as_a.post(
            "/i/bl02/queue/add",
            data={"csrf": token, "expr": "count([pinhole], 2)"},
            headers={"accept": "application/json"},
        )
        assert add.status_code == 403 and "bl02's queue keys" in add.json()["detail"]
    rm_b = _rm(facility, "bl02", b.control_key.get_secret_value())
    try:
        assert rm_b.queue_get()["items"] == []  # A's attempt enqueued nothing on B
    finally:
        rm_b.close()


def test_a_plan_queued_on_b_through_the_console_lands_on_bs_queue(facility: Facility) -> None:
    a, b = facility.server("bl01"), facility.server("bl02")
    rm_a = _rm(facility, "bl01", a.control_key.get_secret_value())
    rm_b = _rm(facility, "bl02", b.control_key.get_secret_value())
    try:
        with _console(facility, b.control_key.get_secret_value()) as as_b:
            token = _csrf(as_b, "/i/bl02/queue")
            added = as_b.post(
                "/i/bl02/queue/add", data={"csrf": token, "expr": "count([pinhole], 2)"}
            )
            assert added.status_code == 303
            assert added.headers["location"].startswith("/i/bl02/queue?")
            items = rm_b.queue_get()["items"]
            assert [(i["name"], i["args"]) for i in items] == [("count", [["pinhole"], 2])]
            assert rm_a.queue_get()["items"] == []  # not on bl01's queue
            page = as_b.get("/i/bl02/queue").text
            assert items[0]["item_uid"] in page  # the console shows B's queue
            # B's key does not open A's pages (the default instrument's URLs).
            assert as_b.get("/queue").status_code == 403
            removed = as_b.post(
                "/i/bl02/queue/remove", data={"csrf": token, "uid": items[0]["item_uid"]}
            )
            assert removed.status_code == 303
            assert removed.headers["location"] == "/i/bl02/queue?msg=remove%3A+done"
            wait_for(lambda: rm_b.queue_get()["items"] == [], 10.0, "bl02's queue empty again")
    finally:
        rm_a.close()
        rm_b.close()


def test_the_console_reads_bs_runs_and_documents_as_b(facility: Facility) -> None:
    b = facility.server("bl02")
    stored = _stored_uids(facility, "bl02")
    with _console(facility, b.observer_key.get_secret_value()) as as_b:
        runs = as_b.get("/i/bl02/runs")
        assert runs.status_code == 200 and 'class="error"' not in runs.text
        for uid in stored:
            assert f'href="/i/bl02/runs/{uid}"' in runs.text
        for uid in _stored_uids(facility, "bl01"):
            assert uid not in runs.text

        def hello() -> dict[str, Any]:
            with as_b.stream("GET", "/i/bl02/live/stream") as resp:
                assert resp.status_code == 200
                for line in resp.iter_lines():
                    if line.startswith("data: "):
                        return dict(json.loads(line[6:]))
            raise AssertionError("the stream ended before its hello")

        # bl02's feed follows bl02's documents as bl02's reader: its link comes up.
        wait_for(lambda: hello()["bus"] == "connected", 60.0, "bl02's live feed on the bus")
