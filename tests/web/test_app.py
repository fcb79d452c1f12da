"""The console app in-process (Starlette's TestClient): login, roles, CSRF, cookies,
redirects and headers. The pod home is initialised but not started, so the pages
also show what a user sees when the queue or the store does not answer."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from beampod.config import LoadedPod, PodHome, init_pod, load_pod
from beampod.web import Console, build_app, build_console


async def _no_documents(link: Any) -> Any:
    await asyncio.Event().wait()
    yield ("never", {})  # pragma: no cover


def _client(
    pod: LoadedPod, *, client: tuple[str, int] = ("testclient", 50000), peer: int | None = None
) -> tuple[TestClient, Console]:
    console = build_console(
        pod,
        devices=False,
        live_source=_no_documents,
        peer_uid=lambda c, s: peer,
        owner_uid=1000,
    )
    return TestClient(build_app(console), client=client, follow_redirects=False), console


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[TestClient, LoadedPod]]:
    # A home of its own that never runs: these tests need every service to be down
    # (the session's `pod` fixture shares `pod_home` and may be running).
    home = PodHome(tmp_path / "pod")
    init_pod(home, free_ports=True)
    pod = load_pod(home)
    client, _ = _client(pod)
    with client:
        yield client, pod


def login(client: TestClient, key: str, nxt: str = "/") -> Any:
    page = client.get("/login")
    token = re.search(r'id="login-csrf" value="([^"]+)"', page.text)
    assert token, page.text
    return client.post("/login", data={"csrf": token.group(1), "key": key, "next": nxt})


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf-token" content="([^"]*)"', html)
    assert found
    return found.group(1)


def test_health_needs_no_login(web: tuple[TestClient, LoadedPod]) -> None:
    client, _ = web
    assert client.get("/healthz").text == "ok"


@pytest.mark.parametrize("path", ["/", "/queue", "/runs", "/live", "/devices", "/agents"])
def test_pages_send_strangers_to_login(web: tuple[TestClient, LoadedPod], path: str) -> None:
    client, _ = web
    resp = client.get(path, headers={"accept": "text/html"})
    assert resp.status_code == 303 and resp.headers["location"] == f"/login?next={path}"
    # Scripts (fetch, EventSource) get a plain 401 instead.
    assert client.get(path, headers={"accept": "application/json"}).status_code == 401


def test_streams_and_data_need_login(web: tuple[TestClient, LoadedPod]) -> None:
    client, _ = web
    for path in ("/live/stream", "/devices/stream", "/runs/abc/primary.csv"):
        assert client.get(path).status_code == 401, path


def test_login_with_observer_key_sets_a_strict_httponly_cookie(
    web: tuple[TestClient, LoadedPod],
) -> None:
    client, pod = web
    resp = login(client, pod.secrets.queue_observer_key.get_secret_value(), "/queue")
    assert resp.status_code == 303 and resp.headers["location"] == "/queue"
    cookie = next(c for c in resp.headers.get_list("set-cookie") if "beampod_session=" in c)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    # The key itself is never in a cookie or a page.
    key = pod.secrets.queue_observer_key.get_secret_value()
    page = client.get("/queue")
    assert page.status_code == 200 and key not in page.text and key not in cookie
    assert 'data-role="observer"' in page.text
    assert "log in with the control key" in page.text and 'id="plan-form"' not in page.text


def test_wrong_key_is_refused_and_no_session_is_made(web: tuple[TestClient, LoadedPod]) -> None:
    client, _ = web
    console: Console = client.app._app.state.console  # type: ignore[attr-defined]
    before = len(console.sessions)
    resp = login(client, "not-a-key")
    assert resp.status_code == 401 and "not one of the pod&#39;s keys" in resp.text
    assert "beampod_session" not in resp.headers.get("set-cookie", "")
    assert len(console.sessions) == before


def test_login_needs_its_form_token(web: tuple[TestClient, LoadedPod]) -> None:
    client, pod = web
    key = pod.secrets.queue_control_key.get_secret_value()
    resp = client.post("/login", data={"csrf": "forged", "key": key})
    assert resp.status_code == 403 and "beampod_session" not in resp.headers.get("set-cookie", "")


def test_login_never_redirects_off_site(web: tuple[TestClient, LoadedPod]) -> None:
    client, pod = web
    key = pod.secrets.queue_observer_key.get_secret_value()
    for target in ("//evil.example/", "https://evil.example/", "/\\evil"):
        assert login(client, key, target).headers["location"] == "/"


def test_observer_cannot_change_anything(web: tuple[TestClient, LoadedPod]) -> None:
    client, pod = web
    login(client, pod.secrets.queue_observer_key.get_secret_value())
    token = csrf_of(client.get("/").text)
    for path, data in [
        ("/queue/add", {"expr": "count([pinhole])"}),
        ("/queue/start", {}),
        ("/queue/remove", {"uid": "x"}),
        ("/devices/move", {"device": "motor_ph", "position": "1"}),
    ]:
        resp = client.post(path, data={"csrf": token, **data})
        assert resp.status_code == 403, path
        assert "read-only" in resp.json()["detail"]


def test_control_needs_the_csrf_token(web: tuple[TestClient, LoadedPod]) -> None:
    client, pod = web
    login(client, pod.secrets.queue_control_key.get_secret_value())
    for data in ({}, {"csrf": "wrong"}):
        resp = client.post("/queue/start", data=data)
        assert resp.status_code == 403 and "CSRF" in resp.json()["detail"]
    # With the token the request reaches the queue (which is not running here).
    token = csrf_of(client.get("/").text)
    resp = client.post("/queue/start", data={"csrf": token}, headers={"accept": "application/json"})
    assert resp.status_code == 503 and "queue API does not answer" in resp.json()["detail"]


def test_logout_ends_the_session(web: tuple[TestClient, LoadedPod]) -> None:
    client, pod = web
    login(client, pod.secrets.queue_control_key.get_secret_value())
    token = csrf_of(client.get("/").text)
    assert client.post("/logout", data={"csrf": token}).status_code == 303
    assert client.get("/", headers={"accept": "text/html"}).status_code == 303


def test_pages_say_what_is_down(web: tuple[TestClient, LoadedPod]) -> None:
    import stamina

    client, pod = web
    login(client, pod.secrets.queue_control_key.get_secret_value())
    assert "queue API does not answer" in client.get("/queue").text
    # Tiled's client retries a refused connection for ~25 s (stamina) before the page
    # says so: the same page and message after one attempt.
    with stamina.set_testing(True, attempts=1):
        assert "cannot reach the pod&#39;s Tiled server" in client.get("/runs").text
    assert "no state file: is the pod running?" in client.get("/").text


def test_security_headers(web: tuple[TestClient, LoadedPod]) -> None:
    client, _ = web
    resp = client.get("/login")
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert resp.headers["x-content-type-options"] == "nosniff"
    # Every asset is served from the package (nothing from the internet).
    assert client.get("/static/console.js").status_code == 200
    assert not re.search(r'(src|href)="https?://', resp.text)


@pytest.mark.parametrize(
    "host,uid,expected",
    [
        ("127.0.0.1", 1000, 200),
        ("::1", 1000, 200),
        ("127.0.0.1", 1001, 303),
        ("10.0.0.5", 1000, 303),
    ],
)
def test_loopback_owner_is_an_observer_without_login(
    pod_home: PodHome, host: str, uid: int, expected: int
) -> None:
    client, _ = _client(load_pod(pod_home), client=(host, 40000), peer=uid)
    with client:
        resp = client.get("/", headers={"accept": "text/html"})
        assert resp.status_code == expected
        if expected == 200:
            assert 'data-role="observer"' in resp.text
            # ...who cannot change anything, even with a made-up token.
            assert client.post("/queue/start", data={"csrf": ""}).status_code == 403
