"""The Live page's link indicator in a real headless Chromium, against a console served
by uvicorn in this process (no pod): it follows the console's bus link, and it flips to
"reconnecting" when the stream itself drops."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from beampod.web import build_app, build_console
from beampod.web._live import Link, LiveFeed
from tests.web._browser import chromium_or_skip, wait_js
from tests.web._homes import pod_home

pytestmark = [pytest.mark.slow]

STATE = "document.getElementById('live-link').dataset.state"
WORDS = "document.getElementById('live-link').textContent"


class Served:
    """A console on a free loopback port, its live source driven by the test."""

    def __init__(self, tmp_path: Path) -> None:
        import uvicorn

        self.links: list[Link] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        ready = threading.Event()

        async def source(link: Link) -> AsyncIterator[tuple[str, dict[str, Any]]]:
            self.loop = asyncio.get_running_loop()
            self.links.append(link)
            link.up()
            ready.set()
            await asyncio.Event().wait()
            yield ("never", {})  # pragma: no cover

        pod = pod_home(tmp_path / "pod")
        # Any loopback client is the pod owner: an observer without logging in.
        self.console = build_console(
            pod, devices=False, live_source=source, peer_uid=lambda c, s: 1000, owner_uid=1000
        )
        self.console.heartbeat_s = 0.5
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(
            build_app(self.console),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        assert ready.wait(30), "the console did not start"

    def call(self, fn: Any, *args: Any) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(fn, *args)

    @property
    def feed(self) -> LiveFeed:
        return self.console.live

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        assert not self.thread.is_alive(), "uvicorn did not stop"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium_or_skip()


def test_indicator_follows_the_bus_link_and_the_stream(browser: Any, served: Served) -> None:
    context = browser.new_context(base_url=served.url)
    try:
        page = context.new_page()
        page.goto("/live")
        wait_js(page, f"{STATE} === 'waiting'", 30)
        assert page.inner_text("#live-link") == "connected to the bus · no run yet"
        # The console loses the bus: the page says so, and recovers with it.
        served.call(served.feed.down, "lost the connection to the bus; reconnecting")
        wait_js(page, f"{STATE} === 'reconnecting'", 30)
        assert "the console is reconnecting to the bus" in page.inner_text("#live-link")
        served.call(served.feed.up)
        wait_js(page, f"{STATE} === 'waiting'", 30)
        # A run starts: receiving.
        start = {"uid": "0123456789abcdef", "scan_id": 7, "plan_name": "count", "motors": []}
        served.call(served.feed.feed, "start", start)
        wait_js(page, f"{WORDS} === 'connected to the bus · receiving the run'", 30)
        # The stream itself drops (the console goes away): not receiving any more.
        served.stop()
        wait_js(page, f"{STATE} === 'reconnecting'", 30)
        assert page.inner_text("#live-link") == "reconnecting to the console…"
    finally:
        context.close()
