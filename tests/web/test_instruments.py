"""The console of a pod of several instruments, in-process (no pod running): every
instrument's pages at /i/<name>/..., the default instrument's at today's URLs, and a
session for one instrument only. (Against a running facility: tests/facility/
test_facility_console.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from beampod.config import LoadedPod, queue_servers
from beampod.web import build_app, build_console
from tests._pods import free_ports
from tests.web._homes import pod_home, two_instruments
from tests.web.test_app import csrf_of, login


async def _no_documents(link: Any) -> Any:
    await asyncio.Event().wait()
    yield ("never", {})  # pragma: no cover


@pytest.fixture(scope="module")
def facility(tmp_path_factory: pytest.TempPathFactory) -> LoadedPod:
    instruments = two_instruments()
    ports = iter(free_ports(6))
    for entry in instruments.values():
        keys = ("http_port", "control_port", "info_port")
        entry["queue"] = {"enabled": True, **{key: next(ports) for key in keys}}
    return pod_home(tmp_path_factory.mktemp("inst") / "pod", instruments=instruments)


@pytest.fixture
def client(facility: LoadedPod) -> Iterator[TestClient]:
    console = build_console(
        facility,
        devices=False,
        live_source=_no_documents,
        peer_uid=lambda c, s: None,  # nobody is the owner: every page needs a key
        owner_uid=1000,
    )
    with TestClient(
        build_app(console), client=("10.0.0.7", 50000), follow_redirects=False
    ) as client:
        yield client


def _key(pod: LoadedPod, instrument: str, role: str = "control") -> str:
    server = queue_servers(pod)[instrument]
    return getattr(server, f"{role}_key").get_secret_value()


def test_each_instrument_has_its_own_pages(facility: LoadedPod, client: TestClient) -> None:
    login(client, _key(facility, "bl02"))
    page = client.get("/i/bl02/queue")
    assert page.status_code == 200
    html = page.text
    # This instrument's actions and links stay under its prefix.
    assert 'action="/i/bl02/queue/add"' in html and 'data-base="/i/bl02"' in html
    assert 'href="/i/bl02/runs"' in html
    assert "instrument bl02" in html
    # The picker lists both; bl01's needs its own key.
    assert 'data-instrument="bl01" class=" locked"' in html
    assert 'data-instrument="bl02" class="current"' in html
    assert client.get("/i/bl02").headers["location"] == "/i/bl02/queue"


def test_one_instruments_key_is_refused_on_anothers_pages(
    facility: LoadedPod, client: TestClient
) -> None:
    login(client, _key(facility, "bl01"))
    assert client.get("/queue").status_code == 200  # bl01 is the default instrument
    assert client.get("/i/bl01/live").status_code == 200  # and under its own prefix
    for path in ("/i/bl02/queue", "/i/bl02/runs", "/i/bl02/live", "/i/bl02/agents"):
        resp = client.get(path, headers={"accept": "text/html"})
        assert resp.status_code == 403, path
        assert "logged in with instrument bl01&#39;s key" in resp.text  # said on the page
        assert 'id="login-other"' in resp.text and 'id="own-instrument"' in resp.text
    for path in ("/i/bl02/live/stream", "/i/bl02/runs/abc/primary.json"):
        resp = client.get(path, headers={"accept": "application/json"})
        assert resp.status_code == 403 and "bl02's queue keys" in resp.json()["detail"]
    token = csrf_of(client.get("/queue").text)
    for path, data in (
        ("/i/bl02/queue/add", {"expr": "count([pinhole])"}),
        ("/i/bl02/queue/start", {}),
    ):
        resp = client.post(path, data={"csrf": token, **data})
        assert resp.status_code == 403, path
    assert client.get("/i/bl99/queue").status_code == 404


def test_overview_shows_only_the_sessions_instrument_and_central(
    facility: LoadedPod, client: TestClient
) -> None:
    import json

    facility.home.state_file.write_text(
        json.dumps(
            {
                "phase": "up",
                "services": {
                    n: {"state": "ready", "pid": 1}
                    for n in ("tiled", "writer-bl01", "writer-bl02", "agent-bl02")
                },
            }
        )
    )
    try:
        login(client, _key(facility, "bl02", "observer"))
        html = client.get("/").text
        assert "writer-bl02" in html and "agent-bl02" in html and "tiled" in html
        assert "writer-bl01" not in html
        # A log of another instrument's service is not shown either.
        assert "writer-bl01" not in client.get("/?log=writer-bl01").text
    finally:
        facility.home.state_file.unlink()


def test_the_pod_wide_keys_do_not_log_in_to_a_facility(
    facility: LoadedPod, client: TestClient
) -> None:
    resp = login(client, facility.secrets.queue_control_key.get_secret_value())
    assert resp.status_code == 401


def test_a_single_instrument_pod_is_unchanged(tmp_path: Path) -> None:
    pod = pod_home(tmp_path / "one")
    console = build_console(
        pod, devices=False, live_source=_no_documents, peer_uid=lambda c, s: None
    )
    with TestClient(build_app(console), follow_redirects=False) as client:
        login(client, pod.secrets.queue_control_key.get_secret_value())
        html = client.get("/queue").text
        assert 'action="/queue/add"' in html and 'id="instruments"' not in html
