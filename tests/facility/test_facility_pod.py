"""A facility of three instruments on one machine: ``beampod --home REPO up -d`` on a
scaffolded repository brings up the shared bus and store and each instrument's parts;
each instrument's credentials reach only its own data, on the bus and in Tiled.

One module-scoped facility (slim: one NATS node, one IOC per instrument, no queue,
agent or web console; see tests/facility/_facility.py) serves every test here.
"""

from __future__ import annotations

import asyncio
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

from beampod.bus import NatsConnection
from beampod.config import BUS_ROLES, LoadedPod, PodHome, documents_subject, load_pod, stream_name
from beampod.store import tiled_url
from tests.conftest import beampod_in_process
from tests.facility._facility import facility_up, make_facility, run_cli

pytestmark = pytest.mark.timeout(300)

INSTRUMENTS = ("bl01", "bl02", "bl03")
DENIED_S = 1.5  # a refused request is dropped by the server: the client times out


@dataclass(frozen=True)
class Facility:
    root: Path
    pod: LoadedPod
    runs: dict[str, str]  # instrument -> uid of the run made on it


def _run_on_each(root: Path) -> dict[str, str]:
    """``beampod run -i NAME "count([pinhole], 2)"`` on every instrument at once."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    cli = [sys.executable, "-m", "beampod", "--home", str(root)]
    procs = {
        name: subprocess.Popen(
            [*cli, "run", "-i", name, "count([pinhole], 2)"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        for name in INSTRUMENTS
    }
    uids = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"run -i {name} exited {proc.returncode}:\n{out}\n{err}"
        uids[name] = out.strip().splitlines()[-1]
    return uids


@pytest.fixture(scope="module")
def facility() -> Iterator[Facility]:
    with facility_up(
        "beampod-facility-", lambda root: make_facility(root, len(INSTRUMENTS), slim=True)
    ) as root:
        yield Facility(root, load_pod(PodHome(root)), _run_on_each(root))


def _tiled(fac: Facility, key: str, path: str) -> httpx.Response:
    return httpx.get(
        f"{tiled_url(fac.pod)}/api/v1/{path}", headers={"Authorization": f"Apikey {key}"}
    )


def _stored_uids(fac: Facility, instrument: str, key: str) -> set[str]:
    """Run uids in ``instrument``'s container, read with ``key``."""
    r = _tiled(fac, key, f"search/{instrument}?page[limit]=100")
    r.raise_for_status()
    return {entry["id"] for entry in r.json()["data"]}


def test_status_groups_services_by_instrument_and_central(facility: Facility) -> None:
    out = run_cli(facility.root, "status").stdout
    sections = {block.splitlines()[0]: block for block in out.split("\n\n")[1:] if block.strip()}
    assert list(sections) == ["central", "instrument bl01", "instrument bl02", "instrument bl03"]
    for name in ("nats", "postgres", "tiled", "redis"):
        assert f"\n{name} " in sections["central"]
    for inst in INSTRUMENTS:
        own = sections[f"instrument {inst}"]
        assert f"\nwriter-{inst} " in own and f"\nioc-{inst} " in own
        others = [i for i in INSTRUMENTS if i != inst]
        assert not any(f"-{o}" in own for o in others), own


def test_each_run_is_stored_only_in_its_own_container(facility: Facility) -> None:
    staff = facility.pod.secrets.tiled_reader_key.get_secret_value()  # facility-wide
    stored = {inst: _stored_uids(facility, inst, staff) for inst in INSTRUMENTS}
    assert stored == {inst: {uid} for inst, uid in facility.runs.items()}
    # The start document names the instrument it ran on.
    for inst, uid in facility.runs.items():
        meta = _tiled(facility, staff, f"metadata/{inst}/{uid}").json()
        assert meta["data"]["attributes"]["metadata"]["start"]["instrument"] == inst


def test_runs_i_shows_only_that_instruments_runs(facility: Facility) -> None:
    # The listings through the command's entry in this process (a `beampod runs`
    # process imports the Tiled client, ~4 s of CPU); the refusal as a process.
    shown = json.loads(beampod_in_process(facility.root, "runs", "-i", "bl02", "--json").stdout)
    assert [r["uid"] for r in shown] == [facility.runs["bl02"]]
    default = json.loads(beampod_in_process(facility.root, "runs", "--json").stdout)
    assert [r["uid"] for r in default] == [facility.runs["bl01"]]  # the default instrument
    bad = run_cli(facility.root, "runs", "-i", "bl99", check=False)
    assert bad.returncode == 2 and "no instrument 'bl99'" in bad.stderr


