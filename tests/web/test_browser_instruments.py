"""Two instruments' pages in a real headless Chromium, against a console of a pod of
two instruments served by uvicorn in this process (no pod running): the picker, the
refusal a page shows to another instrument's key, and a page's scripts staying under
its instrument's path."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from beampod.config import LoadedPod, queue_servers
from beampod.web import build_app, build_console
from beampod.web._live import Link, LiveFeed
from tests._pods import free_ports
from tests.datapath._helpers import wait_for
from tests.web._browser import chromium_or_skip, wait_js
from tests.web._homes import pod_home, two_instruments

pytestmark = [pytest.mark.slow]


async def _up_and_idle(link: Link) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    import asyncio

    link.up()
    await asyncio.Event().wait()
    yield ("never", {})  # pragma: no cover


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, LoadedPod]]:
    import uvicorn

    instruments = two_instruments()
    ports = iter(free_ports(6))
    for entry in instruments.values():
        keys = ("http_port", "control_port", "info_port")
        entry["queue"] = {"enabled": True, **{key: next(ports) for key in keys}}
    pod = pod_home(tmp_path_factory.mktemp("binst") / "pod", instruments=instruments)
    # Nobody is the pod owner: every page needs a key.
    console = build_console(pod, devices=False, peer_uid=lambda c, s: None)
    # bl02's feed: a link that is up and no run (its pages say "connected to the bus").
    console.views["bl02"].live = LiveFeed(_up_and_idle)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        build_app(console),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30.0, "the console to listen")
    try:
        yield f"http://127.0.0.1:{port}", pod
    finally:
        server.should_exit = True
        thread.join(30)
        assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium_or_skip()


def _log_in(page: Any, key: str) -> None:
    page.goto("/login")
    page.fill("#key", key)
    page.click("#login-form button")
    page.wait_for_url("**/")


def test_a_key_opens_its_instrument_and_the_page_says_why_not_another(
    browser: Any, served: tuple[str, LoadedPod]
) -> None:
    url, pod = served
    servers = queue_servers(pod)
    context = browser.new_context(base_url=url)
    try:
        page = context.new_page()
        _log_in(page, servers["bl02"].observer_key.get_secret_value())
        page.click('#instruments a[data-instrument="bl02"]')
        page.wait_for_url("**/i/bl02/queue")
        assert "observer of bl02" in page.inner_text("#role")
        # bl02's Live page opens bl02's stream (under /i/bl02) and hears bl02's feed
        # (served, the page says "connecting"; the stream's hello says "connected").
        # bl01's stream would refuse this key: "reconnecting to the console…".
        page.click('nav a[href="/i/bl02/live"]')
        wait_js(page, "document.getElementById('live-link').dataset.state === 'waiting'", 30)
        assert page.inner_text("#live-link") == "connected to the bus · no run yet"
        # bl01 is locked for this key; opening it says why, with a way back.
        link = page.locator('#instruments a[data-instrument="bl01"]')
        assert "(key needed)" in link.inner_text()
        link.click()
        page.wait_for_url("**/queue")
        assert "logged in with instrument bl02's key" in page.inner_text("#refusal")
        page.click("#own-instrument")
        page.wait_for_url("**/i/bl02/queue")
    finally:
        context.close()