def test_an_instruments_tiled_keys_reach_only_its_container(facility: Facility) -> None:
    a = facility.pod.secrets.for_instrument("bl01")
    reader, writer = a.tiled_reader_key.get_secret_value(), a.tiled_writer_key.get_secret_value()
    assert _stored_uids(facility, "bl01", reader) == {facility.runs["bl01"]}
    b_run = facility.runs["bl02"]
    for key in (reader, writer):
        for path in (
            "metadata/bl02",
            "search/bl02",
            f"metadata/bl02/{b_run}",
            f"search/bl02/{b_run}/primary",
            "search/",  # the root lists every instrument
            "metadata/",
            "search-deep/",
        ):
            r = _tiled(facility, key, path)
            assert r.status_code == 403, (path, r.status_code, r.text)
            assert b_run not in r.text
    # A's writer cannot create, change or delete anything in B's container or at the root.
    headers = {"Authorization": f"Apikey {writer}"}
    url = f"{tiled_url(facility.pod)}/api/v1"
    node = {"data": {"structure_family": "container", "metadata": {}, "specs": []}}
    with httpx.Client(headers=headers) as c:
        assert c.post(f"{url}/metadata/bl02", json=node).status_code == 403
        assert c.post(f"{url}/metadata/", json=node).status_code == 403
        assert c.patch(f"{url}/metadata/bl02/{b_run}", json={}).status_code == 403
        assert c.delete(f"{url}/metadata/bl02/{b_run}").status_code == 403
    # A's reader key writes nothing, not even in A's container.
    with httpx.Client(headers={"Authorization": f"Apikey {reader}"}) as c:
        assert c.post(f"{url}/metadata/bl01", json=node).status_code == 403
    staff = facility.pod.secrets.tiled_reader_key.get_secret_value()
    assert _stored_uids(facility, "bl02", staff) == {b_run}  # B's container untouched


_STATUS_AS_ANOTHER_USER = """
import sys, urllib.error, urllib.request
base, key = sys.argv[1], sys.argv[2]
for path in sys.argv[3:]:
    req = urllib.request.Request(base + path)
    if key:
        req.add_header("Authorization", "Apikey " + key)
    try:
        code = urllib.request.urlopen(req, timeout=30).status
    except urllib.error.HTTPError as exc:
        code = exc.code
    print(path, code)
"""


def test_another_local_user_gets_only_what_the_key_allows(facility: Facility) -> None:
    """The Tiled gate trusts keys, not the caller's uid: another local user (``nobody``)
    with bl01's reader key reads bl01 and nothing of bl02; without a key, nothing."""
    from tests.queue.conftest import as_nobody

    key = facility.pod.secrets.for_instrument("bl01").tiled_reader_key.get_secret_value()
    base = f"{tiled_url(facility.pod)}/api/v1/"
    paths = ["metadata/bl01", "metadata/bl02", f"metadata/bl02/{facility.runs['bl02']}"]

    def statuses(with_key: str) -> dict[str, int]:
        out = as_nobody(_STATUS_AS_ANOTHER_USER, base, with_key, *paths)
        assert out.returncode == 0, out.stderr
        return {p: int(c) for p, c in (ln.split() for ln in out.stdout.splitlines())}

    assert statuses(key) == {paths[0]: 200, paths[1]: 403, paths[2]: 403}
    assert set(statuses("").values()) == {401}


def test_an_instruments_reader_key_subscribes_live_to_its_own_container_only(
    facility: Facility,
) -> None:
    """Tiled's live subscriptions are websockets (``/stream/single/<path>``, the path
    joined as tiled's client joins it): bl01's reader key subscribes to bl01's run and
    gets its first message; to bl02's container or run it is refused at the handshake."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    key = facility.pod.secrets.for_instrument("bl01").tiled_reader_key.get_secret_value()
    base = tiled_url(facility.pod).replace("http://", "ws://", 1) + "/api/v1/stream/single"
    headers = {"Authorization": f"Apikey {key}"}
    own = f"{base}/bl01//{facility.runs['bl01']}?envelope_format=json"
    with connect(own, additional_headers=headers, open_timeout=30) as ws:
        assert json.loads(ws.recv(timeout=30))["type"] == "container-schema"
    for path in ("bl02", f"bl02//{facility.runs['bl02']}"):
        with pytest.raises(InvalidStatus) as refused:
            connect(f"{base}/{path}?envelope_format=json", additional_headers=headers)
        assert refused.value.response.status_code == 403, path


def test_an_instruments_tiled_reader_key_works_with_the_tiled_client(facility: Facility) -> None:
    """What a user of instrument A does: tiled's client on A's container with A's key;
    B's container, with the same key, is refused."""
    from tiled.client import from_uri

    key = facility.pod.secrets.for_instrument("bl01").tiled_reader_key.get_secret_value()
    url = tiled_url(facility.pod)
    own = from_uri(f"{url}/api/v1/metadata/bl01", api_key=key)
    assert list(own) == [facility.runs["bl01"]]
    assert len(own[facility.runs["bl01"]]["primary"].read()["pinhole"]) == 2
    with pytest.raises(httpx.HTTPStatusError) as refused:
        from_uri(f"{url}/api/v1/metadata/bl02", api_key=key)
    assert refused.value.response.status_code == 403


async def _violations(fac: Facility, role: Any, actions: Any) -> tuple[list[str], Any]:
    import nats

    conn = NatsConnection.from_pod(fac.pod, "bl01", role=role, name=f"test-bl01-{role}")
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(
        list(conn.servers),
        user=conn.user,
        password=conn.password.get_secret_value(),
        inbox_prefix=conn.inbox_prefix.encode(),
        error_cb=on_error,
        allow_reconnect=False,
    )
    try:
        result = await actions(nc)
        await nc.flush(timeout=2)
        await asyncio.sleep(0)  # let the server's -ERR lines reach error_cb
        return errors, result
    finally:
        await nc.close()


async def _refused(coro: Any) -> bool:
    import nats.errors
    import nats.js.errors

    try:
        await asyncio.wait_for(coro, DENIED_S + 1)
    except (TimeoutError, nats.errors.TimeoutError, nats.errors.NoRespondersError):
        return True
    except nats.js.errors.APIError as exc:
        return exc.code == 403
    return False


def _stream_state(fac: Facility, instrument: str) -> tuple[int, int]:
    """(messages, last sequence) of an instrument's documents stream, read as admin."""

    async def state() -> tuple[int, int]:
        import nats

        admin = NatsConnection.from_pod(fac.pod, admin=True, name="test-admin")
        nc = await nats.connect(
            list(admin.servers),
            user=admin.user,
            password=admin.password.get_secret_value(),
            inbox_prefix=admin.inbox_prefix.encode(),
        )
        try:
            info = await nc.jetstream().stream_info(stream_name(instrument))
            return info.state.messages, info.state.last_seq
        finally:
            await nc.close()

    return asyncio.run(state())


@pytest.mark.parametrize("role", BUS_ROLES)
def test_an_instruments_bus_credentials_cannot_touch_anothers_stream(
    facility: Facility, role: Any
) -> None:
    """Every bus role of bl01 against bl02: subscribing to bl02's documents, publishing
    on bl02's subject (core and JetStream) and deleting or purging bl02's stream are all
    refused; bl02's stream is left as it was."""
    before = _stream_state(facility, "bl02")
    assert before[0] > 0  # bl02's run is in it
    subject = documents_subject("bl02")
    stream = stream_name("bl02")

    async def actions(nc: Any) -> dict[str, bool]:
        js = nc.jetstream(timeout=DENIED_S)
        sub = await nc.subscribe(subject)
        await nc.publish(subject, b"from bl01")
        attempts = {  # all at once: each refusal is a timeout
            "core subscription delivered nothing": sub.next_msg(timeout=DENIED_S),
            "js publish": js.publish(subject, b"from bl01"),
            "js ordered subscribe": js.subscribe(subject, stream=stream, ordered_consumer=True),
            "stream info": js.stream_info(stream),
            "purge stream": js.purge_stream(stream),
            "delete stream": js.delete_stream(stream),
        }
        results = await asyncio.gather(*(_refused(a) for a in attempts.values()))
        return dict(zip(attempts, results, strict=True))

    errors, refused = asyncio.run(_violations(facility, role, actions))
    assert all(refused.values()), refused
    violations = [e for e in errors if "permissions violation" in e.lower()]
    assert any("subscription" in e.lower() and subject in e for e in violations), errors
    assert any("publish" in e.lower() and subject in e for e in violations), errors
    assert _stream_state(facility, "bl02") == before


def test_per_instrument_commands_take_i(facility: Facility) -> None:
    """``-i NAME`` on shell, tail, dlq, connect and queue acts on that instrument."""
    root = facility.root
    shell = run_cli(
        root, "shell", "-i", "bl03", "-c", "print(RE.md['instrument'], pinhole.det.pvname)"
    )
    assert shell.stdout.split()[-2:] == ["bl03", "bl03:mini:ph:det"]
    tail = run_cli(root, "tail", "-i", "bl03", "--from-start", "--json", "-n", "1")
    name, doc = json.loads(tail.stdout.splitlines()[-1])
    assert (name, doc["uid"], doc["instrument"]) == ("start", facility.runs["bl03"], "bl03")
    assert "no dead letters for bl02" in run_cli(root, "dlq", "-i", "bl02", "list").stdout
    env = json.loads(run_cli(root, "connect", "-i", "bl02", "--json").stdout)
    own = facility.pod.secrets.for_instrument("bl02").tiled_reader_key.get_secret_value()
    assert (env["BEAMPOD_INSTRUMENT"], env["NATS_USER"]) == ("bl02", "bl02-reader")
    assert env["TILED_API_KEY"] == own  # bl02's container only, not the facility-wide key
    # tiled's own client with exactly what was printed opens bl02's container.
    from tiled.client import from_uri

    bl02 = from_uri(env["TILED_URI"], api_key=env["TILED_API_KEY"])
    assert facility.runs["bl02"] in bl02 and facility.runs["bl01"] not in bl02
    queue = run_cli(root, "queue", "-i", "bl02", "status", check=False)
    assert queue.returncode == 2
    assert queue.stderr.strip() == (
        "beampod: error: instrument 'bl02' has no queue server (its queue is not enabled "
        "in the pod's config.yaml)"
    )
